package bootstrap

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a number of bytes written with a unit in a preseed: "100GiB",
// "500GB", "1.5TiB", or a plain number of bytes.
type Size uint64

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"PiB", 1 << 50},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"PB", 1e15},
	{"B", 1},
}

// ParseSize reads a size such as "100GiB", "500GB" or "1073741824".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	for _, u := range sizeUnits {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	if mult == 1 {
		if n, err := strconv.ParseUint(t, 10, 64); err == nil {
			return Size(n), nil
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || t == "" || strings.ContainsAny(t, "eExXpP_") || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
		return 0, fmt.Errorf("invalid size %q; write a number with a unit, such as 100GiB, 500GB or 2TiB", s)
	}
	b := v * mult
	if b >= math.MaxUint64 || b != math.Trunc(b) {
		if b >= math.MaxUint64 {
			return 0, fmt.Errorf("size %q is too large; write a size below 16 EiB", s)
		}
		b = math.Round(b)
	}
	return Size(b), nil
}

// UnmarshalText implements encoding.TextUnmarshaler (strictyaml uses it).
func (z *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*z = v
	return nil
}

// String writes the size with the largest binary unit that divides it
// exactly, so that ParseSize reads back the same number of bytes.
func (z Size) String() string {
	for _, u := range []struct {
		suffix string
		mult   uint64
	}{{"PiB", 1 << 50}, {"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if z != 0 && uint64(z)%u.mult == 0 {
			return fmt.Sprintf("%d%s", uint64(z)/u.mult, u.suffix)
		}
	}
	return strconv.FormatUint(uint64(z), 10)
}
