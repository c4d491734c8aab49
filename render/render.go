// Package render writes CLI results as a table, JSON or YAML. Every listing in
// cloudctl goes through it so that --format behaves the same everywhere.
package render

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"
)

// Formats are the accepted values of --format.
var Formats = []string{"table", "json", "yaml"}

// CheckFormat returns an error naming the accepted values when f is not one of them.
func CheckFormat(f string) error {
	for _, k := range Formats {
		if f == k {
			return nil
		}
	}
	return fmt.Errorf("unknown --format %q: use table, json or yaml", f)
}

// Write renders v as JSON or YAML, or calls table for the human view.
// JSON and YAML use the same field names (the struct's json tags).
func Write(w io.Writer, format string, v any, table func(w io.Writer) error) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		// Round-trip through JSON so YAML keys are the documented JSON names.
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		var generic any
		if err := dec.Decode(&generic); err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		generic = numbers(generic)
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(generic); err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		return enc.Close()
	case "table", "":
		return table(w)
	default:
		return CheckFormat(format)
	}
}

// numbers turns json.Number into int64 or float64, so large integers (byte
// sizes) come out in YAML as integers, not as 1.073741824e+10.
func numbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		if f, err := x.Float64(); err == nil {
			return f
		}
		return x.String()
	}
	return v
}

// Table is a small aligned-column writer.
type Table struct {
	tw *tabwriter.Writer
}

// NewTable starts a table with the given header.
func NewTable(w io.Writer, header ...string) *Table {
	t := &Table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.Row(header...)
	return t
}

// Row adds one row.
func (t *Table) Row(cols ...string) {
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

// Flush writes the table out.
func (t *Table) Flush() error { return t.tw.Flush() }
