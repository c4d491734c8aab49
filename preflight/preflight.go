// Package preflight holds the checks made between nodes before anything
// changes, and again at any time with `cloudctl cluster check`: a member
// reachable on a port, a port free on this machine, the path MTU, the clock
// offset, unique names and addresses, compatible versions. Each check gives a
// Finding whose message names the node, the port or the figure, and says
// what to do. It also has the small network probes the checks use (a bind
// test, a TCP dial, the echo listener a joiner opens so members can dial
// back to it, a large exchange to find a path that drops large packets) and
// the request and answer types of cloudd's /1.0/preflight endpoints. It
// knows no role: the ports come from the role drivers, through cloudd.
package preflight

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/api"
)

// Severity is how a finding weighs.
type Severity string

// Severities, from best to worst.
const (
	OK   Severity = "ok"
	Skip Severity = "skip" // not checked (why is in the message)
	Warn Severity = "warn"
	Fail Severity = "fail"
)

// Checks a Finding can be about.
const (
	CheckReach   = "reach"   // a node reaches another on a port
	CheckPort    = "port"    // a port is free on this machine
	CheckMTU     = "mtu"     // large packets pass between two nodes
	CheckClock   = "clock"   // clock offset between two nodes
	CheckName    = "name"    // the node name is unique
	CheckAddress = "address" // the address is unique and present
	CheckVersion = "version" // cloudctl versions are compatible
)

// Thresholds of the clock check. Ceph monitors warn at 0.05 s of skew
// (mon_clock_drift_allowed); certificates and token expiry go wrong with
// seconds of skew, so a join is refused from 5 s on.
const (
	ClockWarn   = 50 * time.Millisecond
	ClockRefuse = 5 * time.Second
)

// Finding is the result of one check.
type Finding struct {
	Check string `json:"check"`
	// From is the node that made the check, To the node it looked at.
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
	// Port and Proto are set for checks about a port.
	Port    int    `json:"port,omitempty"`
	Proto   string `json:"proto,omitempty"`
	Purpose string `json:"purpose,omitempty"`
	// Figure is the measured value ("0.120 s", "1400 bytes").
	Figure   string   `json:"figure,omitempty"`
	Severity Severity `json:"severity"`
	// Message says what is (or is wrong), Fix what to do: one sentence each.
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// Text is the finding as one or two sentences for a person.
func (f Finding) Text() string {
	if f.Fix == "" {
		return f.Message
	}
	return f.Message + "; " + f.Fix
}

// Findings is a list of findings.
type Findings []Finding

// Worst is the worst severity among fs: Fail, Warn, else OK (a check that
// could not be made is not a problem).
func (fs Findings) Worst() Severity {
	w := OK
	for _, f := range fs {
		if rank(f.Severity) > rank(w) {
			w = f.Severity
		}
	}
	return w
}

func rank(s Severity) int {
	switch s {
	case Fail:
		return 3
	case Warn:
		return 2
	}
	return 0
}

// Of returns the findings of severity s.
func (fs Findings) Of(s Severity) Findings {
	var out Findings
	for _, f := range fs {
		if f.Severity == s {
			out = append(out, f)
		}
	}
	return out
}

// Err is the failures as one error (one finding per line), or nil.
func (fs Findings) Err(what string) error {
	fails := fs.Of(Fail)
	if len(fails) == 0 {
		return nil
	}
	lines := make([]string, 0, len(fails)+1)
	lines = append(lines, what)
	for _, f := range fails {
		lines = append(lines, "  - "+f.Text())
	}
	return &Refused{Findings: fails, text: strings.Join(lines, "\n")}
}

// Refused is the error of a check that failed: the failures, as sentences.
type Refused struct {
	Findings Findings
	text     string
}

func (r *Refused) Error() string { return r.text }

// PortSpec is one port a node needs, as the role drivers declare it.
type PortSpec struct {
	Port  int    `json:"port"`
	Proto string `json:"proto"`
	// Purpose says what it is for; Role is the driver that declared it.
	Purpose string `json:"purpose"`
	Role    string `json:"role"`
	// Peers is true when other members connect to it.
	Peers bool `json:"peers"`
}

func (p PortSpec) String() string { return fmt.Sprintf("%d/%s", p.Port, p.Proto) }

// NodeSpec is a node as a preflight request describes it (a joiner, or the
// node being bootstrapped).
type NodeSpec struct {
	Name string `json:"name"`
	// Address is cloudd's cluster address, host:port.
	Address string   `json:"address"`
	Roles   []string `json:"roles"`
}

// JoinRequest is the body of the untrusted POST /1.0/preflight (the plan)
// and POST /1.0/preflight/probe (the checks). Both need the join secret.
type JoinRequest struct {
	// Token is the name the join token was issued for; Secret its secret.
	Token  string   `json:"token"`
	Secret string   `json:"secret"`
	Node   NodeSpec `json:"node"`
	// Version is the joiner's cloudctl version.
	Version string `json:"version"`
	// Nonce is what the joiner's listeners expect from a member dialing back
	// (probe only).
	Nonce string `json:"nonce,omitempty"`
	// Pad is a large payload that makes the request carry full-size packets
	// (plan only; the answer carries as much back).
	Pad string `json:"pad,omitempty"`
}

// MaxUntrustedBody is the largest body the untrusted endpoints read.
const MaxUntrustedBody = 256 << 10

// PadSize is the payload each way of an exchange that checks the path MTU:
// large enough that TCP sends full-size segments.
const PadSize = 64 << 10

// JoinPlan is the answer of POST /1.0/preflight: what the joiner must check.
type JoinPlan struct {
	Cluster string `json:"cluster"`
	// Node is the member that answered, Time its clock when it answered.
	Node string    `json:"node"`
	Time time.Time `json:"time"`
	// Version is the answering member's cloudctl version.
	Version string `json:"version"`
	// Ports are the ports the joiner's roles need on it.
	Ports []PortSpec `json:"ports"`
	// Members are the cluster's members and what is checked with each.
	Members []MemberPlan `json:"members"`
	// Findings are the checks the cluster made itself (name and address unique).
	Findings Findings `json:"findings"`
	// Pad echoes the request's payload (the path MTU, member to joiner).
	Pad string `json:"pad,omitempty"`
}

// MemberPlan is one member of a JoinPlan.
type MemberPlan struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	// Dial are the member's ports the joiner will use (it dials them).
	Dial []PortSpec `json:"dial"`
	// DialBack are the joiner's ports the member will use (it dials them).
	DialBack []PortSpec `json:"dial_back"`
}

// ProbeResult is the answer of POST /1.0/preflight/probe (Findings) and of
// the members' POST /1.0/preflight/echo (Version, Time, Pad).
type ProbeResult struct {
	Node    string    `json:"node"`
	Version string    `json:"version"`
	Time    time.Time `json:"time"`
	// Findings are the member's own checks of the joiner (dial back).
	Findings Findings `json:"findings,omitempty"`
	Pad      string   `json:"pad,omitempty"`
}

// EchoRequest is the body of the members' POST /1.0/preflight/echo.
type EchoRequest struct {
	Pad string `json:"pad,omitempty"`
}

// PortsRequest is the body of the local POST /1.0/preflight/ports: the ports
// a node with these roles needs, under this MySQL topology (bootstrap).
type PortsRequest struct {
	Node            NodeSpec `json:"node"`
	MySQLTopology   string   `json:"mysql_topology,omitempty"`
	FloatingAddress string   `json:"floating_address,omitempty"`
	// Manifest is the bootstrap's manifest overlay (YAML), if any.
	Manifest string `json:"manifest,omitempty"`
}

// MemberReport is one member's view in a cluster check.
type MemberReport struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	Version string `json:"version"`
	// Error is set when the member could not be asked.
	Error string `json:"error,omitempty"`
}

// Report is the answer of POST /1.0/preflight/cluster: every member's checks
// of every other.
type Report struct {
	Members  []MemberReport `json:"members"`
	Findings Findings       `json:"findings"`
	Worst    Severity       `json:"worst"`
}

// ClusterPort is the port of cloudd's cluster API at addr (host:port).
func ClusterPort(addr string) PortSpec {
	port := api.DefaultPort
	if _, p, err := net.SplitHostPort(addr); err == nil {
		if n, err := strconv.Atoi(p); err == nil {
			port = n
		}
	}
	return PortSpec{Port: port, Proto: "tcp", Purpose: "cloudd cluster API", Role: "cloudd", Peers: true}
}
