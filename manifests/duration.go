package manifests

import (
	"fmt"
	"strings"
	"time"
)

// Duration is a time.Duration written as "90s", "5m" or "1h" in manifests,
// and in their JSON and YAML output.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String writes d in its shortest form: "1h", "1h30m", "90s" becomes "1m30s".
func (d Duration) String() string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// MarshalText writes d as String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads a Go duration such as "30s", "5m" or "1h30m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("expected a duration, got %q; write a number with a unit, such as \"90s\", \"5m\" or \"1h\"", string(b))
	}
	*d = Duration(v)
	return nil
}
