// Package driver is the seam between cloudd and the roles: the Driver
// interface every role implements (control, storage, compute, the floating
// endpoint), the Env a driver converges against, and the small types they
// share (steps, guards, ports, endpoints). It knows no role's internals.
package driver

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/supervisor"
)

// Driver is one role's runtime side, as cloudd sees it. The daemon knows this
// interface and nothing of what a role runs (MariaDB, Ceph, LXD, keepalived).
//
// The daemon's reconcile loop builds one Env per round from the cluster
// database and, for every driver in the order cmd/cloudd lists them, calls
// Converge when AppliesTo says the local node takes part, or Stop when it
// took part before and no longer does. Membership hooks, role and plan
// changes kick the loop; between kicks it runs again after the delay the
// drivers ask for (Result.Again), so a cluster at rest stays quiet.
type Driver interface {
	// Name is the driver's and its status layer's name ("control", "storage").
	Name() string
	// AppliesTo reports whether node n takes part in this role, given the
	// cluster state in env (its roles, the plan).
	AppliesTo(env *Env, n Node) bool
	// Schema returns the driver's schema updates, in order. Tables are named
	// after the role. Updates are appended after the daemon's own and after
	// the drivers listed before this one: never reorder or remove one.
	Schema() []SchemaUpdate
	// Endpoints are the driver's API endpoints under /1.0/.
	Endpoints() []Endpoint
	// Converge moves this node toward the state env describes. It must be
	// idempotent and return promptly when ctx ends. step reports progress.
	Converge(ctx context.Context, env *Env, step func(Step)) (Result, error)
	// Status returns the driver's layer of the cluster status. It only reads:
	// no row, file or credential is created on this path.
	Status(ctx context.Context, env *Env) api.Layer
	// Guard is asked before a change takes a node or a role away. A non-nil
	// error says what would be lost; the daemon refuses the change unless it
	// is forced and the error is not an Unforceable one.
	Guard(ctx context.Context, env *Env, ch Change) error
	// Ports are the ports node n needs for this role, for preflight checks and
	// the firewall documentation.
	Ports(env *Env, n Node) []Port
	// Stop stops everything the driver runs on this node (the node left the
	// role, is being removed, or cloudd stops). It must be idempotent.
	Stop(ctx context.Context) error
}

// SchemaUpdate is one step of the cluster database schema.
type SchemaUpdate func(ctx context.Context, tx *sql.Tx) error

// Result is what a round of Converge asks of the loop.
type Result struct {
	// Again asks for another round after this delay even without a kick;
	// zero means the driver is settled and waits for the next kick.
	Again time.Duration
}

// Step is one progress report of Converge.
type Step struct {
	// Name says what is being done ("start MariaDB mysql").
	Name string `json:"name"`
	// State is "running", "done", "waiting" or "failed".
	State string `json:"state"`
	// Detail is optional context ("waiting for node1 to form the cluster").
	Detail string `json:"detail,omitempty"`
}

// ChangeKind is what a guarded change does.
type ChangeKind string

// Guarded changes.
const (
	// RemoveNode takes a node out of the cluster.
	RemoveNode ChangeKind = "remove-node"
	// RemoveRole drops one role from a node.
	RemoveRole ChangeKind = "remove-role"
)

// Change is a change the daemon asks the drivers' guards about.
type Change struct {
	Kind ChangeKind
	Node string
	// Role is the role being dropped (RemoveRole only).
	Role roles.Role
	// Force is set when the user asked to go ahead anyway.
	Force bool
}

// GuardTimeout bounds one guard (Driver.Guard): a guard may move data
// before it answers (the storage role drains a node's OSDs, its
// timeouts.steps.ceph_drain at most 10 minutes), so the daemon gives the
// requests that ask the guards this long, not its usual 30 seconds.
const GuardTimeout = 12 * time.Minute

// Unforceable marks a guard's refusal that --force does not override.
type Unforceable struct{ Err error }

func (u Unforceable) Error() string { return u.Err.Error() }
func (u Unforceable) Unwrap() error { return u.Err }

// LeaveRoleFirst is a guard's answer to removing a node (RemoveNode) that
// may go once it has given up Role, because leaving the role moves what it
// holds to other nodes (a compute node's instances). The daemon then removes
// the role (asking RemoveRole's guards) and the node is removed when a later
// request finds every guard content; until then the removal is pending. A
// guard also answers it while the node is still leaving the role. Err says
// what moves, for a person.
type LeaveRoleFirst struct {
	Role roles.Role
	Err  error
}

func (l LeaveRoleFirst) Error() string { return l.Err.Error() }
func (l LeaveRoleFirst) Unwrap() error { return l.Err }

// Port is one port a role needs on a node.
type Port struct {
	Number int `json:"port"`
	// Proto is "tcp", "udp" or "vrrp" (IP protocol 112).
	Proto string `json:"proto"`
	// Purpose says what it is for ("Galera replication of mysql").
	Purpose string `json:"purpose"`
	// Peers is true when other members connect to it (not only clients).
	Peers bool `json:"peers"`
}

// Node is one cluster member as the drivers see it.
type Node struct {
	Name string
	// Address is cloudd's cluster address (host:port); IP is its host part.
	Address  string
	IP       string
	Roles    []roles.Role
	JoinedAt time.Time
	// Disks are the disks the node's plan gives to storage.
	Disks []api.DiskChoice
}

// Has reports whether the node has role r.
func (n Node) Has(r roles.Role) bool { return roles.Has(n.Roles, r) }

// Env is the cluster as one reconcile round (or one status request) sees it:
// read once from the cluster database, plus what the daemon lends a driver.
type Env struct {
	// Local is this node; Nodes are every member, Local among them.
	Local Node
	Nodes []Node
	// Manifest is the cluster's effective manifest; Plan the stored plan.
	Manifest *manifests.Manifest
	Plan     api.Plan
	// InstalledGiB is this machine's installed RAM (sizes buffers).
	InstalledGiB int
	// Dir is the driver's own directory below the state directory.
	Dir string
	// Sup supervises the driver's child processes.
	Sup *supervisor.Supervisor
	Log *slog.Logger
	// DB is the cluster database; Peers reaches other members' cloudd.
	DB    DB
	Peers Peers
	Now   func() time.Time
	// Frontends are what the drivers implementing Frontender offer, for the
	// floating endpoint.
	Frontends []Frontend
	// IsMember reads the membership again, now: Nodes is the snapshot taken
	// when the round began, and a node may have joined since. A driver asks
	// it before treating a node missing from Nodes as departed (and
	// removing what it left). Nil: Nodes is all there is.
	IsMember func(ctx context.Context, name string) (bool, error)
	// HasRoleNow reads a member's roles again, now: a driver checks it
	// before removing what a node that left its role kept (Nodes may be a
	// moment old, and the role given back since). Nil: Nodes is all there is.
	HasRoleNow func(ctx context.Context, name string, r roles.Role) (bool, error)
	// TLS is this member's identity on the cluster API (PEM files), for
	// programs a driver runs that call members' cloudd themselves (the
	// floating endpoint's HAProxy checks Backend.Check with it).
	TLS ClusterTLS
}

// Departed reports whether name has left the cluster: missing from Nodes and,
// read again now, not a member either. An error means "do not know yet".
func (e *Env) Departed(ctx context.Context, name string) (bool, error) {
	if _, ok := e.Node(name); ok {
		return false, nil
	}
	if e.IsMember == nil {
		return true, nil
	}
	member, err := e.IsMember(ctx, name)
	if err != nil {
		return false, fmt.Errorf("is %s still a member: %w", name, err)
	}
	return !member, nil
}

// LeftRole reports whether name is a member that no longer has role r:
// without it in Nodes and, read again now, still without it. An error
// means "do not know yet".
func (e *Env) LeftRole(ctx context.Context, name string, r roles.Role) (bool, error) {
	n, ok := e.Node(name)
	if !ok || n.Has(r) {
		return false, nil
	}
	if e.HasRoleNow == nil {
		return true, nil
	}
	has, err := e.HasRoleNow(ctx, name, r)
	if err != nil {
		return false, fmt.Errorf("does %s have the %s role: %w", name, r, err)
	}
	return !has, nil
}

// ClusterTLS are the PEM files of this member's cluster API identity.
type ClusterTLS struct {
	// CertFile and KeyFile are this member's own certificate and key: other
	// members trust a client presenting them (mutual TLS).
	CertFile string
	KeyFile  string
	// CAFile is the cluster certificate every member's API serves: a client
	// verifies the server against it.
	CAFile string
}

// FloatingAddress returns the plan's floating address when the floating
// endpoint runs: the plan has one (api.ParseFloatingAddress accepts it)
// and a control node exists to hold it (one holds it alone, without high
// availability). Otherwise the address is invalid and why says, in one
// clause, why clients use the members' own addresses. Whether a node holds
// the address now is not known here.
func (e *Env) FloatingAddress() (addr netip.Addr, why string) {
	if e.Plan.FloatingAddress == "" {
		return netip.Addr{}, "the plan has no floating address"
	}
	a, _, err := api.ParseFloatingAddress(e.Plan.FloatingAddress)
	if err != nil {
		return netip.Addr{}, err.Error()
	}
	if len(e.WithRole(roles.Control)) == 0 {
		return netip.Addr{}, "no control node holds the floating address"
	}
	return a, ""
}

// Frontend returns the offered frontend called name.
func (e *Env) Frontend(name string) (Frontend, bool) {
	for _, f := range e.Frontends {
		if f.Name == name {
			return f, true
		}
	}
	return Frontend{}, false
}

// Node returns the member called name.
func (e *Env) Node(name string) (Node, bool) {
	for _, n := range e.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// WithRole returns the members that have role r, oldest first.
func (e *Env) WithRole(r roles.Role) []Node {
	var out []Node
	for _, n := range e.Nodes {
		if n.Has(r) {
			out = append(out, n)
		}
	}
	return out
}

// DB is the cluster database.
type DB interface {
	Transaction(ctx context.Context, f func(ctx context.Context, tx *sql.Tx) error) error
}

// Peers calls other members' cloudd over the cluster's mutual TLS.
type Peers interface {
	// Get fetches https://<member>/1.0/<path> from the member called node and
	// decodes its metadata into out.
	Get(ctx context.Context, node, path string, out any) error
	// Post sends in as JSON to https://<member>/1.0/<path> on the member
	// called node and decodes its metadata into out (when not nil). It
	// waits as long as ctx allows (a forwarded guard may drain OSDs for
	// minutes). A refusal by the member's handler is an HTTPError with
	// its status and sentence.
	Post(ctx context.Context, node, path string, in, out any) error
}

// Endpoint is one API endpoint of a driver, served under /1.0/<Path>.
type Endpoint struct {
	// Path may hold {name}-style variables.
	Path    string
	Method  string
	Handler func(ctx context.Context, env *Env, req Request) (any, error)
	// LocalOnly endpoints answer only on the root-only local control socket.
	LocalOnly bool
	// Light handlers read nothing of the cluster: their Env holds only Dir,
	// Log, Now and Local's name, and serving them costs no database read
	// (members poll them).
	Light bool
	// Timeout bounds the handler; zero is the daemon's usual 30 seconds.
	Timeout time.Duration
	// Changes says the handler changes what rounds converge to (a disk
	// recorded for a node): once it succeeded, the daemon asks every
	// member's loop to run, instead of leaving the change to each node's
	// next round (up to a settled driver's delay later).
	Changes bool
}

// Request is what a driver's endpoint gets of an HTTP request.
type Request struct {
	Vars  map[string]string
	Query url.Values
	// Body is limited in size by the daemon.
	Body io.Reader
	// Local is true on the local control socket.
	Local bool
	// Caller is the member whose cluster certificate the request came with
	// (empty on the local socket, or when the certificate is no member's).
	Caller string
}

// HTTPError is an endpoint error with its HTTP status.
type HTTPError struct {
	Code int
	Err  error
}

func (e HTTPError) Error() string { return e.Err.Error() }
func (e HTTPError) Unwrap() error { return e.Err }

// Errorf makes an HTTPError.
func Errorf(code int, format string, args ...any) error {
	return HTTPError{Code: code, Err: fmt.Errorf(format, args...)}
}

// StatusCode is err's HTTP status (500 when it carries none).
func StatusCode(err error) int {
	var he HTTPError
	if errors.As(err, &he) {
		return he.Code
	}
	return http.StatusInternalServerError
}

// Frontender is implemented by drivers whose services the floating endpoint
// puts behind the cluster's floating address (the control databases, the
// cluster API, LXD's API). The daemon collects them into Env.Frontends.
type Frontender interface {
	Frontends(env *Env) []Frontend
}

// Frontend is one service the floating endpoint forwards.
type Frontend struct {
	// Name is unique in the cluster ("mysql", "cloudd", "lxd").
	Name string `json:"name"`
	// Port is where clients connect on the floating address.
	Port int `json:"port"`
	// Backends are the members serving it, in preference order.
	Backends []Backend `json:"backends"`
	// OneActive sends every connection to the first healthy backend only
	// (a Galera writer); otherwise connections are balanced.
	OneActive bool `json:"one_active"`
}

// Backend is one member serving a Frontend.
type Backend struct {
	Node string `json:"node"`
	// Addr is ip:port on the member.
	Addr string `json:"addr"`
	// Check, when set, decides whether the backend serves instead of a
	// connect to Addr: the backend serves while the member's cloudd answers
	// 200 to a GET of Check.Path (mutual TLS with Env.TLS). The driver
	// offering the backend serves that path.
	Check *HTTPCheck `json:"check,omitempty"`
}

// HTTPCheck is a backend's health check on a member's cluster API.
type HTTPCheck struct {
	// Addr is the member's cloudd address (ip:port).
	Addr string `json:"addr"`
	// Path is absolute ("/1.0/control/instances/mysql/writable").
	Path string `json:"path"`
}

// MaxBody is the largest request body a driver's endpoint accepts.
const MaxBody = 1 << 20

// DecodeBody decodes a JSON request body strictly (unknown fields refused).
// An empty body leaves v as it is.
func DecodeBody(req Request, v any) error {
	if req.Body == nil {
		return nil
	}
	dec := json.NewDecoder(io.LimitReader(req.Body, MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return Errorf(http.StatusBadRequest, "invalid request body: %v", err)
	}
	return nil
}

// DecodeChange reads a Change a member sends to a guard's endpoint:
// bounded, and lenient with fields it does not know (the member may run a
// newer release).
func DecodeChange(req Request) (Change, error) {
	var ch Change
	if req.Body == nil {
		return ch, Errorf(http.StatusBadRequest, "the guarded change is missing")
	}
	if err := json.NewDecoder(io.LimitReader(req.Body, MaxBody)).Decode(&ch); err != nil {
		return ch, Errorf(http.StatusBadRequest, "the guarded change is not valid JSON: %v", err)
	}
	return ch, nil
}

// Leaver is implemented by drivers that remove what a node keeps of a role
// once it no longer has the role (a key only the role's nodes may hold).
// The loop calls Left in every round in which the role does not apply to
// the local node and the node's own record was read (after Stop, when the
// driver ran): it must be idempotent and cheap.
type Leaver interface {
	Left(ctx context.Context, env *Env) error
}

// PlanValidator is implemented by drivers that check their part of the plan
// when a cluster is bootstrapped (the control role's MySQL topology). The
// daemon refuses a bootstrap whose plan one of them rejects.
type PlanValidator interface {
	ValidatePlan(p api.Plan, m *manifests.Manifest) error
}

// PlanChangeValidator is implemented by drivers whose part of the plan was
// fixed at bootstrap (the control role's MySQL topology): a later plan change
// that alters it is refused with the driver's sentence.
type PlanChangeValidator interface {
	ValidatePlanChange(old, next api.Plan) error
}
