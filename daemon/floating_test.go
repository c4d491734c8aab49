package daemon

import (
	"strings"
	"testing"
)

// TestValidFloatingAddress: PUT /1.0/plan/floating-address takes what the
// floating endpoint's driver can run (IPv4) and refuses IPv6 up front with
// one sentence, instead of storing an address the driver then refuses.
func TestValidFloatingAddress(t *testing.T) {
	for _, ok := range []string{"10.0.0.100", "10.0.0.100/24"} {
		if err := validFloatingAddress(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for bad, want := range map[string]string{
		"fd00::100":    "only IPv4 floating addresses are supported",
		"fd00::100/64": "only IPv4 floating addresses are supported",
		"10.0.0.300":   "not an IP address",
		"127.0.0.1":    "cannot float",
	} {
		if err := validFloatingAddress(bad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", bad, err, want)
		}
	}
}
