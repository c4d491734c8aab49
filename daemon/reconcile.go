package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// retrySoon is how soon the loop tries again after it could not read the
// cluster state or a driver failed.
const retrySoon = 2 * time.Second

// loopState is the reconcile loop's own state.
type loopState struct {
	// kicks wake each driver's worker; driverMu keeps one driver's
	// Converge and Stop apart.
	kicks    []chan struct{}
	driverMu map[string]*sync.Mutex

	mu sync.Mutex
	// active are the drivers that converged on this node and not stopped since.
	active map[string]bool
	// lastErr is each driver's last error text, so a repeated error is
	// logged once.
	lastErr map[string]string
	// steps are each driver's last progress reports.
	steps map[string][]driver.Step
}

func (l *loopState) init(drivers []driver.Driver) {
	l.driverMu = map[string]*sync.Mutex{}
	for _, dr := range drivers {
		l.kicks = append(l.kicks, make(chan struct{}, 1))
		l.driverMu[dr.Name()] = &sync.Mutex{}
	}
	l.active, l.lastErr, l.steps = map[string]bool{}, map[string]string{}, map[string][]driver.Step{}
}

// kick asks every driver's worker to run now.
func (d *Daemon) kick() {
	for _, k := range d.loop.kicks {
		select {
		case k <- struct{}{}:
		default:
		}
	}
}

// reconcileLoop runs one worker per driver, so a slow role never holds back
// another. Each worker runs
// its driver when kicked (membership hooks, role and plan changes) and
// otherwise as soon as the driver asked to come back, or after the resync
// interval: a settled cluster is quiet.
func (d *Daemon) reconcileLoop(ctx context.Context) {
	var wg sync.WaitGroup
	for i, dr := range d.drivers {
		wg.Add(1)
		go func(dr driver.Driver, kick chan struct{}) {
			defer wg.Done()
			d.driverWorker(ctx, dr, kick)
		}(dr, d.loop.kicks[i])
	}
	wg.Wait()
}

func (d *Daemon) driverWorker(ctx context.Context, dr driver.Driver, kick chan struct{}) {
	timer := time.NewTimer(d.cfg.Resync)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-kick:
		}
		next := d.reconcileOnce(ctx, dr)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// reconcileOnce runs one round of one driver and returns when the next
// should be.
func (d *Daemon) reconcileOnce(ctx context.Context, dr driver.Driver) time.Duration {
	s := d.getState()
	if s == nil || s.Database == nil || s.Database.IsOpen(ctx) != nil {
		return retrySoon
	}
	if d.leaving.Load() {
		return d.cfg.Resync
	}
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	env, err := d.buildEnv(ectx, s)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			d.logOnce("reconcile", "cannot read the cluster state", err)
		}
		return retrySoon
	}
	d.logOnce("reconcile", "", nil)
	d.setMemberIPs(env)
	return d.runDriver(ctx, env, dr)
}

// runDrivers runs every driver once, in order (tests use it).
func (d *Daemon) runDrivers(ctx context.Context, env *driver.Env) time.Duration {
	next := d.cfg.Resync
	for _, dr := range d.drivers {
		next = min(next, d.runDriver(ctx, env, dr))
	}
	return next
}

// runDriver converges dr when it applies to this node, stops it when it
// applied before and no longer does, and returns when to come back. Converge
// and Stop of one driver never overlap.
func (d *Daemon) runDriver(ctx context.Context, env *driver.Env, dr driver.Driver) time.Duration {
	next := d.cfg.Resync
	name := dr.Name()
	mu := d.loop.driverMu[name]
	mu.Lock()
	defer mu.Unlock()
	if d.leaving.Load() {
		return next
	}
	denv := d.envFor(env, dr)
	d.loop.mu.Lock()
	active := d.loop.active[name]
	d.loop.mu.Unlock()
	if !dr.AppliesTo(denv, env.Local) {
		if active {
			d.log.Info("role no longer applies to this node: stopping it", "role", name)
			if err := dr.Stop(ctx); err != nil {
				d.log.Warn("stop role", "role", name, "error", err)
			}
			d.loop.mu.Lock()
			delete(d.loop.active, name)
			delete(d.loop.steps, name)
			d.loop.mu.Unlock()
		}
		// A node whose own record is not read yet (JoinedAt unset: a join
		// still on its way) has not left anything.
		if l, ok := dr.(driver.Leaver); ok && !env.Local.JoinedAt.IsZero() {
			err := l.Left(ctx, denv)
			d.logOnce(name+" leftovers", "remove what this node kept of a role it left", err)
		}
		return next
	}
	if ctx.Err() != nil {
		return next
	}
	d.loop.mu.Lock()
	d.loop.active[name] = true
	d.loop.mu.Unlock()
	var steps []driver.Step
	res, err := dr.Converge(ctx, denv, func(st driver.Step) { steps = append(steps, st) })
	d.loop.mu.Lock()
	d.loop.steps[name] = steps
	d.loop.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		d.logOnce(name, "role did not converge", err)
		next = min(next, retrySoon)
	} else if err == nil {
		d.logOnce(name, "", nil)
	}
	if res.Again > 0 {
		next = min(next, res.Again)
	}
	return next
}

// logOnce logs a driver's error when it changes, and its recovery.
func (d *Daemon) logOnce(key, msg string, err error) {
	d.loop.mu.Lock()
	defer d.loop.mu.Unlock()
	prev := d.loop.lastErr[key]
	switch {
	case err == nil && prev != "":
		d.log.Info("recovered", "what", key)
		delete(d.loop.lastErr, key)
	case err != nil && err.Error() != prev:
		d.log.Warn(msg, "what", key, "error", err)
		d.loop.lastErr[key] = err.Error()
	}
}

// stopDrivers stops every driver that ran on this node, last first.
func (d *Daemon) stopDrivers(ctx context.Context) {
	for i := len(d.drivers) - 1; i >= 0; i-- {
		dr := d.drivers[i]
		mu := d.loop.driverMu[dr.Name()]
		mu.Lock()
		d.loop.mu.Lock()
		active := d.loop.active[dr.Name()]
		delete(d.loop.active, dr.Name())
		d.loop.mu.Unlock()
		if active {
			if err := dr.Stop(ctx); err != nil {
				d.log.Warn("stop role", "role", dr.Name(), "error", err)
			}
		}
		mu.Unlock()
	}
}

// envFor is env with the driver's own directory.
func (d *Daemon) envFor(env *driver.Env, dr driver.Driver) *driver.Env {
	e := *env
	e.Dir = filepath.Join(d.cfg.StateDir, dr.Name())
	return &e
}

// buildEnv reads the cluster as the drivers see it, in one read transaction.
func (d *Daemon) buildEnv(ctx context.Context, s *state.State) (*driver.Env, error) {
	env := &driver.Env{Sup: d.sup, Log: d.log, DB: s.Database, Peers: d.peers, Now: d.cfg.Now, InstalledGiB: d.memory(ctx).InstalledGiB}
	env.IsMember = func(ctx context.Context, name string) (bool, error) {
		found := false
		err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
			ms, err := cluster.GetInternalClusterMembers(ctx, tx)
			for _, m := range ms {
				found = found || m.Name == name
			}
			return err
		})
		return found, err
	}
	env.HasRoleNow = func(ctx context.Context, name string, r roles.Role) (bool, error) {
		has := false
		err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
			row, err := getNode(ctx, tx, name)
			if err != nil || row == nil {
				return err
			}
			has = slices.Contains(toRoles(row.Roles), r)
			return nil
		})
		return has, err
	}
	// microcluster keeps this member's certificate (server.*) and the
	// cluster certificate its API serves (cluster.crt) in the state directory.
	env.TLS = driver.ClusterTLS{CertFile: filepath.Join(d.cfg.StateDir, "server.crt"), KeyFile: filepath.Join(d.cfg.StateDir, "server.key"),
		CAFile: filepath.Join(d.cfg.StateDir, "cluster.crt")}
	var rawPlan, rawManifest string
	var nodes map[string]nodeRow
	var members []cluster.InternalClusterMember
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if rawPlan, err = getConfig(ctx, tx, "plan"); err != nil {
			return err
		}
		if rawManifest, err = getConfig(ctx, tx, "manifest"); err != nil {
			return err
		}
		if nodes, err = getNodes(ctx, tx); err != nil {
			return err
		}
		if members, err = cluster.GetInternalClusterMembers(ctx, tx); err != nil {
			return fmt.Errorf("read members: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if rawPlan != "" {
		if err := json.Unmarshal([]byte(rawPlan), &env.Plan); err != nil {
			return nil, fmt.Errorf("stored plan: %w", err)
		}
	}
	if env.Manifest, err = d.manifests.get(rawManifest); err != nil {
		return nil, err
	}
	addrs := map[string]string{}
	for _, m := range members {
		addrs[m.Name] = m.Address
		row, ok := nodes[m.Name]
		host, _, _ := net.SplitHostPort(m.Address)
		n := driver.Node{Name: m.Name, Address: m.Address, IP: host}
		if ok {
			n.Roles, n.JoinedAt, n.Disks = toRoles(row.Roles), row.JoinedAt, row.Plan.Disks
		}
		env.Nodes = append(env.Nodes, n)
	}
	sortNodes(env.Nodes)
	d.peers.setAddresses(addrs)
	local, ok := env.Node(s.Name())
	if !ok {
		host, _, _ := net.SplitHostPort(s.Address().URL.Host)
		local = driver.Node{Name: s.Name(), Address: s.Address().URL.Host, IP: host}
	}
	env.Local = local
	for _, dr := range d.drivers {
		if f, ok := dr.(driver.Frontender); ok {
			env.Frontends = append(env.Frontends, f.Frontends(env)...)
		}
	}
	return env, nil
}

// sortNodes orders members oldest first, then by name.
func sortNodes(ns []driver.Node) {
	for i := 1; i < len(ns); i++ {
		for j := i; j > 0 && nodeBefore(ns[j], ns[j-1]); j-- {
			ns[j], ns[j-1] = ns[j-1], ns[j]
		}
	}
}

func nodeBefore(a, b driver.Node) bool {
	if !a.JoinedAt.Equal(b.JoinedAt) {
		return a.JoinedAt.Before(b.JoinedAt)
	}
	return a.Name < b.Name
}

// manifestCache parses the cluster's manifest once per text.
type manifestCache struct {
	mu  sync.Mutex
	raw string
	m   *manifests.Manifest
}

func (c *manifestCache) get(raw string) (*manifests.Manifest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m != nil && c.raw == raw {
		return c.m, nil
	}
	m, err := manifestFrom(raw)
	if err != nil {
		return nil, err
	}
	c.raw, c.m = raw, m
	return m, nil
}

// manifestFrom decodes the effective manifest stored in the cluster database.
func manifestFrom(raw string) (*manifests.Manifest, error) {
	if raw == "" {
		return manifests.Default()
	}
	m, err := manifests.Parse("cluster manifest", []byte(raw))
	if err != nil {
		return nil, fmt.Errorf("stored manifest: %w", err)
	}
	return m, nil
}

// memory reads this machine's RAM once (installed, as the MySQL rule
// compares it, and usable).
func (d *Daemon) memory(ctx context.Context) hwprobe.Memory {
	d.memOnce.Do(func() {
		src, err := hwprobe.OpenMachine()
		if err != nil {
			d.log.Warn("cannot read this machine's memory", "error", err)
			return
		}
		defer src.Close()
		if d.mem, err = hwprobe.ReadMemory(ctx, src); err != nil {
			d.log.Warn("cannot read this machine's memory", "error", err)
		}
	})
	return d.mem
}

// kickMembers asks every other member's reconcile loop to run now (after a
// change of roles or of the plan), and this node's own.
func (d *Daemon) kickMembers(ctx context.Context, s *state.State) {
	d.kick()
	hc, err := d.peers.client()
	if err != nil {
		return
	}
	var members []cluster.InternalClusterMember
	err = s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		members, err = cluster.GetInternalClusterMembers(ctx, tx)
		return err
	})
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for _, m := range members {
		if m.Name == s.Name() {
			continue
		}
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			kctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(kctx, http.MethodPost, "https://"+addr+"/"+PathPrefix+"/reconcile", nil)
			if err != nil {
				return
			}
			if resp, err := hc.Do(req); err == nil {
				resp.Body.Close()
			}
		}(m.Address)
	}
	wg.Wait()
}

// reconcileSteps is what GET /1.0/reconcile answers: each driver's last steps.
func (d *Daemon) reconcileSteps() map[string][]driver.Step {
	d.loop.mu.Lock()
	defer d.loop.mu.Unlock()
	out := map[string][]driver.Step{}
	for k, v := range d.loop.steps {
		out[k] = append([]driver.Step(nil), v...)
	}
	return out
}
