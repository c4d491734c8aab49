package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// retrySoon is how soon the loop tries again after it could not read the
// cluster state or a driver failed.
const retrySoon = 2 * time.Second

// loopState is the reconcile loop's own state.
type loopState struct {
	kick chan struct{}

	mu sync.Mutex
	// active are the drivers that converged on this node and not stopped since.
	active map[string]bool
	// lastErr is each driver's last error text, so a repeated error is
	// logged once.
	lastErr map[string]string
	// steps are each driver's last progress reports.
	steps map[string][]driver.Step
}

func (l *loopState) init() {
	l.kick = make(chan struct{}, 1)
	l.active, l.lastErr, l.steps = map[string]bool{}, map[string]string{}, map[string][]driver.Step{}
}

// kick asks the reconcile loop to run now.
func (d *Daemon) kick() {
	select {
	case d.loop.kick <- struct{}{}:
	default:
	}
}

// reconcileLoop runs the drivers when kicked (membership hooks, role and
// plan changes) and otherwise as soon as a driver asked to come back, or
// after the resync interval: a settled cluster is quiet.
func (d *Daemon) reconcileLoop(ctx context.Context) {
	timer := time.NewTimer(d.cfg.Resync)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.loop.kick:
		}
		next := d.reconcileOnce(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// reconcileOnce runs one round and returns when the next should be.
func (d *Daemon) reconcileOnce(ctx context.Context) time.Duration {
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
	return d.runDrivers(ctx, env)
}

// runDrivers converges every driver that applies to this node, stops those
// that applied before and no longer do, and returns when to come back.
func (d *Daemon) runDrivers(ctx context.Context, env *driver.Env) time.Duration {
	next := d.cfg.Resync
	for _, dr := range d.drivers {
		name := dr.Name()
		d.loop.mu.Lock()
		active := d.loop.active[name]
		d.loop.mu.Unlock()
		if !dr.AppliesTo(env, env.Local) {
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
			continue
		}
		if ctx.Err() != nil {
			return next
		}
		d.loop.mu.Lock()
		d.loop.active[name] = true
		d.loop.mu.Unlock()
		var steps []driver.Step
		res, err := dr.Converge(ctx, d.envFor(env, dr), func(st driver.Step) { steps = append(steps, st) })
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
		d.loop.mu.Lock()
		active := d.loop.active[dr.Name()]
		delete(d.loop.active, dr.Name())
		d.loop.mu.Unlock()
		if !active {
			continue
		}
		if err := dr.Stop(ctx); err != nil {
			d.log.Warn("stop role", "role", dr.Name(), "error", err)
		}
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
