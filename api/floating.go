package api

import (
	"fmt"
	"net/netip"
	"strings"
)

// ParseFloatingAddress reads a floating address as the plan stores it: a
// bare IPv4 address ("10.0.0.100") or one with a prefix length
// ("10.0.0.100/24"). bits is -1 when no prefix length was given. The error
// is one sentence saying what is wrong and what to write instead; callers
// name where the address came from. Every place an address enters (preseed,
// guided bootstrap, PUT /1.0/plan/floating-address, `cloudctl cluster set
// floating-address`) and the floating endpoint's driver use it, so an
// address one accepts the others accept too.
//
// Only IPv4 is supported: the endpoint's keepalived configuration, its
// non-local bind (net.ipv4.ip_nonlocal_bind) and the VRRP peers are IPv4.
func ParseFloatingAddress(s string) (addr netip.Addr, bits int, err error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Addr{}, 0, fmt.Errorf("floating address %q is not an address with a prefix length: write it as 10.0.0.100/24 or 10.0.0.100", s)
		}
		addr, bits = p.Addr(), p.Bits()
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Addr{}, 0, fmt.Errorf("floating address %q is not an IP address: write it as 10.0.0.100/24 or 10.0.0.100", s)
		}
		addr, bits = a, -1
	}
	if addr.Is4In6() {
		addr = addr.Unmap()
	}
	if !addr.Is4() {
		return netip.Addr{}, 0, fmt.Errorf("floating address %q is IPv6, and only IPv4 floating addresses are supported: choose a free IPv4 address on the control nodes' network", s)
	}
	if addr.IsUnspecified() || addr.IsLoopback() || addr.IsMulticast() || addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, 0, fmt.Errorf("floating address %q cannot float between nodes (unspecified, loopback, multicast or broadcast): choose a free IPv4 address on the control nodes' network", s)
	}
	return addr, bits, nil
}
