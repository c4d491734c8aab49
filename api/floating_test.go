package api

import (
	"strings"
	"testing"
)

func TestParseFloatingAddress(t *testing.T) {
	for in, want := range map[string]struct {
		addr string
		bits int
		err  string
	}{
		"10.0.0.100":        {addr: "10.0.0.100", bits: -1},
		" 10.0.0.100/24 ":   {addr: "10.0.0.100", bits: 24},
		"::ffff:10.0.0.100": {addr: "10.0.0.100", bits: -1},
		"fd00::100":         {err: "is IPv6, and only IPv4"},
		"fd00::100/64":      {err: "is IPv6, and only IPv4"},
		"10.0.0.100/33":     {err: "not an address with a prefix length"},
		"10.0.0.100:3306":   {err: "not an IP address"},
		"":                  {err: "not an IP address"},
		"127.0.0.1":         {err: "cannot float"},
		"0.0.0.0":           {err: "cannot float"},
		"224.0.0.18":        {err: "cannot float"},
		"255.255.255.255":   {err: "cannot float"},
	} {
		a, bits, err := ParseFloatingAddress(in)
		switch {
		case want.err != "":
			if err == nil || !strings.Contains(err.Error(), want.err) {
				t.Errorf("%q: error %v, want one containing %q", in, err, want.err)
			}
		case err != nil:
			t.Errorf("%q: %v", in, err)
		case a.String() != want.addr || bits != want.bits:
			t.Errorf("%q: %s /%d, want %s /%d", in, a, bits, want.addr, want.bits)
		}
	}
}
