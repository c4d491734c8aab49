package main

import (
	"strings"
	"testing"
)

// TestFloatingArg: `cluster set floating-address` refuses IPv6 before
// asking cloudd, with the same sentence as the API and the preseed.
func TestFloatingArg(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.100": "10.0.0.100", "10.0.0.100/24": "10.0.0.100/24", "none": "", "NONE": ""} {
		if got, err := floatingArg(in); err != nil || got != want {
			t.Errorf("%q: %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"fd00::100", "fd00::100/64", "::1"} {
		_, err := floatingArg(bad)
		if err == nil || !strings.Contains(err.Error(), "IPv4") || !strings.Contains(err.Error(), "or none to remove it") {
			t.Errorf("%q: %v, want the IPv4 sentence", bad, err)
		}
	}
}
