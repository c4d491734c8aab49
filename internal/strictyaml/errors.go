// Package strictyaml provides strict YAML decoding with positions.
//
// It reads a YAML document with gopkg.in/yaml.v3, keeps the node tree so that
// every value has a line and column, and decodes it into a Go value strictly:
// unknown keys, duplicate keys, values of the wrong type, aliases, empty
// documents and syntax errors are all reported, each as one sentence of the
// form
//
//	FILE:LINE:COL: KEY.PATH: what is wrong; what to do
//
// All problems found are returned together as an [Errors] value, sorted by
// position. Callers that check meaning after decoding (a port out of range, a
// name that is not known) report their findings at the right place with
// [Document.Errorf], which finds the node for a key path.
//
// Key paths name keys with dots and list items with [index], for example
// "mysql.multi_threshold_gib" or "role_groups.converged[1]".
//
// Struct fields are matched by their `yaml` tag, then their `json` tag, then
// their lower-cased Go name, like yaml.v3 does; `yaml:",inline"` inlines an
// embedded struct and `yaml:"-"` skips a field. Types implementing
// encoding.TextUnmarshaler decode themselves from a scalar; the text of the
// error they return becomes the message and should itself read
// "what is wrong; what to do". time.Duration is read from strings such as
// "90s" or "1h".
package strictyaml

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem at one place in a YAML file.
type Error struct {
	// File is the name the caller gave the document (usually its path).
	File string `json:"file"`
	// Line and Column are 1-based; 0 when the position is unknown.
	Line   int `json:"line"`
	Column int `json:"column"`
	// Path is the key path of the offending value ("" for the whole document).
	Path string `json:"path,omitempty"`
	// Message says what is wrong and what to do, separated by "; ".
	Message string `json:"message"`
}

// Error formats the problem as "FILE:LINE:COL: PATH: MESSAGE", leaving out
// the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Errors is a list of problems. It implements error; its message is one
// problem per line.
type Errors []*Error

// Error joins the problems, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As and errors.Is look at each problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Sort orders the problems by file, line, column, then path and message.
func (es Errors) Sort() {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Message < b.Message
	})
}

// Err returns nil when there are no problems, and the sorted list otherwise.
// Use it to return an Errors value as an error without producing a non-nil
// error holding an empty list.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	out := make(Errors, len(es))
	copy(out, es)
	out.Sort()
	return out
}
