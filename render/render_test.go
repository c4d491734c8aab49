package render

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

type item struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
}

func TestWrite(t *testing.T) {
	v := []item{{Name: "node1", Roles: []string{"control"}}}
	table := func(w io.Writer) error {
		tb := NewTable(w, "NAME", "ROLES")
		tb.Row("node1", "control")
		return tb.Flush()
	}
	var js, ym, tb bytes.Buffer
	if err := Write(&js, "json", v, table); err != nil || !strings.Contains(js.String(), `"name": "node1"`) {
		t.Fatalf("json: %v %s", err, js.String())
	}
	if err := Write(&ym, "yaml", v, table); err != nil || !strings.Contains(ym.String(), "- name: node1") || !strings.Contains(ym.String(), "roles:") {
		t.Fatalf("yaml: %v %s", err, ym.String())
	}
	if err := Write(&tb, "table", v, table); err != nil || !strings.HasPrefix(tb.String(), "NAME   ROLES") {
		t.Fatalf("table: %v %q", err, tb.String())
	}
	if err := Write(&tb, "xml", v, table); err == nil || !strings.Contains(err.Error(), "use table, json or yaml") {
		t.Fatalf("xml: %v", err)
	}
}

func TestYAMLKeepsLargeIntegers(t *testing.T) {
	var b bytes.Buffer
	v := map[string]any{"size_bytes": int64(10737418240), "ratio": 0.5}
	if err := Write(&b, "yaml", v, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "size_bytes: 10737418240") || !strings.Contains(b.String(), "ratio: 0.5") {
		t.Fatalf("yaml: %s", b.String())
	}
}
