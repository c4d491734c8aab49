// Package endpoint is the floating endpoint role: one address in front of the
// control plane, held by one healthy control node at a time. On every control
// node cloudd runs keepalived (VRRP with unicast peers; a health check makes a
// node whose cloudd or control databases are unhealthy give the address up)
// and HAProxy bound to the floating address (one frontend per service the
// other drivers offer; a Galera writer gets one backend at a time). The
// driver decides what this node runs (Decide), renders the configuration,
// converges the processes, judges local health and reports the layer.
package endpoint

import (
	"fmt"

	"github.com/cloudctl/cloudctl/api"
	"net"
	"net/netip"
	"sort"
	"strconv"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// VRRP priorities: the oldest control node gets MaxPriority, each younger
// one Step less, never below MinPriority (keepalived breaks ties by address).
const (
	MaxPriority  = 200
	PriorityStep = 10
	MinPriority  = 10
)

// Candidate is a control node that may hold the floating address.
type Candidate struct {
	Name     string `json:"name"`
	IP       string `json:"ip"`
	Priority int    `json:"priority"`
}

// Desired is what this node should run for the floating endpoint.
type Desired struct {
	// Active is false when nothing runs here; Reason says why.
	Active bool
	Reason string
	// VIP is the floating address with its prefix length.
	VIP netip.Prefix
	// Interface carries this node's own address; the VIP goes on it.
	Interface string
	RouterID  int
	// Self is this node as a candidate; Peers are the other candidates' IPs.
	Self       Candidate
	Peers      []string
	Candidates []Candidate
	Frontends  []driver.Frontend
	// Skipped says which offered frontends were left out, and why.
	Skipped []string
	// TLSAddrs are backends HAProxy checks with a TLS handshake: the
	// members' cloudd API and the manifest's cloudd and LXD ports (a bare
	// connect makes a TLS server log a handshake error every second).
	TLSAddrs map[string]bool
}

// InterfaceLookup finds the interface holding ip and that address's network.
type InterfaceLookup func(ip netip.Addr) (name string, network netip.Prefix, err error)

// ParseAddress reads the plan's floating address (api.ParseFloatingAddress:
// IPv4, bare or with a prefix length; bits is -1 without one).
func ParseAddress(s string) (addr netip.Addr, bits int, err error) {
	return api.ParseFloatingAddress(s)
}

// Candidates are the control nodes, oldest first, with their priorities.
func Candidates(env *driver.Env) []Candidate {
	var out []Candidate
	for i, n := range env.WithRole(roles.Control) {
		out = append(out, Candidate{Name: n.Name, IP: n.IP, Priority: max(MaxPriority-PriorityStep*i, MinPriority)})
	}
	return out
}

// Applies reports whether node n takes part in the floating endpoint: it is
// a control node and the plan has a floating address.
func Applies(env *driver.Env, n driver.Node) bool {
	if env.Plan.FloatingAddress == "" || !n.Has(roles.Control) {
		return false
	}
	_, _, err := ParseAddress(env.Plan.FloatingAddress)
	return err == nil
}

// Runs reports whether node n runs keepalived and HAProxy: it takes part.
// A single control node holds the address too (not highly available, but
// clients set up with the address keep it as the cluster grows, and after
// `cluster recover` left one node).
func Runs(env *driver.Env, n driver.Node) bool {
	return Applies(env, n)
}

// Decide works out what this node runs. An error means the plan cannot be
// applied here (a bad address, or no interface carries this node's address).
func Decide(env *driver.Env, lookup InterfaceLookup) (Desired, error) {
	des := Desired{Candidates: Candidates(env)}
	switch {
	case env.Plan.FloatingAddress == "":
		des.Reason = "the plan has no floating address"
		return des, nil
	case !env.Local.Has(roles.Control):
		des.Reason = "this node has no control role"
		return des, nil
	}
	addr, bits, err := ParseAddress(env.Plan.FloatingAddress)
	if err != nil {
		return des, err
	}
	for _, c := range des.Candidates {
		if c.IP == addr.String() {
			return des, fmt.Errorf("floating address %s is the own address of %s; choose a free address on the control nodes' network", addr, c.Name)
		}
		if c.Name == env.Local.Name {
			des.Self = c
		} else {
			des.Peers = append(des.Peers, c.IP)
		}
	}
	sort.Strings(des.Peers)
	self, err := netip.ParseAddr(env.Local.IP)
	if err != nil {
		return des, fmt.Errorf("this node's address %q is not an IP address: %w", env.Local.IP, err)
	}
	iface, network, err := lookup(self)
	if err != nil {
		return des, fmt.Errorf("find the interface of %s: %w", self, err)
	}
	if bits < 0 {
		bits = 32
		if network.Contains(addr) {
			bits = network.Bits()
		}
	}
	des.VIP = netip.PrefixFrom(addr, bits)
	des.Interface = iface
	des.RouterID = 51
	if env.Manifest != nil && env.Manifest.VRRP.RouterID > 0 {
		des.RouterID = env.Manifest.VRRP.RouterID
	}
	des.Frontends, des.Skipped = usableFrontends(sortedFrontends(env.Frontends))
	des.TLSAddrs = tlsAddrs(env, des.Frontends)
	des.Active = true
	return des, nil
}

func sortedFrontends(fs []driver.Frontend) []driver.Frontend {
	out := append([]driver.Frontend(nil), fs...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func tlsAddrs(env *driver.Env, fs []driver.Frontend) map[string]bool {
	out := map[string]bool{}
	for _, n := range env.Nodes {
		out[n.Address] = true
	}
	tlsPorts := map[string]bool{}
	if env.Manifest != nil {
		for _, p := range []int{env.Manifest.Ports.Cloudd, env.Manifest.Ports.LXD} {
			if p > 0 {
				tlsPorts[strconv.Itoa(p)] = true
			}
		}
	}
	for _, f := range fs {
		for _, b := range f.Backends {
			if _, port, err := net.SplitHostPort(b.Addr); err == nil && tlsPorts[port] {
				out[b.Addr] = true
			}
		}
	}
	return out
}

// LocalBackends are what the health check probes on node: the local
// backends of the OneActive frontends (the control databases, Galera
// writers). Balanced frontends (cloudd's and LXD's APIs) are not judged
// here: HAProxy spreads their connections over the members that answer,
// so one failed locally is no reason to move the address.
func LocalBackends(fs []driver.Frontend, node string) []Probe {
	var out []Probe
	for _, f := range fs {
		if !f.OneActive {
			continue
		}
		for _, b := range f.Backends {
			if b.Node == node {
				out = append(out, Probe{Frontend: f.Name, Addr: b.Addr})
			}
		}
	}
	return out
}
