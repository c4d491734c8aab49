package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Document is one parsed YAML document with the positions of its nodes.
type Document struct {
	// File names the document in error messages.
	File string
	// Root is the top-level value (a mapping for configuration files); the
	// yaml.DocumentNode wrapper is removed.
	Root *yaml.Node
	// AllowNull makes Decode accept a key with an empty value (`key:` or
	// `key: null`) and leave the Go value as it was, as if the key were
	// absent (the key itself must still be known). Without it an empty value
	// is an error wherever a scalar or a list is expected.
	AllowNull bool
}

// Parse reads one YAML document. It reports syntax errors, an empty document,
// more than one document in the input, duplicate keys, keys that are not
// plain text, merge keys, aliases and unknown tags. The error, when not nil,
// is an Errors value. The Document is nil only when the input could not be
// read as YAML at all (syntax error) or holds nothing; otherwise it is
// returned even alongside errors, so that decoding can report more problems.
func Parse(file string, data []byte) (*Document, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var top yaml.Node
	if err := dec.Decode(&top); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{emptyDocument(file)}
		}
		return nil, Errors{syntaxError(file, data, err)}
	}
	root := &top
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, Errors{emptyDocument(file)}
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return nil, Errors{emptyDocument(file)}
	}
	d := &Document{File: file, Root: root}
	var errs Errors
	d.check(root, "", &errs)

	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		errs = append(errs, syntaxError(file, data, err))
	default:
		line, col := next.Line, next.Column
		if next.Kind == yaml.DocumentNode && len(next.Content) > 0 {
			line, col = next.Content[0].Line, next.Content[0].Column
		}
		errs = append(errs, &Error{File: file, Line: line, Column: col,
			Message: "a second YAML document starts here; keep one document per file and remove the \"---\" separator"})
	}
	return d, errs.Err()
}

// Unmarshal parses data and decodes it strictly into v (a non-nil pointer).
// It returns the Document (nil on syntax errors or an empty input) and every
// problem found, as an Errors value.
func Unmarshal(file string, data []byte, v any) (*Document, error) {
	d, err := Parse(file, data)
	if d == nil {
		return nil, err
	}
	var errs Errors
	var parseErrs Errors
	if errors.As(err, &parseErrs) {
		errs = append(errs, parseErrs...)
	} else if err != nil {
		return d, err
	}
	if err := d.Decode(v); err != nil {
		var decErrs Errors
		if !errors.As(err, &decErrs) {
			return d, err
		}
		errs = append(errs, decErrs...)
	}
	return d, errs.Err()
}

func emptyDocument(file string) *Error {
	return &Error{File: file, Line: 1, Column: 1,
		Message: "the document is empty; write the settings as \"key: value\" lines"}
}

// allowedTags are the tags a strict document may carry, explicitly or by resolution.
var allowedTags = map[string]bool{
	"!!str": true, "!!int": true, "!!float": true, "!!bool": true, "!!null": true,
	"!!map": true, "!!seq": true, "!!timestamp": true,
}

// check walks the tree and reports the problems that do not depend on the
// target type: duplicate and non-text keys, merge keys, aliases, unknown tags.
func (d *Document) check(n *yaml.Node, path string, errs *Errors) {
	switch n.Kind {
	case yaml.AliasNode:
		*errs = append(*errs, d.errorAt(n, path, fmt.Sprintf("aliases (*%s) are not supported; write the value out in full", n.Value)))
		return
	case yaml.ScalarNode:
		if !allowedTags[n.ShortTag()] {
			*errs = append(*errs, d.errorAt(n, path, fmt.Sprintf("unsupported tag %s; remove the tag", n.Tag)))
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			d.check(c, indexPath(path, i), errs)
		}
	case yaml.MappingNode:
		seen := map[string]*yaml.Node{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				*errs = append(*errs, d.errorAt(k, path, "a key is a list or a mapping; keys must be plain text"))
				continue
			}
			if k.ShortTag() == "!!merge" {
				*errs = append(*errs, d.errorAt(k, path, "merge keys (<<) are not supported; write the keys out in full"))
				continue
			}
			kp := keyPath(path, k.Value)
			if first, ok := seen[k.Value]; ok {
				*errs = append(*errs, d.errorAt(k, kp, fmt.Sprintf("duplicate key %q, first set at line %d column %d; keep only one of them",
					k.Value, first.Line, first.Column)))
			} else {
				seen[k.Value] = k
			}
			d.check(v, kp, errs)
		}
	}
}

func (d *Document) errorAt(n *yaml.Node, path, msg string) *Error {
	return &Error{File: d.File, Line: n.Line, Column: n.Column, Path: path, Message: msg}
}

// Errorf returns an Error positioned at the value for path, for the caller's
// own (semantic) checks. When path is not in the document, the error is
// placed at the key of the closest enclosing entry that is (the start of the
// document at worst), still naming the full path. The message should read
// "what is wrong; what to do".
func (d *Document) Errorf(path, format string, args ...any) *Error {
	e := &Error{File: d.File, Path: path, Message: fmt.Sprintf(format, args...)}
	if n := d.position(path); n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// Find returns the value node at path and true. When the path is not in the
// document it returns the deepest enclosing node that is, and false. An empty
// path is the root. Paths use "." between keys and "[i]" for list items;
// keys holding "." or "[" cannot be addressed.
func (d *Document) Find(path string) (*yaml.Node, bool) {
	n, found, _ := d.walk(path)
	return n, found
}

// position is the node an error about path points at: the value when path
// exists, else the key (or list item) of the deepest enclosing entry.
func (d *Document) position(path string) *yaml.Node {
	n, found, last := d.walk(path)
	if found || last == nil {
		return n
	}
	return last
}

// walk follows path. It returns the deepest node reached, whether the whole
// path was found, and the key node (or list item) used for the last step taken.
func (d *Document) walk(path string) (n *yaml.Node, found bool, last *yaml.Node) {
	if d == nil || d.Root == nil {
		return nil, false, nil
	}
	segs, err := splitPath(path)
	if err != nil {
		return d.Root, false, nil
	}
	n = d.Root
	for _, s := range segs {
		key, next := child(n, s)
		if next == nil {
			return n, false, last
		}
		n, last = next, key
	}
	return n, true, last
}

// FindKey returns the key node for the last key of path (to point at a key
// rather than its value), or nil when path does not end in a key present in
// the document.
func (d *Document) FindKey(path string) *yaml.Node {
	segs, err := splitPath(path)
	if err != nil || len(segs) == 0 || segs[len(segs)-1].index >= 0 {
		return nil
	}
	_, found, last := d.walk(path)
	if !found {
		return nil
	}
	return last
}

type segment struct {
	key   string
	index int // -1 for a key
}

// child returns the key node (the item itself for a list) and the value
// node for one step of a path, or nils.
func child(n *yaml.Node, s segment) (key, value *yaml.Node) {
	if s.index >= 0 {
		if n.Kind != yaml.SequenceNode || s.index >= len(n.Content) {
			return nil, nil
		}
		return n.Content[s.index], n.Content[s.index]
	}
	if n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == s.key {
			key, value = n.Content[i], n.Content[i+1] // the last occurrence counts
		}
	}
	return key, value
}

func splitPath(path string) ([]segment, error) {
	var segs []segment
	for _, part := range strings.Split(path, ".") {
		if part == "" {
			if path == "" {
				return nil, nil
			}
			return nil, fmt.Errorf("empty key in path %q", path)
		}
		key := part
		var idx []int
		if i := strings.IndexByte(part, '['); i >= 0 {
			key = part[:i]
			rest := part[i:]
			for rest != "" {
				end := strings.IndexByte(rest, ']')
				if rest[0] != '[' || end < 0 {
					return nil, fmt.Errorf("bad index in path %q", path)
				}
				n, err := strconv.Atoi(rest[1:end])
				if err != nil || n < 0 {
					return nil, fmt.Errorf("bad index in path %q", path)
				}
				idx = append(idx, n)
				rest = rest[end+1:]
			}
		}
		if key != "" {
			segs = append(segs, segment{key: key, index: -1})
		}
		for _, n := range idx {
			segs = append(segs, segment{index: n})
		}
	}
	return segs, nil
}

func keyPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// syntaxError turns a yaml.v3 error ("yaml: line N: ...") into an Error at
// FILE:N:COL. yaml.v3 gives no column; the column is that of the offending
// tab when a tab is the problem, else of the first character on the line.
// yaml.v3 leaves out "line N" for the first line; that is line 1.
func syntaxError(file string, data []byte, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 1
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	text := lineText(data, line)
	col := 1
	if i := strings.IndexFunc(text, func(r rune) bool { return r != ' ' }); i >= 0 {
		col = i + 1
	}
	var why string
	switch {
	case strings.Contains(msg, "tab character"):
		// yaml.v3 names the line before the tab; find the tab.
		for l := line; l <= line+1; l++ {
			if i := strings.IndexByte(lineText(data, l), '\t'); i >= 0 {
				line, col = l, i+1
				break
			}
		}
		why = "a tab is used for indentation; indent with spaces"
	case strings.Contains(msg, "found character that cannot start any token"):
		if i := strings.IndexByte(text, '\t'); i >= 0 {
			col = i + 1
			why = "a tab is used for indentation; indent with spaces"
		} else {
			why = "a value starts with a character YAML reserves (such as @, ` or %); put the value in quotes"
		}
	case strings.Contains(msg, "mapping values are not allowed in this context"):
		why = "a value contains \": \" or a key is indented deeper than its siblings; quote the value or align the key"
	case strings.Contains(msg, "did not find expected key"):
		why = "this line is not indented like the keys around it; align it with its sibling keys"
	case strings.Contains(msg, "could not find expected ':'"):
		why = "a line is not a \"key: value\" pair; add \": \" after the key, or quote a value that spans lines"
	case strings.Contains(msg, "found unexpected end of stream"):
		why = "the file ends inside a quoted string; add the closing quote"
	case strings.Contains(msg, "did not find expected ',' or ']'"):
		why = "a [list] is not closed; add the missing \"]\" or a comma between items"
	case strings.Contains(msg, "did not find expected ',' or '}'"):
		why = "a {mapping} is not closed; add the missing \"}\" or a comma between entries"
	case strings.Contains(msg, "did not find expected '-' indicator"):
		why = "list items and keys are mixed at the same level; start every item with \"- \" or use only keys"
	case strings.Contains(msg, "block sequence entries are not allowed in this context"):
		why = "a list item starts on the same line as its key; put the \"- \" items on the following lines, indented"
	case strings.Contains(msg, "did not find expected node content"):
		why = "a value is missing where one is expected; write the value, quoting it if needed"
	case strings.HasPrefix(msg, "unknown anchor"):
		why = "aliases are not supported and this one names no anchor; write the value out in full"
	default:
		why = fmt.Sprintf("%s; fix the YAML syntax on this line", msg)
	}
	return &Error{File: file, Line: line, Column: col, Message: "invalid YAML: " + why}
}

func lineText(data []byte, line int) string {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return ""
	}
	return strings.TrimRight(lines[line-1], "\r")
}
