package strictyaml

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

var (
	durationType        = reflect.TypeOf(time.Duration(0))
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

// Decode decodes the document strictly into v, which must be a non-nil
// pointer. Like yaml.v3, keys absent from the document leave the
// corresponding Go values untouched; lists and scalars are replaced, and map
// entries are set one by one. Every problem found is returned in an Errors
// value; values with problems are skipped and decoding goes on.
func (d *Document) Decode(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("strictyaml: decode %s: need a non-nil pointer, got %T", d.File, v)
	}
	var errs Errors
	if d.Root != nil {
		dec := decoder{doc: d, errs: &errs}
		dec.value(d.Root, rv.Elem(), "")
	}
	return errs.Err()
}

type decoder struct {
	doc  *Document
	errs *Errors
}

func (dec decoder) fail(n *yaml.Node, path, format string, args ...any) {
	*dec.errs = append(*dec.errs, dec.doc.errorAt(n, path, fmt.Sprintf(format, args...)))
}

// wrongType reports that n does not hold what t needs.
func (dec decoder) wrongType(n *yaml.Node, path string, t reflect.Type) {
	noun, hint := describe(t)
	dec.fail(n, path, "expected %s, got %s; %s", noun, got(n), hint)
}

func got(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if isNullNode(n) {
		return "nothing"
	}
	return strconv.Quote(n.Value)
}

// describe names what a Go type expects and how to write it.
func describe(t reflect.Type) (noun, hint string) {
	if t == durationType {
		return "a duration", "write a number with a unit, such as \"90s\", \"5m\" or \"1h\""
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false", "write true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number", "write digits only, without quotes, such as 32"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number of zero or more", "write digits only, without quotes, such as 32"
	case reflect.Float32, reflect.Float64:
		return "a number", "write a number without quotes, such as 32 or 0.5"
	case reflect.String:
		return "text", "write the text, in quotes if it starts with a special character"
	case reflect.Struct, reflect.Map:
		return "a mapping", "write indented \"key: value\" lines under this key"
	case reflect.Slice:
		return "a list", "write one indented \"- item\" line per entry, or [a, b]"
	case reflect.Pointer:
		return describe(t.Elem())
	}
	return "a value of Go type " + t.String(), "fix the value"
}

func (dec decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		return // reported by Parse
	}
	t := v.Type()
	isNull := isNullNode(n)

	if t.Kind() == reflect.Pointer {
		if isNull {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		dec.value(n, v.Elem(), path)
		return
	}
	if t == durationType {
		dec.duration(n, v, path)
		return
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		if n.Kind != yaml.ScalarNode || isNull {
			dec.fail(n, path, "expected a single value, got %s; write the value after the key, on the same line", got(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			dec.fail(n, path, "%s", err.Error())
		}
		return
	}
	switch t.Kind() {
	case reflect.Interface:
		var out any
		if err := n.Decode(&out); err != nil {
			dec.fail(n, path, "cannot read this value (%v); fix the value", err)
			return
		}
		if out == nil {
			v.SetZero()
			return
		}
		rv := reflect.ValueOf(out)
		if !rv.Type().AssignableTo(t) {
			dec.wrongType(n, path, t)
			return
		}
		v.Set(rv)
	case reflect.Struct:
		if isNull {
			return // an empty section: nothing to set
		}
		if n.Kind != yaml.MappingNode {
			dec.wrongType(n, path, t)
			return
		}
		dec.structure(n, v, path)
	case reflect.Map:
		if isNull {
			return
		}
		if n.Kind != yaml.MappingNode {
			dec.wrongType(n, path, t)
			return
		}
		if t.Key().Kind() != reflect.String {
			dec.fail(n, path, "cannot decode into Go type %s (map keys must be strings); fix the Go type", t)
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(t))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
				continue // reported by Parse
			}
			if dec.doc.AllowNull && isNullNode(val) {
				continue
			}
			elem := reflect.New(t.Elem()).Elem()
			before := len(*dec.errs)
			dec.value(val, elem, keyPath(path, k.Value))
			if len(*dec.errs) == before {
				v.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), elem)
			}
		}
	case reflect.Slice:
		if isNull {
			v.SetZero()
			return
		}
		if n.Kind != yaml.SequenceNode {
			dec.wrongType(n, path, t)
			return
		}
		out := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			dec.value(c, out.Index(i), indexPath(path, i))
		}
		v.Set(out)
	default:
		dec.scalar(n, v, path, isNull)
	}
}

func (dec decoder) scalar(n *yaml.Node, v reflect.Value, path string, isNull bool) {
	t := v.Type()
	if n.Kind != yaml.ScalarNode || isNull {
		dec.wrongType(n, path, t)
		return
	}
	tag := n.ShortTag()
	switch t.Kind() {
	case reflect.String:
		v.SetString(n.Value)
	case reflect.Bool:
		if tag != "!!bool" {
			dec.wrongType(n, path, t)
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			dec.wrongType(n, path, t)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if tag != "!!int" || n.Decode(&i) != nil {
			dec.wrongType(n, path, t)
			return
		}
		if v.OverflowInt(i) {
			dec.fail(n, path, "the number %s does not fit; use a value between %d and %d", n.Value, minInt(t), maxInt(t))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		var u uint64
		if tag != "!!int" {
			dec.wrongType(n, path, t)
			return
		}
		if err := n.Decode(&u); err != nil {
			var i int64
			if n.Decode(&i) == nil && i < 0 {
				dec.fail(n, path, "expected a whole number of zero or more, got %s; remove the minus sign", strconv.Quote(n.Value))
				return
			}
			dec.wrongType(n, path, t)
			return
		}
		if v.OverflowUint(u) {
			dec.fail(n, path, "the number %s does not fit; use a value between 0 and %d", n.Value, uint64(1)<<(t.Bits())-1)
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		if (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil {
			dec.wrongType(n, path, t)
			return
		}
		if v.OverflowFloat(f) {
			dec.fail(n, path, "the number %s does not fit; use a smaller number", n.Value)
			return
		}
		v.SetFloat(f)
	default:
		dec.fail(n, path, "cannot decode into Go type %s; fix the Go type", t)
	}
}

func minInt(t reflect.Type) int64 { return -1 << (t.Bits() - 1) }
func maxInt(t reflect.Type) int64 { return 1<<(t.Bits()-1) - 1 }

func (dec decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		dec.wrongType(n, path, durationType)
		return
	}
	d, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if err != nil {
		dec.wrongType(n, path, durationType)
		return
	}
	v.SetInt(int64(d))
}

// field is one decodable struct field, reached through inlined structs.
type field struct {
	name  string
	index []int
}

func fields(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts := tagName(f)
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") && f.Type.Kind() == reflect.Struct {
			for _, sub := range fields(f.Type) {
				out = append(out, field{name: sub.name, index: append([]int{i}, sub.index...)})
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		out = append(out, field{name: name, index: []int{i}})
	}
	return out
}

func tagName(f reflect.StructField) (name, opts string) {
	tag, ok := f.Tag.Lookup("yaml")
	if !ok {
		tag, ok = f.Tag.Lookup("json")
	}
	if ok {
		name, opts, _ = strings.Cut(tag, ",")
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, opts
}

func (dec decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	fs := fields(v.Type())
	byName := make(map[string]field, len(fs))
	names := make([]string, 0, len(fs))
	for _, f := range fs {
		byName[f.name] = f
		names = append(names, f.name)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
			continue // reported by Parse
		}
		kp := keyPath(path, k.Value)
		f, ok := byName[k.Value]
		if !ok {
			dec.fail(k, kp, "%s", unknownKey(k.Value, names))
			continue
		}
		if dec.doc.AllowNull && isNullNode(val) {
			continue
		}
		dec.value(val, v.FieldByIndex(f.index), kp)
	}
}

// unknownKey words the message for a key the target does not have.
func unknownKey(key string, known []string) string {
	if s := closest(key, known); s != "" {
		return fmt.Sprintf("unknown key %q; did you mean %q?", key, s)
	}
	if len(known) == 0 {
		return fmt.Sprintf("unknown key %q; remove it, this section takes no keys", key)
	}
	sorted := append([]string(nil), known...)
	sort.Strings(sorted)
	return fmt.Sprintf("unknown key %q; remove it or use one of: %s", key, strings.Join(sorted, ", "))
}

// closest returns the known key nearest to key, or "" when none is close
// enough to be a likely typo. Case and "-" versus "_" do not count.
func closest(key string, known []string) string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "-", "_") }
	nk := norm(key)
	best, bestD := "", -1
	for _, k := range known {
		d := levenshtein(nk, norm(k))
		if bestD < 0 || d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if bestD < 0 {
		return ""
	}
	limit := 1 + len(best)/4
	if limit > 3 {
		limit = 3
	}
	if bestD > limit {
		return ""
	}
	return best
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

func isNullNode(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}
