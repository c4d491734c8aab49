package compute

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	lxd "github.com/canonical/lxd/client"
	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/supervisor"
)

// Driver is the compute role's driver. The zero value is not usable: use New.
type Driver struct {
	// ProbeKVM returns this machine's KVM verdict (hwprobe's by default).
	ProbeKVM func(ctx context.Context) hwprobe.KVM
	// RBDPresent reports whether the kernel's rbd module is loaded.
	RBDPresent func() bool
	// Command runs a program with extra environment for its output (LXD's
	// own recovery subcommand); nil runs it with os/exec.
	Command func(ctx context.Context, env []string, name string, args ...string) ([]byte, error)

	mu        sync.Mutex
	dir       string
	startedAt time.Time
	kvm       *hwprobe.KVM
	readyIn   time.Duration
	joinedIn  time.Duration
	sup       *supervisor.Supervisor
	// moves are this node's instances as they were before it moved them
	// (evacuate.go), by volatile.uuid; settleSince is when a leaving node
	// first found another LXD member not online.
	moves       map[string]moved
	settleSince time.Time
	// handovers counts LXD restarts made to hand the database lead over,
	// the last at lastHandover.
	handovers    int
	lastHandover time.Time
	// cephKey is the remote pool's Ceph key, as fetched (remote.go).
	cephKey cephKey
}

// New returns the compute driver.
func New() *Driver {
	return &Driver{ProbeKVM: probeKVM, RBDPresent: func() bool {
		_, err := os.Stat("/sys/bus/rbd")
		return err == nil
	}}
}

var _ driver.Driver = (*Driver)(nil)
var _ driver.Frontender = (*Driver)(nil)

func probeKVM(ctx context.Context) hwprobe.KVM {
	m, err := hwprobe.OpenMachine()
	if err != nil {
		return hwprobe.KVM{Verdict: hwprobe.KVMUnknown, Reason: "cannot read this machine: " + err.Error()}
	}
	defer m.Close()
	f, err := hwprobe.Probe(ctx, m, hwprobe.DefaultPolicy(), []roles.Role{roles.Compute})
	if err != nil {
		return hwprobe.KVM{Verdict: hwprobe.KVMUnknown, Reason: "probe failed: " + err.Error()}
	}
	return f.KVM
}

// Name implements driver.Driver.
func (d *Driver) Name() string { return api.LayerCompute }

// AppliesTo implements driver.Driver: compute nodes, and the local node
// while it still holds LXD state after losing the role (it must evacuate
// and leave the LXD cluster first).
func (d *Driver) AppliesTo(env *driver.Env, n driver.Node) bool {
	if n.Has(roles.Compute) {
		return true
	}
	if n.Name != env.Local.Name {
		return false
	}
	dir := env.Dir
	if dir == "" {
		// The loop asks before it lends the driver its directory: use the
		// one of the last round.
		d.mu.Lock()
		dir = d.dir
		d.mu.Unlock()
	}
	return dir != "" && hasState(pathsIn(dir))
}

func hasState(p paths) bool {
	_, err := os.Stat(filepath.Join(p.lxdDir, "database"))
	return err == nil
}

// Schema implements driver.Driver: the LXD cluster keeps its own state.
func (d *Driver) Schema() []driver.SchemaUpdate { return nil }

// Ports implements driver.Driver.
func (d *Driver) Ports(env *driver.Env, n driver.Node) []driver.Port {
	if !n.Has(roles.Compute) {
		return nil
	}
	return []driver.Port{{Number: lxdPort(env), Proto: "tcp", Purpose: "LXD API (clients, lxc) and LXD cluster traffic between compute nodes", Peers: true}}
}

// Frontends implements driver.Frontender: LXD's API on the floating address.
func (d *Driver) Frontends(env *driver.Env) []driver.Frontend {
	var bs []driver.Backend
	for _, n := range env.WithRole(roles.Compute) {
		bs = append(bs, driver.Backend{Node: n.Name, Addr: net.JoinHostPort(n.IP, strconv.Itoa(lxdPort(env)))})
	}
	if len(bs) == 0 {
		return nil
	}
	return []driver.Frontend{{Name: "lxd", Port: lxdPort(env), Backends: bs}}
}

func lxdPort(env *driver.Env) int {
	if env.Manifest != nil && env.Manifest.Ports.LXD > 0 {
		return env.Manifest.Ports.LXD
	}
	return 8443
}

func lxdBinary(env *driver.Env) string {
	if env.Manifest != nil {
		if p, err := env.Manifest.Binary("lxd", "lxd"); err == nil {
			return p
		}
	}
	return "lxd"
}

func startTimeout(env *driver.Env) time.Duration {
	if env.Manifest != nil {
		if t := env.Manifest.Timeouts.Step("lxd_start"); t > 0 {
			return t
		}
	}
	return 5 * time.Minute
}

// start starts LXD under the supervisor when it is not running and waits
// until it is ready.
func (d *Driver) start(ctx context.Context, env *driver.Env, p paths, step func(driver.Step)) (lxd.InstanceServer, error) {
	d.mu.Lock()
	d.sup = env.Sup
	d.mu.Unlock()
	if _, ok := env.Sup.Status(serviceName); ok {
		if c, err := ready(ctx, p); err == nil {
			return c, nil
		}
	} else {
		if err := p.ensureDirs(); err != nil {
			return nil, err
		}
		mounted, err := ensureCgroup()
		if err != nil {
			return nil, err
		}
		if mounted {
			env.Log.Info("compute: mounted cgroup2 on /sys/fs/cgroup for LXD (none was mounted in cloudd's mount namespace)")
		}
		step(driver.Step{Name: "start LXD", State: "running"})
		spec := supervisor.Spec{Name: serviceName, Path: lxdBinary(env), Args: []string{"--group", "root"},
			Env: []string{"LXD_DIR=" + p.lxdDir, "CEPH_CONF=" + p.cephConf}, LogPath: p.log}
		if err := env.Sup.Start(spec); err != nil {
			return nil, fmt.Errorf("start LXD: %w", err)
		}
		d.mu.Lock()
		d.startedAt = time.Now()
		d.mu.Unlock()
	}
	// Wait a little here; LXD waiting for its cluster database (members
	// down) must not hold the loop and the other roles: come back later.
	wctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	c, err := waitReady(ctx, wctx, p, env.Sup)
	d.mu.Lock()
	since := time.Since(d.startedAt)
	d.mu.Unlock()
	if err != nil {
		if since < startTimeout(env) && ctx.Err() == nil {
			step(driver.Step{Name: "start LXD", State: "waiting", Detail: "LXD is not ready yet (it may wait for other LXD members)"})
			return nil, errNotReady
		}
		return nil, fmt.Errorf("LXD not ready %s after its start: %w", since.Round(time.Second), err)
	}
	d.mu.Lock()
	d.readyIn = since
	d.mu.Unlock()
	env.Log.Info("compute: LXD ready", "in", since.Round(time.Millisecond))
	step(driver.Step{Name: "start LXD", State: "done"})
	return c, nil
}

// readyWait is how long one round waits for LXD to become ready.
const readyWait = 15 * time.Second

// errNotReady means LXD runs but is not ready yet: try again next round.
var errNotReady = errors.New("LXD is not ready yet")

// notReady turns errNotReady into a quiet retry.
func notReady(err error) (driver.Result, error) {
	if errors.Is(err, errNotReady) {
		return driver.Result{Again: 2 * time.Second}, nil
	}
	return driver.Result{Again: 5 * time.Second}, err
}

// Converge implements driver.Driver.
func (d *Driver) Converge(ctx context.Context, env *driver.Env, step func(driver.Step)) (driver.Result, error) {
	// A round ends, whatever LXD does: evacuations are the longest step.
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	p := pathsIn(env.Dir)
	d.mu.Lock()
	d.dir = env.Dir
	d.mu.Unlock()
	if !env.Local.Has(roles.Compute) {
		return d.leave(ctx, env, p, step)
	}
	d.resetHandovers()
	c, err := d.start(ctx, env, p, step)
	if err != nil {
		return notReady(err)
	}
	addr := net.JoinHostPort(env.Local.IP, strconv.Itoa(lxdPort(env)))
	srv, etag, err := c.GetServer()
	if err != nil {
		return driver.Result{Again: 5 * time.Second}, fmt.Errorf("read LXD server: %w", err)
	}
	if ch := configChanges(srv.Config, serverConfig(env.Local.IP, lxdPort(env))); len(ch) > 0 {
		put := srv.Writable()
		for k, v := range ch {
			put.Config[k] = v
		}
		if err := c.UpdateServer(put, etag); err != nil {
			return driver.Result{Again: 5 * time.Second}, fmt.Errorf("configure LXD server (%s): %w", strings.Join(keys(ch), ", "), err)
		}
	}
	// The remote pool's Ceph client files come first: a member joining a
	// cluster that has the pool needs them.
	user, haveUser, err := d.cephUser(ctx, env, p)
	if err != nil {
		return driver.Result{Again: 5 * time.Second}, err
	}
	remoteSource := ""
	if haveUser {
		remoteSource = user.Pool
	}
	if !srv.Environment.ServerClustered {
		res, err := d.cluster(ctx, env, c, p, addr, remoteSource, step)
		if err != nil || res.Again > 0 {
			return res, err
		}
	}
	if err := d.ensureObjects(ctx, env, c, p, step); err != nil {
		return driver.Result{Again: 5 * time.Second}, err
	}
	// A failed restore is retried, without holding up the rest.
	var restoreErr error
	if srv.Environment.ServerClustered {
		restoreErr = d.restore(ctx, env, c, p, step)
	}
	d.removeDeparted(ctx, env, c)
	if err := d.ensureRemote(ctx, env, c, user, haveUser, step); err != nil {
		if errors.Is(err, errWaitRemote) {
			return driver.Result{Again: 5 * time.Second}, restoreErr
		}
		return driver.Result{Again: 10 * time.Second}, errors.Join(err, restoreErr)
	}
	if restoreErr != nil {
		return driver.Result{Again: 10 * time.Second}, restoreErr
	}
	return driver.Result{}, nil
}

// keys are m's keys, sorted.
func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// cluster brings a standalone LXD into the LXD cluster: bootstrap on the
// first compute node, join elsewhere.
func (d *Driver) cluster(ctx context.Context, env *driver.Env, c lxd.InstanceServer, p paths, addr, remoteSource string, step func(driver.Step)) (driver.Result, error) {
	var order []string
	var peers []PeerState
	for _, n := range env.WithRole(roles.Compute) {
		order = append(order, n.Name)
		if n.Name == env.Local.Name || env.Peers == nil {
			continue
		}
		var ps PeerState
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := env.Peers.Get(pctx, n.Name, "compute/state", &ps)
		cancel()
		if err == nil {
			peers = append(peers, ps)
		}
	}
	dec := decideCluster(env.Local.Name, false, order, peers)
	t0 := time.Now()
	switch dec.Action {
	case Wait:
		step(driver.Step{Name: "join the LXD cluster", State: "waiting", Detail: dec.Reason})
		return driver.Result{Again: 3 * time.Second}, nil
	case Bootstrap:
		step(driver.Step{Name: "form the LXD cluster", State: "running"})
		op, err := c.UpdateCluster(lxdapi.ClusterPut{Cluster: lxdapi.Cluster{ServerName: env.Local.Name, Enabled: true}}, "")
		if err != nil {
			return driver.Result{Again: 5 * time.Second}, fmt.Errorf("enable LXD clustering: %w", err)
		}
		if err := wait(bounded(ctx, 2*time.Minute), op, "enable LXD clustering"); err != nil {
			return driver.Result{Again: 5 * time.Second}, err
		}
		step(driver.Step{Name: "form the LXD cluster", State: "done"})
	case Join:
		step(driver.Step{Name: "join the LXD cluster", State: "running", Detail: "through " + dec.Via})
		var ji JoinInfo
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := env.Peers.Get(pctx, dec.Via, "compute/join/"+env.Local.Name, &ji)
		cancel()
		if err != nil {
			return driver.Result{Again: 5 * time.Second}, fmt.Errorf("get an LXD join token from %s: %w", dec.Via, err)
		}
		put, err := joinPut(env.Local.Name, addr, p.pool, remoteSource, ji)
		if err != nil {
			return driver.Result{Again: 5 * time.Second}, fmt.Errorf("join the LXD cluster through %s: %w", dec.Via, err)
		}
		op, err := c.UpdateCluster(put, "")
		if err != nil {
			return driver.Result{Again: 5 * time.Second}, fmt.Errorf("join the LXD cluster through %s: %w", dec.Via, err)
		}
		if err := wait(bounded(ctx, 2*time.Minute), op, "join the LXD cluster through "+dec.Via); err != nil {
			// A failed join can leave LXD believing it is clustered (it
			// then never tries again): start over from a fresh standalone
			// LXD, which holds nothing yet.
			if rerr := d.resetAfterFailedJoin(ctx, env, c, p); rerr != nil {
				env.Log.Warn("compute: could not reset LXD after a failed join", "error", rerr)
			}
			return driver.Result{Again: 5 * time.Second}, err
		}
		step(driver.Step{Name: "join the LXD cluster", State: "done"})
	}
	d.mu.Lock()
	d.joinedIn = time.Since(t0)
	d.mu.Unlock()
	env.Log.Info("compute: LXD cluster member", "how", map[Action]string{Bootstrap: "bootstrap", Join: "join"}[dec.Action], "in", time.Since(t0).Round(time.Millisecond))
	return driver.Result{}, nil
}

// ensureObjects creates the local pool, the bridge and the default profile's
// devices when missing: per-member definitions first (every member as
// target), then the cluster-wide object, as LXD requires.
func (d *Driver) ensureObjects(ctx context.Context, env *driver.Env, c lxd.InstanceServer, p paths, step func(driver.Step)) error {
	members, err := c.GetClusterMemberNames()
	if err != nil {
		return fmt.Errorf("list LXD members: %w", err)
	}
	pool, _, err := c.GetStoragePool(PoolName)
	switch {
	case isNotFound(err):
		step(driver.Step{Name: "create the local storage pool", State: "running"})
		for _, m := range members {
			if m != env.Local.Name {
				return fmt.Errorf("storage pool %s is missing and member %s's pool directory is unknown here: it is created when the cluster forms", PoolName, m)
			}
		}
		if err := c.UseTarget(env.Local.Name).CreateStoragePool(lxdapi.StoragePoolsPost{Name: PoolName, Driver: "dir",
			StoragePoolPut: lxdapi.StoragePoolPut{Config: map[string]string{"source": p.pool}}}); err != nil {
			return fmt.Errorf("define storage pool %s on %s: %w", PoolName, env.Local.Name, err)
		}
		fallthrough
	case err == nil && (pool == nil || pool.Status == "Pending"):
		if err := c.CreateStoragePool(lxdapi.StoragePoolsPost{Name: PoolName, Driver: "dir"}); err != nil {
			return fmt.Errorf("create storage pool %s: %w", PoolName, err)
		}
		step(driver.Step{Name: "create the local storage pool", State: "done"})
	case err != nil:
		return fmt.Errorf("read storage pool %s: %w", PoolName, err)
	}
	nw, _, err := c.GetNetwork(NetworkName)
	switch {
	case isNotFound(err):
		step(driver.Step{Name: "create the bridge " + NetworkName, State: "running"})
		for _, m := range members {
			if err := c.UseTarget(m).CreateNetwork(lxdapi.NetworksPost{Name: NetworkName, Type: "bridge"}); err != nil {
				return fmt.Errorf("define network %s on %s: %w", NetworkName, m, err)
			}
		}
		fallthrough
	case err == nil && (nw == nil || nw.Status == "Pending"):
		if err := c.CreateNetwork(lxdapi.NetworksPost{Name: NetworkName, Type: "bridge", NetworkPut: lxdapi.NetworkPut{Config: map[string]string{
			"ipv4.address": "auto", "ipv4.nat": "true", "ipv6.address": "none"}}}); err != nil {
			return fmt.Errorf("create network %s: %w", NetworkName, err)
		}
		step(driver.Step{Name: "create the bridge " + NetworkName, State: "done"})
	case err != nil:
		return fmt.Errorf("read network %s: %w", NetworkName, err)
	}
	prof, etag, err := c.GetProfile(ProfileName)
	if err != nil {
		return fmt.Errorf("read profile %s: %w", ProfileName, err)
	}
	want := map[string]map[string]string{
		"root": {"type": "disk", "path": "/", "pool": PoolName},
		"eth0": {"type": "nic", "name": "eth0", "network": NetworkName},
	}
	put := prof.Writable()
	if put.Devices == nil {
		put.Devices = map[string]map[string]string{}
	}
	changed := false
	for name, dev := range want {
		if !sameDevice(put.Devices[name], dev) {
			put.Devices[name] = dev
			changed = true
		}
	}
	if changed {
		if err := c.UpdateProfile(ProfileName, put, etag); err != nil {
			return fmt.Errorf("set the root disk and eth0 of profile %s: %w", ProfileName, err)
		}
	}
	return nil
}

func sameDevice(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// removeDeparted removes, from the first online compute member only, LXD
// members whose node left the cluster and whose LXD is offline (after
// `cluster recover`, the lost ones). A node that
// is still a member but lost the compute role leaves by itself, after
// evacuating: removing it from here would drop its instances (an LXD member
// under load can look offline for a while, and a node that joined after this
// round's snapshot is not in it yet).
func (d *Driver) removeDeparted(ctx context.Context, env *driver.Env, c lxd.InstanceServer) {
	compute := map[string]bool{}
	for _, n := range env.WithRole(roles.Compute) {
		compute[n.Name] = true
	}
	ms, err := c.GetClusterMembers()
	if err != nil {
		return
	}
	first := ""
	for _, n := range env.WithRole(roles.Compute) {
		for _, m := range ms {
			if m.ServerName == n.Name && m.Status == "Online" && first == "" {
				first = n.Name
			}
		}
	}
	if first != env.Local.Name {
		return
	}
	for _, m := range ms {
		// Only Offline: LXD shows Evacuated whether the member still runs
		// or not (it may be moving instances), and Blocked ones run.
		if compute[m.ServerName] || m.Status != "Offline" {
			continue
		}
		if gone, err := env.Departed(ctx, m.ServerName); err != nil || !gone {
			continue
		}
		env.Log.Warn("compute: removing the offline LXD member of a node that left the cluster", "member", m.ServerName)
		if err := c.DeleteClusterMember(m.ServerName, true); err != nil {
			env.Log.Warn("compute: cannot remove LXD member", "member", m.ServerName, "error", err)
		}
	}
}

// leave runs on a node that lost the compute role: evacuate its instances,
// leave the LXD cluster, stop LXD and remove its state.
func (d *Driver) leave(ctx context.Context, env *driver.Env, p paths, step func(driver.Step)) (driver.Result, error) {
	if !hasState(p) {
		if err := os.Remove(p.evacuated); err != nil && !os.IsNotExist(err) {
			return driver.Result{Again: 10 * time.Second}, fmt.Errorf("remove the evacuation mark: %w", err)
		}
		return driver.Result{}, d.Stop(ctx)
	}
	c, err := d.start(ctx, env, p, step)
	if err != nil {
		return notReady(err)
	}
	srv, _, err := c.GetServer()
	if err != nil {
		return driver.Result{Again: 5 * time.Second}, fmt.Errorf("read LXD server: %w", err)
	}
	me := env.Local.Name
	if srv.Environment.ServerClustered {
		all, err := c.GetClusterMembers()
		if err != nil {
			return driver.Result{Again: 5 * time.Second}, fmt.Errorf("list LXD members: %w", err)
		}
		if len(all) > 1 {
			// A leader that cannot hand its lead over waits before moving
			// anything (see below): nothing changes until it can.
			if _, blocked := leadership(members(all), me, computeNodes(env)); blocked != nil {
				return waitForLead(step, blocked), nil
			}
			// A move LXD left half-done (its copy under a temporary name)
			// is finished before anything else: after this node leaves,
			// nothing knows the instance's name.
			if left, err := d.repairMoves(ctx, c, env.Log); err != nil || left > 0 {
				step(driver.Step{Name: "evacuate LXD instances", State: "failed", Detail: fmt.Sprint(err)})
				return driver.Result{Again: 5 * time.Second}, err
			}
			insts, err := c.GetInstances(lxdapi.InstanceTypeAny)
			if err != nil {
				return driver.Result{Again: 5 * time.Second}, fmt.Errorf("list LXD instances: %w", err)
			}
			n := 0
			for _, in := range insts {
				if in.Location == me {
					n++
				}
			}
			if n > 0 {
				members, err := c.GetClusterMembers()
				if err != nil {
					return driver.Result{Again: 5 * time.Second}, fmt.Errorf("list LXD members: %w", err)
				}
				// Moving toward a member LXD sees offline fails half-way:
				// wait (bounded) until the others answer its heartbeats.
				if ok, off := othersOnline(members, me); d.settling(env.Now(), ok) {
					step(driver.Step{Name: "evacuate LXD instances", State: "waiting", Detail: "for LXD members to be online: " + strings.Join(off, ", ")})
					return driver.Result{Again: 3 * time.Second}, nil
				}
				d.rememberMoves(movesOf(insts, me))
				if err := os.WriteFile(p.evacuated, nil, 0o600); err != nil {
					return driver.Result{Again: 5 * time.Second}, fmt.Errorf("mark the evacuation: %w", err)
				}
				step(driver.Step{Name: "evacuate LXD instances", State: "running", Detail: fmt.Sprintf("%d instance(s)", n)})
				op, err := c.UpdateClusterMemberState(me, lxdapi.ClusterMemberStatePost{Action: "evacuate"})
				if err == nil {
					err = wait(bounded(ctx, 10*time.Minute), op, "evacuate "+me)
				}
				if err != nil {
					step(driver.Step{Name: "evacuate LXD instances", State: "failed", Detail: err.Error()})
					if _, rerr := d.repairMoves(ctx, c, env.Log); rerr != nil {
						env.Log.Warn("compute: cannot finish a half-done move yet", "error", rerr)
					}
					return driver.Result{Again: 10 * time.Second}, fmt.Errorf("evacuate %s's LXD instances: %w", me, err)
				}
				step(driver.Step{Name: "evacuate LXD instances", State: "done"})
				d.settling(env.Now(), true)
			}
			// The leader never removes itself: measured with LXD 5.0.2
			// (raft 0.15), a two-member cluster whose leader left lost its
			// database for good ("server has lost leadership", then no
			// leader on either member). LXD hands its lead to another
			// online voter when it stops: stop it, and go on once it is
			// back and another member leads. Restarts are spaced out
			// after the third, should LXD keep electing this member.
			ms, err := c.GetClusterMembers()
			if err != nil {
				return driver.Result{Again: 5 * time.Second}, fmt.Errorf("list LXD members: %w", err)
			}
			leader, blocked := leadership(members(ms), me, computeNodes(env))
			if blocked != nil {
				return waitForLead(step, blocked), nil
			}
			if leader {
				n, ok := d.nextHandover(env.Now())
				if !ok {
					step(driver.Step{Name: "leave the LXD cluster", State: "waiting", Detail: fmt.Sprintf("LXD kept this member as its database leader after %d restarts; trying again shortly", n)})
					return driver.Result{Again: 10 * time.Second}, nil
				}
				step(driver.Step{Name: "leave the LXD cluster", State: "running", Detail: "handing the LXD database lead to another voter"})
				env.Log.Info("compute: restarting LXD to hand its database leadership over before leaving", "restart", n)
				if err := d.Stop(ctx); err != nil {
					return driver.Result{Again: 5 * time.Second}, fmt.Errorf("stop LXD to hand its leadership over: %w", err)
				}
				return driver.Result{Again: time.Second}, nil
			}
			d.resetHandovers()
			step(driver.Step{Name: "leave the LXD cluster", State: "running"})
			if err := c.DeleteClusterMember(me, false); err != nil {
				return driver.Result{Again: 10 * time.Second}, fmt.Errorf("leave the LXD cluster: %w", err)
			}
			step(driver.Step{Name: "leave the LXD cluster", State: "done"})
			env.Log.Info("compute: left the LXD cluster", "node", me)
		}
	}
	// LXD restarts itself standalone after leaving: wait for it, then stop
	// it; SIGPWR (which stops instances first) only when some are left.
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	c, err = waitReady(ctx, wctx, p, env.Sup)
	cancel()
	if err != nil {
		return driver.Result{Again: 5 * time.Second}, err
	}
	left := 0
	if insts, err := c.GetInstances(lxdapi.InstanceTypeAny); err == nil {
		left = len(insts)
	}
	if left > 0 {
		env.Log.Warn("compute: stopping LXD with instances that could not be moved; they are lost with its state", "instances", left)
	}
	if err := d.shutdown(ctx, env.Sup, left > 0); err != nil {
		return driver.Result{Again: 5 * time.Second}, err
	}
	if err := removeState(p); err != nil {
		return driver.Result{Again: 10 * time.Second}, err
	}
	if err := os.Remove(p.evacuated); err != nil && !os.IsNotExist(err) {
		return driver.Result{Again: 10 * time.Second}, fmt.Errorf("remove the evacuation mark: %w", err)
	}
	return driver.Result{}, nil
}

// waitForLead reports a leaving leader's wait for another voter able to
// take its lead over (blocked says why none can yet).
func waitForLead(step func(driver.Step), blocked error) driver.Result {
	step(driver.Step{Name: "leave the LXD cluster", State: "waiting", Detail: blocked.Error() + "; this node leaves on its own once another voter can take over"})
	return driver.Result{Again: 5 * time.Second}
}

// resetAfterFailedJoin stops LXD and removes its state, when it holds no
// instance, so the next round joins from scratch.
func (d *Driver) resetAfterFailedJoin(ctx context.Context, env *driver.Env, c lxd.InstanceServer, p paths) error {
	if insts, err := c.GetInstances(lxdapi.InstanceTypeAny); err != nil || len(insts) > 0 {
		return fmt.Errorf("LXD holds instances (or cannot list them: %v): leaving it as it is", err)
	}
	env.Log.Warn("compute: the LXD join failed; starting over from a fresh LXD")
	if err := d.shutdown(ctx, env.Sup, false); err != nil {
		return err
	}
	return removeState(p)
}

// shutdown stops LXD: with its instances first (SIGPWR) when instances is
// set, then through the supervisor (SIGTERM).
func (d *Driver) shutdown(ctx context.Context, sup *supervisor.Supervisor, instances bool) error {
	st, ok := sup.Status(serviceName)
	if ok && st.Pid > 0 && instances {
		_ = syscall.Kill(st.Pid, syscall.SIGPWR)
		for i := 0; i < 600; i++ {
			if syscall.Kill(st.Pid, 0) != nil {
				break
			}
			if s2, _ := sup.Status(serviceName); s2.Pid != st.Pid {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return sup.Stop(serviceName, 30*time.Second)
}

// removeState unmounts what LXD left mounted below its directories and
// removes them: the links first, then the real directories, and the remote
// pool's Ceph client files (the key).
func removeState(p paths) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	roots := []string{p.lxdDir, p.pool, p.data}
	for _, r := range []string{p.lxdDir, p.pool} {
		if real, err := filepath.EvalSymlinks(r); err == nil {
			roots = append(roots, real)
		}
	}
	var mps []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 {
			mp := unescapeMount(f[4])
			for _, root := range roots {
				if mp == root || strings.HasPrefix(mp, root+"/") {
					mps = append(mps, mp)
					break
				}
			}
		}
	}
	sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
	for _, mp := range mps {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
	for _, dir := range []string{p.lxdDir, p.pool, p.data, p.cephDir} {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove %s: %w", dir, err)
		}
	}
	return nil
}

func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// Stop implements driver.Driver: LXD stops; its instances keep running (a
// cloudd restart must not stop them) and LXD picks them up when it starts
// again. Leaving the role goes through Converge first (see AppliesTo).
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	sup := d.sup
	d.mu.Unlock()
	if sup == nil {
		return nil
	}
	return sup.Stop(serviceName, time.Minute)
}

// Left implements driver.Leaver: once this node has left LXD (no LXD
// database: the role no longer applies), the remote pool's client files go,
// the Ceph user's keyring with them; nothing else would read them. While an
// LXD database is there the role still applies (it is leaving) and they
// stay.
func (d *Driver) Left(ctx context.Context, env *driver.Env) error {
	p := pathsIn(env.Dir)
	if hasState(p) {
		return nil
	}
	if _, err := os.Stat(p.cephDir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := os.RemoveAll(p.cephDir); err != nil {
		return fmt.Errorf("delete the Ceph keyring of a node that left the compute role: %w", err)
	}
	env.Log.Info("compute: this node left the compute role: its Ceph keyring is deleted", "dir", p.cephDir)
	return nil
}

// localState reads this node's LXD without starting or creating anything.
func (d *Driver) localState(ctx context.Context, env *driver.Env) PeerState {
	p := pathsIn(env.Dir)
	ps := PeerState{Node: env.Local.Name, Left: !hasState(p)}
	if d.RBDPresent != nil {
		ps.RBD = d.RBDPresent()
	}
	d.mu.Lock()
	ps.ReadySeconds, ps.JoinSeconds = d.readyIn.Seconds(), d.joinedIn.Seconds()
	kvm := d.kvm
	d.mu.Unlock()
	if env.Sup != nil {
		if st, ok := env.Sup.Status(serviceName); ok && st.Pid > 0 {
			ps.RSSKiB = rssKiB(st.Pid)
		}
	}
	c, err := ready(ctx, p)
	if err != nil {
		ps.Error = "LXD does not answer"
		return ps
	}
	ps.Running = true
	srv, _, err := c.GetServer()
	if err != nil {
		ps.Error = err.Error()
		return ps
	}
	if kvm == nil && d.ProbeKVM != nil {
		k := d.ProbeKVM(ctx)
		kvm = &k
		d.mu.Lock()
		d.kvm = kvm
		d.mu.Unlock()
	}
	if kvm != nil {
		ps.VMs, ps.VMReason = vmVerdict(*kvm, srv.Environment.Driver)
	}
	ps.Clustered = srv.Environment.ServerClustered
	ps.Address = fmt.Sprint(srv.Config["core.https_address"])
	ps.Remote = remoteState(ctx, env, c, p, ps.Clustered)
	if ps.Clustered {
		v, err := clusterView(c)
		if err != nil {
			ps.Error = err.Error()
		} else {
			ps.Cluster = v
		}
	}
	return ps
}

func clusterView(c lxd.InstanceServer) (*ClusterView, error) {
	ms, err := c.GetClusterMembers()
	if err != nil {
		return nil, fmt.Errorf("list LXD members: %w", err)
	}
	v := &ClusterView{Instances: map[string]int{}, Names: map[string][]string{}}
	for _, m := range ms {
		v.Members = append(v.Members, members([]lxdapi.ClusterMember{m})...)
		v.Instances[m.ServerName] = 0
	}
	insts, err := c.GetInstances(lxdapi.InstanceTypeAny)
	if err != nil {
		return nil, fmt.Errorf("list LXD instances: %w", err)
	}
	for _, in := range insts {
		v.Instances[in.Location]++
		v.Names[in.Location] = append(v.Names[in.Location], in.Name)
	}
	pools, err := c.GetStoragePools()
	if err != nil {
		return nil, fmt.Errorf("list LXD pools: %w", err)
	}
	for _, p := range pools {
		v.Pools = append(v.Pools, Pool{Name: p.Name, Driver: p.Driver, Status: p.Status})
	}
	return v, nil
}

// states collects every compute node's state: this node's directly, the
// others' over cloudd's cluster API.
func (d *Driver) states(ctx context.Context, env *driver.Env) []PeerState {
	var out []PeerState
	for _, n := range env.WithRole(roles.Compute) {
		if n.Name == env.Local.Name {
			out = append(out, d.localState(ctx, env))
			continue
		}
		ps := PeerState{Node: n.Name}
		if env.Peers == nil {
			ps.Error = "no peer access"
		} else {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if err := env.Peers.Get(pctx, n.Name, "compute/state", &ps); err != nil {
				ps = PeerState{Node: n.Name, Error: "cloudd does not answer: " + err.Error()}
			}
			cancel()
		}
		out = append(out, ps)
	}
	return out
}

// stateOf is the compute state of one node (this one directly, another
// over cloudd's cluster API); false when it does not answer.
func (d *Driver) stateOf(ctx context.Context, env *driver.Env, node string) (PeerState, bool) {
	if node == env.Local.Name {
		return d.localState(ctx, env), true
	}
	if env.Peers == nil {
		return PeerState{}, false
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var ps PeerState
	if err := env.Peers.Get(pctx, node, "compute/state", &ps); err != nil {
		return PeerState{}, false
	}
	return ps, true
}

// view is the LXD cluster as the first answering member sees it.
func view(states []PeerState) *ClusterView {
	for _, s := range states {
		if s.Cluster != nil {
			return s.Cluster
		}
	}
	return nil
}

// Details are the compute layer's own data in status.
type Details struct {
	Nodes   []PeerState  `json:"nodes"`
	Cluster *ClusterView `json:"cluster,omitempty"`
}

// Status implements driver.Driver.
func (d *Driver) Status(ctx context.Context, env *driver.Env) api.Layer {
	l := api.Layer{Name: api.LayerCompute, Title: "Compute (LXD)", Built: true, Health: api.HealthOK}
	nodes := env.WithRole(roles.Compute)
	if len(nodes) == 0 {
		l.HA, l.Reason = api.HANo, "no compute node"
		return l
	}
	states := d.states(ctx, env)
	v := view(states)
	l.HA, l.Reason = haVerdict(v)
	member := map[string]Member{}
	if v != nil {
		for _, m := range v.Members {
			member[m.Name] = m
		}
	}
	var warn []string
	for _, s := range states {
		lm := api.LayerMember{Node: s.Node}
		m, inCluster := member[s.Node]
		switch {
		case inCluster:
			lm.State = strings.ToLower(m.Status)
		case s.Running:
			lm.State = "not joined"
		default:
			lm.State = "down"
		}
		var det []string
		if inCluster {
			det = append(det, strings.Join(m.Roles, "/"))
			det = append(det, fmt.Sprintf("%d instance(s)", v.Instances[s.Node]))
		}
		if s.Running {
			if s.VMs {
				det = append(det, "containers and VMs")
			} else if s.VMReason != "" {
				det = append(det, s.VMReason)
			}
			if s.Remote != nil {
				det = append(det, remoteDetail(s.Node, s.Remote, s.RBD))
			} else if !s.RBD {
				det = append(det, "rbd kernel module absent (/sys/bus/rbd): Ceph-backed volumes cannot be used here")
			}
		}
		if s.Error != "" {
			det = append(det, s.Error)
		}
		lm.Detail = strings.Join(nonEmpty(det), "; ")
		if lm.State != "online" {
			warn = append(warn, s.Node+" "+lm.State)
		}
		l.Members = append(l.Members, lm)
	}
	if note := rbdNote(states); note != "" {
		l.Reason = strings.Join(nonEmpty([]string{l.Reason, note}), "; ")
	}
	switch {
	case v == nil:
		l.Health = api.HealthError
	case len(warn) > 0:
		l.Health = api.HealthWarning
	}
	if b, err := json.Marshal(Details{Nodes: states, Cluster: v}); err == nil {
		l.Details = b
	}
	return l
}

func nonEmpty(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Guard implements driver.Driver: a compute node may give up the role when
// its instances can be moved to another online member; a node is removed
// after it gave up the role (driver.LeaveRoleFirst) and left the LXD cluster.
func (d *Driver) Guard(ctx context.Context, env *driver.Env, ch driver.Change) error {
	if ch.Kind == driver.RemoveRole && ch.Role != roles.Compute {
		return nil
	}
	n, ok := env.Node(ch.Node)
	if !ok {
		return nil
	}
	if !n.Has(roles.Compute) {
		if ch.Kind != driver.RemoveNode {
			return nil
		}
		if ps, ok := d.stateOf(ctx, env, ch.Node); ok {
			return guardLeaving(ch.Node, &ps, nil)
		}
		if len(env.WithRole(roles.Compute)) == 0 {
			return nil
		}
		return guardLeaving(ch.Node, nil, view(d.states(ctx, env)))
	}
	return guardRemoval(ch.Kind, ch.Node, view(d.states(ctx, env)), computeNodes(env))
}
