package control

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
	controlplan "github.com/cloudctl/cloudctl/roles/control/plan"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// Name is the control role's driver and layer name.
const Name = api.LayerControl

// How soon the loop comes back: quickly while instances are on their way,
// slowly once every instance is settled (mariadbd is then watched by the
// supervisor, and Galera heals itself).
const (
	againBusy    = 2 * time.Second
	againSettled = 10 * time.Second
)

// Driver is the control role's driver: MariaDB instances on the control
// nodes, Galera from three of them.
type Driver struct {
	// mu serialises Converge and Stop.
	mu     sync.Mutex
	engine *Engine

	lastMu sync.Mutex
	last   localControl
	// keyHolder and keyID: this node holds the seal key with that id (set
	// by Converge, cleared by Stop).
	keyHolder, keyID string

	// writers answer the floating endpoint's writable checks.
	writers writers
	// dial checks the floating endpoint answers (nil: a TCP connect).
	dial Dialer
}

// New returns the control role's driver.
func New() *Driver { return &Driver{} }

// Name implements driver.Driver.
func (d *Driver) Name() string { return Name }

// AppliesTo implements driver.Driver: every control node.
func (d *Driver) AppliesTo(env *driver.Env, n driver.Node) bool { return n.Has(roles.Control) }

// Schema implements driver.Driver.
func (d *Driver) Schema() []driver.SchemaUpdate { return schema() }

// ValidatePlan checks the control part of a plan at bootstrap.
func (d *Driver) ValidatePlan(p api.Plan, m *manifests.Manifest) error {
	if err := controlplan.Validate(p); err != nil {
		return err
	}
	_, err := Layout(p.MySQLTopology, m, 0)
	return err
}

// ValidatePlanChange implements driver.PlanChangeValidator: the topology
// was fixed at bootstrap.
func (d *Driver) ValidatePlanChange(old, next api.Plan) error {
	if old.MySQLTopology != "" && next.MySQLTopology != old.MySQLTopology {
		return fmt.Errorf("the MySQL topology was fixed at bootstrap (%s) and cannot be changed to %q afterwards", old.MySQLTopology, next.MySQLTopology)
	}
	return nil
}

// localControl is what GET /1.0/control/local answers: this member's live
// view of its own instances, from its last convergence.
type localControl struct {
	Node      string           `json:"node"`
	At        time.Time        `json:"at"`
	Instances []InstanceStatus `json:"instances"`
	// SealKeyHolder and SealKeyID say that this node holds the seal key
	// with that id (set by its last convergence, on any control node,
	// hosting or not): a node that left the role deletes its copy once a
	// control node says so.
	SealKeyHolder string `json:"seal_key_holder,omitempty"`
	SealKeyID     string `json:"seal_key_id,omitempty"`
}

// Converge implements driver.Driver.
func (d *Driver) Converge(ctx context.Context, env *driver.Env, step func(driver.Step)) (driver.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := readView(ctx, env)
	if err != nil {
		return driver.Result{Again: againBusy}, fmt.Errorf("read the control state: %w", err)
	}
	k, err := d.secrets(ctx, env, &v)
	if err != nil {
		step(driver.Step{Name: "control secrets", State: "waiting", Detail: err.Error()})
		return driver.Result{Again: againBusy}, err
	}
	d.lastMu.Lock()
	d.keyHolder, d.keyID = env.Local.Name, controlSeal().ID(k)
	d.lastMu.Unlock()
	if err := ensureState(ctx, env, &v, k); err != nil {
		return driver.Result{Again: againBusy}, fmt.Errorf("record the control state: %w", err)
	}
	v.Live = map[string]map[string]string{}
	for n, lc := range d.peerControl(ctx, env, v) {
		m := map[string]string{}
		for _, in := range lc.Instances {
			m[in.Instance] = in.WsrepStatus
		}
		v.Live[n] = m
	}
	des, err := Decide(v, env.Local.Name)
	if err != nil {
		return driver.Result{Again: againBusy}, err
	}
	des.Recovery = peerReports(des.Recovery, des.Peers)
	d.writers.set(hostedInstances(env.Dir, des))
	if d.engine == nil {
		if !des.Host {
			step(driver.Step{Name: "MariaDB", State: "waiting", Detail: "this node hosts no database copy (standby control node)"})
			return driver.Result{Again: againSettled}, nil
		}
		d.engine = NewEngine(env.Dir, env.Local.Name, env.Local.IP, env.Manifest, env.Sup, env.Log)
	}
	d.engine.Manifest = env.Manifest
	sts := d.engine.Converge(ctx, des)
	d.lastMu.Lock()
	d.last = localControl{Node: env.Local.Name, At: env.Now().UTC(), Instances: sts}
	d.lastMu.Unlock()
	settled := true
	for _, st := range sts {
		ok := st.State == "running" && st.Provisioned && (len(des.Peers) == 0 || st.WsrepStatus == "Primary")
		state := "done"
		if !ok {
			settled, state = false, "running"
			if st.State == "failed" {
				state = "failed"
			}
		}
		step(driver.Step{Name: "MariaDB " + st.Instance, State: state, Detail: strings.TrimSpace(st.State + " " + st.WsrepStatus + " " + st.Comment)})
	}
	if err := record(ctx, env, v, des, sts); err != nil {
		return driver.Result{Again: againBusy}, err
	}
	if !settled || !des.Host {
		return driver.Result{Again: againBusy}, nil
	}
	return driver.Result{Again: againSettled}, nil
}

// record writes what changed: a Galera cluster that formed, the members of
// a Primary component, full-outage recovery reports. A settled node writes
// nothing.
func record(ctx context.Context, env *driver.Env, v ClusterView, des Desired, sts []InstanceStatus) error {
	members := ""
	if len(des.Peers) > 0 {
		names := make([]string, len(des.Peers))
		for i, p := range des.Peers {
			names[i] = p.Name
		}
		members = strings.Join(names, ",")
	}
	recorded := strings.Join(v.Members, ",")
	type write struct {
		q    string
		args []any
		what string
	}
	var ws []write
	now := env.Now().UTC()
	for _, st := range sts {
		if st.Formed {
			env.Log.Info("control: Galera cluster formed", "instance", st.Instance, "members", members)
			ws = append(ws, write{`INSERT INTO control_instances (name, formed, members) VALUES (?, 1, ?)
ON CONFLICT(name) DO UPDATE SET formed = 1, members = excluded.members`, []any{st.Instance, members}, "record formation"})
		}
		if st.WsrepStatus == "Primary" {
			if len(v.Recovery[st.Instance]) > 0 {
				ws = append(ws, write{`DELETE FROM control_recovery WHERE instance = ?`, []any{st.Instance}, "clear recovery reports"})
			}
			if members != "" && members != recorded && v.Formed[st.Instance] {
				ws = append(ws, write{`UPDATE control_instances SET members = ? WHERE name = ? AND members != ?`, []any{members, st.Instance, members}, "record members"})
			}
		}
		if st.Report != nil && !reported(v.Recovery[st.Instance], *st.Report) {
			ws = append(ws, write{`INSERT INTO control_recovery (instance, node, uuid, seqno, reported_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT(instance, node) DO UPDATE SET uuid = excluded.uuid, seqno = excluded.seqno, reported_at = excluded.reported_at`,
				[]any{st.Instance, env.Local.Name, st.Report.UUID, st.Report.Seqno, now}, "record recovery report"})
		}
	}
	if len(ws) == 0 {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return env.DB.Transaction(wctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, w := range ws {
			if _, err := tx.ExecContext(ctx, w.q, w.args...); err != nil {
				return fmt.Errorf("%s: %w", w.what, err)
			}
		}
		return nil
	})
}

func reported(rs []Position, p Position) bool {
	for _, r := range rs {
		if r.Node == p.Node && r.UUID == p.UUID && r.Seqno == p.Seqno {
			return true
		}
	}
	return false
}

// peerControl asks every other control node's cloudd, now, which of its
// instances are in a Primary component. Stale database rows of a node that
// just died must not make this node wait for a Primary that is gone.
func (d *Driver) peerControl(ctx context.Context, env *driver.Env, v ClusterView) map[string]localControl {
	out := map[string]localControl{}
	if env.Peers == nil {
		return out
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range v.Nodes {
		if !n.Control || n.Name == env.Local.Name {
			continue
		}
		wg.Add(1)
		go func(name string) {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			var lc localControl
			if err := env.Peers.Get(pctx, name, "control/local", &lc); err != nil || lc.Node != name {
				return
			}
			mu.Lock()
			out[name] = lc
			mu.Unlock()
		}(n.Name)
	}
	wg.Wait()
	return out
}

// live is every control member's live answer, this node's own included.
func (d *Driver) live(ctx context.Context, env *driver.Env, v ClusterView) map[string]localControl {
	live := d.peerControl(ctx, env, v)
	d.lastMu.Lock()
	if d.last.Node == env.Local.Name {
		live[env.Local.Name] = d.last
	}
	d.lastMu.Unlock()
	return live
}

// Stop implements driver.Driver.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.engine != nil {
		d.engine.StopAll()
	}
	d.writers.close()
	d.lastMu.Lock()
	d.last = localControl{}
	d.keyHolder, d.keyID = "", ""
	d.lastMu.Unlock()
	return nil
}

// Guard implements driver.Driver: the node holding the only copy of the
// control databases keeps its control role, and leaves the cluster only by
// force.
func (d *Driver) Guard(ctx context.Context, env *driver.Env, ch driver.Change) error {
	if ch.Kind == driver.RemoveRole && ch.Role != roles.Control {
		return nil
	}
	n, ok := env.Node(ch.Node)
	if !ok || !n.Has(roles.Control) {
		return nil
	}
	v, err := readView(ctx, env)
	if err != nil {
		return err
	}
	if DBHost(v) != ch.Node || anyFormed(v) {
		return nil
	}
	if ch.Kind == driver.RemoveRole {
		return driver.Unforceable{Err: fmt.Errorf("%s holds the only copy of the control-plane databases: give two more nodes the control role first, so the databases replicate, then remove it", ch.Node)}
	}
	return fmt.Errorf("%s holds the only copy of the control-plane databases: give two more nodes the control role first so they replicate, or use --force to remove it and lose them", ch.Node)
}

// Ports implements driver.Driver.
func (d *Driver) Ports(env *driver.Env, n driver.Node) []driver.Port {
	if !n.Has(roles.Control) || env.Plan.MySQLTopology == "" || env.Manifest == nil {
		return nil
	}
	insts, err := Layout(env.Plan.MySQLTopology, env.Manifest, 0)
	if err != nil {
		return nil
	}
	var out []driver.Port
	for _, in := range insts {
		out = append(out,
			driver.Port{Number: in.Port, Proto: "tcp", Purpose: "MariaDB " + in.Name + " clients"},
			driver.Port{Number: in.GaleraPort, Proto: "tcp", Purpose: "Galera replication of " + in.Name, Peers: true},
			driver.Port{Number: in.ISTPort, Proto: "tcp", Purpose: "Galera incremental state transfer of " + in.Name, Peers: true},
			driver.Port{Number: in.SSTPort, Proto: "tcp", Purpose: "Galera snapshot state transfer of " + in.Name, Peers: true})
	}
	return out
}

// Frontends implements driver.Frontender: one writer at a time per instance,
// the Galera members in order. Each backend is checked on its member's
// cluster API (WritablePath): it serves only while its copy is Synced.
func (d *Driver) Frontends(env *driver.Env) []driver.Frontend {
	if env.Plan.MySQLTopology == "" || env.Manifest == nil {
		return nil
	}
	insts, err := Layout(env.Plan.MySQLTopology, env.Manifest, 0)
	if err != nil {
		return nil
	}
	v := ClusterView{Nodes: nil, Formed: map[string]bool{}}
	for _, n := range env.Nodes {
		v.Nodes = append(v.Nodes, NodeView{Name: n.Name, IP: n.IP, Control: n.Has(roles.Control), JoinedAt: n.JoinedAt})
	}
	peers := GaleraPeers(v)
	if len(peers) > 1 && len(peers) < GaleraMembers {
		peers = peers[:1] // standalone on the oldest control node
	}
	var out []driver.Frontend
	for _, in := range insts {
		f := driver.Frontend{Name: in.Name, Port: in.Port, OneActive: true}
		for _, p := range peers {
			if n, ok := env.Node(p); ok && n.IP != "" {
				be := driver.Backend{Node: p, Addr: net.JoinHostPort(n.IP, strconv.Itoa(in.Port))}
				if n.Address != "" {
					// Writes go only to a member whose copy is Synced.
					be.Check = &driver.HTTPCheck{Addr: n.Address, Path: writablePath(in.Name)}
				}
				f.Backends = append(f.Backends, be)
			}
		}
		out = append(out, f)
	}
	return out
}

func rawJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
