package preflight

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Clock judges the offset of to's clock against from's: offset is to minus
// from, uncertainty the half round trip of the measurement. Only what is
// certain counts: |offset| - uncertainty against ClockWarn and ClockRefuse.
func Clock(from, to string, offset, uncertainty time.Duration) Finding {
	abs := offset
	if abs < 0 {
		abs = -abs
	}
	sure := abs - uncertainty
	f := Finding{Check: CheckClock, From: from, To: to, Figure: fmt.Sprintf("%+.3f s (±%.3f s)", offset.Seconds(), uncertainty.Seconds())}
	dir := "ahead of"
	if offset < 0 {
		dir = "behind"
	}
	fix := "synchronise the clocks of every node with NTP (chrony or systemd-timesyncd) and check again"
	switch {
	case sure > ClockRefuse:
		f.Severity = Fail
		f.Message = fmt.Sprintf("the clock of %s is %.3f s %s %s's, more than the %.0f s a join tolerates (certificates and token expiry go wrong)", to, abs.Seconds(), dir, from, ClockRefuse.Seconds())
		f.Fix = fix
	case sure > ClockWarn:
		f.Severity = Warn
		f.Message = fmt.Sprintf("the clock of %s is %.3f s %s %s's, more than the %.2f s Ceph monitors tolerate", to, abs.Seconds(), dir, from, ClockWarn.Seconds())
		f.Fix = fix
	default:
		f.Severity = OK
		f.Message = fmt.Sprintf("the clocks of %s and %s agree within %.3f s", from, to, max(abs, uncertainty).Seconds())
	}
	return f
}

// Offset is the NTP-style estimate of the offset of a remote clock that
// read remote between the local readings sent and received, and its
// uncertainty (half the round trip).
func Offset(sent, remote, received time.Time) (offset, uncertainty time.Duration) {
	rtt := received.Sub(sent)
	mid := sent.Add(rtt / 2)
	return remote.Sub(mid), rtt / 2
}

// Version judges whether two cloudctl versions can be in one cluster: the
// same major and minor release ("v1.4.2" and "v1.4.0" can; "v1.5.0" cannot),
// or, for builds without a release number ("dev"), the same string.
func Version(from, fromVer, to, toVer string) Finding {
	f := Finding{Check: CheckVersion, From: from, To: to, Figure: toVer}
	a, okA := majorMinor(fromVer)
	b, okB := majorMinor(toVer)
	if (okA && okB && a == b) || fromVer == toVer {
		f.Severity = OK
		f.Message = fmt.Sprintf("%s runs cloudctl %s, compatible with %s's %s", to, toVer, from, fromVer)
		return f
	}
	f.Severity = Fail
	f.Message = fmt.Sprintf("%s runs cloudctl %s but %s runs %s: versions must share the major and minor release", to, toVer, from, fromVer)
	f.Fix = "install the same cloudctl release on every node"
	return f
}

func majorMinor(v string) (string, bool) {
	v = strings.TrimPrefix(v, "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return "", false
	}
	for _, p := range parts[:2] {
		if _, err := strconv.Atoi(p); err != nil {
			return "", false
		}
	}
	return parts[0] + "." + parts[1], true
}

// NameTaken is the finding for a joiner whose name a member already has.
func NameTaken(name string) Finding {
	return Finding{Check: CheckName, To: name, Severity: Fail,
		Message: fmt.Sprintf("the name %q is already a member of this cluster", name),
		Fix:     fmt.Sprintf("join under another name, or remove the old member first with `cloudctl cluster remove %s`", name)}
}

// AddressTaken is the finding for a joiner whose address a member has.
func AddressTaken(name, addr, member string) Finding {
	return Finding{Check: CheckAddress, To: name, Figure: addr, Severity: Fail,
		Message: fmt.Sprintf("the address %s of %s is already %s's", addr, name, member),
		Fix:     fmt.Sprintf("give %s its own address with --address, or remove %s first", name, member)}
}

// Unique is the finding that name and address are not used by a member.
func Unique(name, addr string) Finding {
	return Finding{Check: CheckName, To: name, Figure: addr, Severity: OK,
		Message: fmt.Sprintf("no member is called %s or uses %s", name, addr)}
}

// Reached is the finding of a check that from reached to on p.
func Reached(from, to string, p PortSpec) Finding {
	return Finding{Check: CheckReach, From: from, To: to, Port: p.Port, Proto: p.Proto, Purpose: p.Purpose, Severity: OK,
		Message: fmt.Sprintf("%s reaches %s on port %s (%s)", from, to, p, p.Purpose)}
}

// Unreached is the finding of a failed dial from from to to on p; err is
// the dial's error. A refused connection to a port that listens only at
// times (refusedOK: a member's service port, such as Galera's state
// transfer ports) is not a failure: the host answered, so no firewall drops
// the traffic; one that rejects with a reset looks the same, which the
// finding (Skip) says.
func Unreached(from, to string, p PortSpec, err error, refusedOK bool) Finding {
	f := Finding{Check: CheckReach, From: from, To: to, Port: p.Port, Proto: p.Proto, Purpose: p.Purpose, Severity: Fail}
	switch {
	case errors.Is(err, ErrWrongAnswer):
		f.Message = fmt.Sprintf("%s reaches port %s on %s but something other than cloudctl answers there (%s)", from, p, to, p.Purpose)
		f.Fix = fmt.Sprintf("stop what listens on port %d of %s, or give this node another address", p.Port, to)
	case isRefused(err) && refusedOK:
		f.Severity = Skip
		f.Message = fmt.Sprintf("nothing listens on port %s of %s now (%s): %s reaches %s, which answers with a reset, but a firewall that rejects with a reset would look the same", p, to, p.Purpose, from, to)
	case isRefused(err):
		f.Message = fmt.Sprintf("%s cannot reach %s on port %s (%s): the connection is refused", from, to, p, p.Purpose)
		f.Fix = fmt.Sprintf("open port %d/%s from %s to %s in the firewall", p.Port, p.Proto, from, to)
	case isTimeout(err):
		f.Message = fmt.Sprintf("%s cannot reach %s on port %s (%s): packets get no answer", from, to, p, p.Purpose)
		f.Fix = fmt.Sprintf("open port %d/%s from %s to %s in the firewall, or fix the route between them", p.Port, p.Proto, from, to)
	default:
		f.Message = fmt.Sprintf("%s cannot reach %s on port %s (%s): %v", from, to, p, p.Purpose, err)
		f.Fix = fmt.Sprintf("open port %d/%s from %s to %s, or fix the network between them", p.Port, p.Proto, from, to)
	}
	return f
}

// NotChecked is the finding for a port no probe can test (VRRP).
func NotChecked(from, to string, p PortSpec, why string) Finding {
	return Finding{Check: CheckReach, From: from, To: to, Port: p.Port, Proto: p.Proto, Purpose: p.Purpose, Severity: Skip,
		Message: fmt.Sprintf("port %s (%s) between %s and %s is not checked: %s", p, p.Purpose, from, to, why)}
}

// PortFree is the finding of a port that is free on node.
func PortFree(node string, p PortSpec) Finding {
	return Finding{Check: CheckPort, To: node, Port: p.Port, Proto: p.Proto, Purpose: p.Purpose, Severity: OK,
		Message: fmt.Sprintf("port %s (%s) is free on %s", p, p.Purpose, node)}
}

// PortTaken is the finding of a port node cannot listen on; err is the bind error.
func PortTaken(node string, p PortSpec, err error) Finding {
	f := Finding{Check: CheckPort, To: node, Port: p.Port, Proto: p.Proto, Purpose: p.Purpose, Severity: Fail}
	if errors.Is(err, syscall.EADDRINUSE) {
		f.Message = fmt.Sprintf("port %s, needed on %s for %s, is already in use there", p, node, p.Purpose)
		f.Fix = fmt.Sprintf("stop the program that listens on port %d of %s (`ss -lntup sport = :%d` names it), or leave out the role that needs it", p.Port, node, p.Port)
		return f
	}
	f.Message = fmt.Sprintf("port %s, needed on %s for %s, cannot be opened: %v", p, node, p.Purpose, err)
	f.Fix = fmt.Sprintf("make port %d usable on %s, or leave out the role that needs it", p.Port, node)
	return f
}

// MTUOK is the finding of a large exchange that passed.
func MTUOK(from, to string, mtu int) Finding {
	return Finding{Check: CheckMTU, From: from, To: to, Figure: fmt.Sprintf("%d bytes", mtu), Severity: OK,
		Message: fmt.Sprintf("full-size packets (%d bytes) pass between %s and %s", mtu, from, to)}
}

// MTUDrop is the finding of a path that drops large packets: small packets
// pass, packets of the interface MTU (mtu) do not; largest is the largest
// packet seen to pass (0 when not measured).
func MTUDrop(from, to string, mtu, largest int) Finding {
	f := Finding{Check: CheckMTU, From: from, To: to, Severity: Fail}
	if largest > 0 {
		f.Figure = fmt.Sprintf("%d bytes", largest)
		f.Message = fmt.Sprintf("packets larger than about %d bytes are dropped between %s and %s, though the interface MTU is %d", largest, from, to, mtu)
		f.Fix = fmt.Sprintf("make the network between them carry %d-byte packets, or set an MTU of %d on every node's cluster interface", mtu, largest)
		return f
	}
	f.Figure = fmt.Sprintf("%d bytes", mtu)
	f.Message = fmt.Sprintf("large packets (the interface MTU is %d bytes) are dropped between %s and %s while small ones pass", mtu, from, to)
	f.Fix = "make the network between them carry packets of the interfaces' MTU, or lower the MTU of every node's cluster interface"
	return f
}

// AddressMissing is the finding of an address not on this machine.
func AddressMissing(node, ip string) Finding {
	return Finding{Check: CheckAddress, To: node, Figure: ip, Severity: Fail,
		Message: fmt.Sprintf("the address %s of %s is not on this machine", ip, node),
		Fix:     "use one of this machine's addresses (`ip -br addr` lists them) with --address"}
}

func isRefused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.EHOSTUNREACH) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || strings.Contains(err.Error(), "deadline exceeded")
}
