package strictyaml

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

type level string

func (l *level) UnmarshalText(b []byte) error {
	switch s := string(b); s {
	case "debug", "info", "error":
		*l = level(s)
		return nil
	default:
		return fmt.Errorf("unknown level %q; use debug, info or error", s)
	}
}

type common struct {
	Owner string `yaml:"owner" json:"owner"`
}

type nested struct {
	Cores int    `yaml:"cores" json:"cores"`
	Label string `yaml:"label" json:"label"`
}

type config struct {
	Name     string            `yaml:"name" json:"name"`
	Port     int               `yaml:"port" json:"port"`
	Small    int8              `yaml:"small" json:"small"`
	Size     uint64            `yaml:"size" json:"size"`
	Ratio    float64           `yaml:"ratio" json:"ratio"`
	Enabled  bool              `yaml:"enabled" json:"enabled"`
	Timeout  time.Duration     `yaml:"timeout" json:"timeout"`
	Tags     []string          `yaml:"tags" json:"tags"`
	Limits   map[string]int    `yaml:"limits" json:"limits"`
	Nested   nested            `yaml:"nested" json:"nested"`
	Items    []nested          `yaml:"items" json:"items"`
	Ptr      *nested           `yaml:"ptr" json:"ptr"`
	Level    level             `yaml:"level" json:"level"`
	Extra    any               `yaml:"extra" json:"extra"`
	JSONOnly string            `json:"json_only"`
	Labels   map[string]string `yaml:"labels" json:"labels"`
	Skipped  string            `yaml:"-" json:"-"`
	common   `yaml:",inline"`
	hidden   string //nolint:unused // must be ignored by the decoder
}

func decode(t *testing.T, file, src string) (config, *Document, error) {
	t.Helper()
	var c config
	d, err := Unmarshal(file, []byte(src), &c)
	return c, d, err
}

func TestDecodeValid(t *testing.T) {
	src := `
name: web
port: 8080
small: -128
size: 10_737_418_240
ratio: 0.5
enabled: true
timeout: 1h30m
tags: [a, b]
limits: {cpu: 2, ram: 4}
nested:
  cores: 3
  label: x
items:
  - cores: 1
  - cores: 2
    label: two
ptr:
  cores: 9
level: info
extra: {k: [1, 2]}
json_only: j
owner: me
labels:
  "a b": "1"
`
	c, d, err := decode(t, "ok.yaml", src)
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	want := config{
		Name: "web", Port: 8080, Small: -128, Size: 10 << 30, Ratio: 0.5, Enabled: true,
		Timeout: 90 * time.Minute, Tags: []string{"a", "b"}, Limits: map[string]int{"cpu": 2, "ram": 4},
		Nested: nested{Cores: 3, Label: "x"}, Items: []nested{{Cores: 1}, {Cores: 2, Label: "two"}},
		Ptr: &nested{Cores: 9}, Level: "info",
		Extra:    map[string]any{"k": []any{1, 2}},
		JSONOnly: "j", Labels: map[string]string{"a b": "1"},
		common: common{Owner: "me"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("decoded\n%+v\nwant\n%+v", c, want)
	}
	if d == nil || d.Root == nil {
		t.Fatal("no document returned")
	}
}

func TestDecodeKeepsAbsentValues(t *testing.T) {
	c := config{Name: "keep", Port: 1, Limits: map[string]int{"old": 1}}
	if _, err := Unmarshal("f.yaml", []byte("port: 2\nlimits: {new: 2}\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "keep" || c.Port != 2 || c.Limits["old"] != 1 || c.Limits["new"] != 2 {
		t.Errorf("got %+v", c)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"unknown key with suggestion", "nmae: x\n",
			[]string{`f.yaml:1:1: nmae: unknown key "nmae"; did you mean "name"?`}},
		{"unknown key hyphen for underscore", "nested:\n  Cores: 1\n",
			[]string{`f.yaml:2:3: nested.Cores: unknown key "Cores"; did you mean "cores"?`}},
		{"unknown key without suggestion", "nested:\n  zzzzzzzz: 1\n",
			[]string{`f.yaml:2:3: nested.zzzzzzzz: unknown key "zzzzzzzz"; remove it or use one of: cores, label`}},
		{"hidden field is not a key", "hidden: x\n",
			[]string{`f.yaml:1:1: hidden: unknown key "hidden"; remove it or use one of: enabled, extra, items, json_only, labels, level, limits, name, nested, owner, port, ptr, ratio, size, small, tags, timeout`}},
		{"skipped field is not a key", "skipped: x\n",
			[]string{`f.yaml:1:1: skipped: unknown key "skipped"; remove it or use one of: enabled, extra, items, json_only, labels, level, limits, name, nested, owner, port, ptr, ratio, size, small, tags, timeout`}},
		{"string for int", "port: abc\n",
			[]string{`f.yaml:1:7: port: expected a whole number, got "abc"; write digits only, without quotes, such as 32`}},
		{"quoted int", "port: \"32\"\n",
			[]string{`f.yaml:1:7: port: expected a whole number, got "32"; write digits only, without quotes, such as 32`}},
		{"float for int", "port: 1.5\n",
			[]string{`f.yaml:1:7: port: expected a whole number, got "1.5"; write digits only, without quotes, such as 32`}},
		{"overflow", "small: 300\n",
			[]string{`f.yaml:1:8: small: the number 300 does not fit; use a value between -128 and 127`}},
		{"negative uint", "size: -1\n",
			[]string{`f.yaml:1:7: size: expected a whole number of zero or more, got "-1"; remove the minus sign`}},
		{"yes is not a bool", "enabled: yes\n",
			[]string{`f.yaml:1:10: enabled: expected true or false, got "yes"; write true or false`}},
		{"float", "ratio: half\n",
			[]string{`f.yaml:1:8: ratio: expected a number, got "half"; write a number without quotes, such as 32 or 0.5`}},
		{"duration without unit", "timeout: 5\n",
			[]string{`f.yaml:1:10: timeout: expected a duration, got "5"; write a number with a unit, such as "90s", "5m" or "1h"`}},
		{"null for scalar", "port:\n",
			[]string{`f.yaml:1:6: port: expected a whole number, got nothing; write digits only, without quotes, such as 32`}},
		{"list for string", "name: [a]\n",
			[]string{`f.yaml:1:7: name: expected text, got a list; write the text, in quotes if it starts with a special character`}},
		{"scalar for list", "tags: a\n",
			[]string{`f.yaml:1:7: tags: expected a list, got "a"; write one indented "- item" line per entry, or [a, b]`}},
		{"scalar for struct", "nested: 3\n",
			[]string{`f.yaml:1:9: nested: expected a mapping, got "3"; write indented "key: value" lines under this key`}},
		{"bad item in list", "items:\n  - cores: x\n",
			[]string{`f.yaml:2:12: items[0].cores: expected a whole number, got "x"; write digits only, without quotes, such as 32`}},
		{"bad map value", "limits:\n  cpu: lots\n",
			[]string{`f.yaml:2:8: limits.cpu: expected a whole number, got "lots"; write digits only, without quotes, such as 32`}},
		{"text unmarshaler message is kept", "level: loud\n",
			[]string{`f.yaml:1:8: level: unknown level "loud"; use debug, info or error`}},
		{"mapping for text unmarshaler", "level:\n  x: 1\n",
			[]string{`f.yaml:2:3: level: expected a single value, got a mapping; write the value after the key, on the same line`}},
		{"null for text unmarshaler", "level:\n",
			[]string{`f.yaml:1:7: level: expected a single value, got nothing; write the value after the key, on the same line`}},
		{"top level list", "- a\n",
			[]string{`f.yaml:1:1: expected a mapping, got a list; write indented "key: value" lines under this key`}},
		{"duplicate key", "name: a\nport: 1\nname: b\n",
			[]string{`f.yaml:3:1: name: duplicate key "name", first set at line 1 column 1; keep only one of them`}},
		{"duplicate in flow mapping", "limits: {cpu: 1, cpu: 2}\n",
			[]string{`f.yaml:1:18: limits.cpu: duplicate key "cpu", first set at line 1 column 10; keep only one of them`}},
		{"duplicate nested", "nested:\n  cores: 1\n  cores: 2\n",
			[]string{`f.yaml:3:3: nested.cores: duplicate key "cores", first set at line 2 column 3; keep only one of them`}},
		{"alias", "name: &n web\nnested:\n  label: *n\n",
			[]string{`f.yaml:3:10: nested.label: aliases (*n) are not supported; write the value out in full`}},
		{"merge key", "nested: &n {cores: 1}\nptr:\n  <<: *n\n",
			[]string{`f.yaml:3:3: ptr: merge keys (<<) are not supported; write the keys out in full`}},
		{"unknown tag", "name: !secret x\n",
			[]string{`f.yaml:1:7: name: unsupported tag !secret; remove the tag`}},
		{"empty", "", []string{`f.yaml:1:1: the document is empty; write the settings as "key: value" lines`}},
		{"comments only", "# nothing\n\n", []string{`f.yaml:1:1: the document is empty; write the settings as "key: value" lines`}},
		{"null document", "~\n", []string{`f.yaml:1:1: the document is empty; write the settings as "key: value" lines`}},
		{"two documents", "name: a\n---\nname: b\n",
			[]string{`f.yaml:3:1: a second YAML document starts here; keep one document per file and remove the "---" separator`}},
		{"tab indentation", "nested:\n\tcores: 1\n",
			[]string{`f.yaml:2:1: invalid YAML: a tab is used for indentation; indent with spaces`}},
		{"reserved character on first line", "name: @x\n",
			[]string{"f.yaml:1:1: invalid YAML: a value starts with a character YAML reserves (such as @, ` or %); put the value in quotes"}},
		{"colon in value", "name: a: b\n",
			[]string{`f.yaml:1:1: invalid YAML: a value contains ": " or a key is indented deeper than its siblings; quote the value or align the key`}},
		{"over-indented key", "name: a\n  port: 1\n",
			[]string{`f.yaml:2:3: invalid YAML: a value contains ": " or a key is indented deeper than its siblings; quote the value or align the key`}},
		{"missing colon", "name: a\nport\nsmall: 1\n",
			[]string{`f.yaml:2:1: invalid YAML: a line is not a "key: value" pair; add ": " after the key, or quote a value that spans lines`}},
		{"unclosed list", "tags: [a, b\n",
			[]string{`f.yaml:1:1: invalid YAML: a [list] is not closed; add the missing "]" or a comma between items`}},
		{"unclosed quote", "name: \"abc\n",
			[]string{`f.yaml:2:1: invalid YAML: the file ends inside a quoted string; add the closing quote`}},
		{"several errors sorted", "port: x\nnmae: y\nenabled: 1\n",
			[]string{
				`f.yaml:1:7: port: expected a whole number, got "x"; write digits only, without quotes, such as 32`,
				`f.yaml:2:1: nmae: unknown key "nmae"; did you mean "name"?`,
				`f.yaml:3:10: enabled: expected true or false, got "1"; write true or false`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := decode(t, "f.yaml", tt.src)
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err.Error() != strings.Join(tt.want, "\n") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestErrorsAsFindsEachError(t *testing.T) {
	_, _, err := decode(t, "f.yaml", "port: x\n")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(*Error) failed on %v", err)
	}
	if e.Line != 1 || e.Column != 7 || e.Path != "port" {
		t.Errorf("got %+v", e)
	}
}

func TestErrorFormatting(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 2, Column: 3, Path: "x.y", Message: "bad; fix"}, "a.yaml:2:3: x.y: bad; fix"},
		{Error{File: "a.yaml", Line: 2, Message: "bad; fix"}, "a.yaml:2: bad; fix"},
		{Error{File: "a.yaml", Path: "x", Message: "bad; fix"}, "a.yaml: x: bad; fix"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	if (Errors{}).Err() != nil {
		t.Error("empty Errors.Err() is not nil")
	}
	es := Errors{{File: "b", Line: 1}, {File: "a", Line: 9}, {File: "a", Line: 2, Column: 5}, {File: "a", Line: 2, Column: 1}}
	sorted := es.Err().(Errors)
	var order []string
	for _, e := range sorted {
		order = append(order, fmt.Sprintf("%s:%d:%d", e.File, e.Line, e.Column))
	}
	if got := strings.Join(order, " "); got != "a:2:1 a:2:5 a:9:0 b:1:0" {
		t.Errorf("sorted order %s", got)
	}
	if es[0].File != "b" {
		t.Error("Err() sorted the receiver in place")
	}
}

func TestFindAndErrorf(t *testing.T) {
	src := "name: web\nitems:\n  - cores: 1\n  - cores: 2\n    label: two\nnested:\n  cores: 3\n"
	d, err := Parse("f.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path      string
		found     bool
		line, col int
	}{
		{"", true, 1, 1},
		{"name", true, 1, 7},
		{"items[1].label", true, 5, 12},
		{"items[1]", true, 4, 5},
		{"nested.cores", true, 7, 10},
		{"nested.missing", false, 7, 3},
		{"items[7].cores", false, 3, 3},
		{"name.deeper", false, 1, 7},
	}
	for _, tt := range tests {
		n, found := d.Find(tt.path)
		if found != tt.found || n == nil || n.Line != tt.line || n.Column != tt.col {
			var l, c int
			if n != nil {
				l, c = n.Line, n.Column
			}
			t.Errorf("Find(%q) = %d:%d %v, want %d:%d %v", tt.path, l, c, found, tt.line, tt.col, tt.found)
		}
	}
	e := d.Errorf("items[1].label", "label %q is taken; choose another", "two")
	if got, want := e.Error(), `f.yaml:5:12: items[1].label: label "two" is taken; choose another`; got != want {
		t.Errorf("Errorf = %q, want %q", got, want)
	}
	// A missing key is reported at the key of the closest enclosing entry.
	if got, want := d.Errorf("nested.missing", "missing; add it").Error(), "f.yaml:6:1: nested.missing: missing; add it"; got != want {
		t.Errorf("Errorf = %q, want %q", got, want)
	}
	if got, want := d.Errorf("other", "missing; add it").Error(), "f.yaml:1:1: other: missing; add it"; got != want {
		t.Errorf("Errorf = %q, want %q", got, want)
	}
	if k := d.FindKey("nested.cores"); k == nil || k.Line != 7 || k.Column != 3 {
		t.Errorf("FindKey(nested.cores) = %+v", k)
	}
	if k := d.FindKey("nested.nothing"); k != nil {
		t.Errorf("FindKey of a missing key = %+v", k)
	}
}

func TestAllowNull(t *testing.T) {
	src := "name:\nport: ~\nlimits:\n  cpu:\n  ram: 2\nbogus:\n"
	d, err := Parse("f.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	c := config{Name: "keep", Port: 7, Limits: map[string]int{"cpu": 1}}
	err = d.Decode(&c)
	want := []string{
		`f.yaml:1:6: name: expected text, got nothing; write the text, in quotes if it starts with a special character`,
		`f.yaml:2:7: port: expected a whole number, got nothing; write digits only, without quotes, such as 32`,
		`f.yaml:4:7: limits.cpu: expected a whole number, got nothing; write digits only, without quotes, such as 32`,
		`f.yaml:6:1: bogus: unknown key "bogus"; remove it or use one of: enabled, extra, items, json_only, labels, level, limits, name, nested, owner, port, ptr, ratio, size, small, tags, timeout`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Fatalf("without AllowNull got\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
	d.AllowNull = true
	c = config{Name: "keep", Port: 7, Limits: map[string]int{"cpu": 1}}
	err = d.Decode(&c)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Path != "bogus" {
		t.Fatalf("with AllowNull an unknown key must still be reported, got %v", err)
	}
	if c.Name != "keep" || c.Port != 7 || c.Limits["cpu"] != 1 || c.Limits["ram"] != 2 {
		t.Errorf("AllowNull changed values: %+v", c)
	}
}

func TestDecodeNeedsPointer(t *testing.T) {
	d, err := Parse("f.yaml", []byte("a: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	var c config
	if err := d.Decode(c); err == nil {
		t.Error("Decode of a non-pointer succeeded")
	}
}

func TestClosest(t *testing.T) {
	known := []string{"multi_threshold_gib", "base_port", "cores", "ram_gib"}
	tests := map[string]string{
		"multi_treshold_gib":  "multi_threshold_gib",
		"multi-threshold-gib": "multi_threshold_gib",
		"Base_Port":           "base_port",
		"core":                "cores",
		"ram":                 "",
		"something":           "",
	}
	for in, want := range tests {
		if got := closest(in, known); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestGolden decodes each testdata/*.yaml into config and compares the
// messages (or the decoded value) with testdata/*.golden. Run with -update
// to rewrite the golden files after an intended change.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var c config
			_, err = Unmarshal(f, data, &c)
			var got string
			if err != nil {
				got = err.Error() + "\n"
			} else {
				b, _ := json.MarshalIndent(c, "", "  ")
				got = "ok\n" + string(b) + "\n"
			}
			golden.Check(t, strings.TrimSuffix(f, ".yaml")+".golden", got, *update)
		})
	}
}
