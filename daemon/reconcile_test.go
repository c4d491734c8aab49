package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// fakeDriver records what the loop asked of it.
type fakeDriver struct {
	name   string
	role   roles.Role
	again  time.Duration
	err    error
	guard  error
	status api.Layer

	mu        sync.Mutex
	converged int
	stopped   int
	dirs      []string
}

func (f *fakeDriver) Name() string { return f.name }
func (f *fakeDriver) AppliesTo(env *driver.Env, n driver.Node) bool {
	return n.Has(f.role)
}
func (f *fakeDriver) Schema() []driver.SchemaUpdate { return nil }
func (f *fakeDriver) Endpoints() []driver.Endpoint  { return nil }
func (f *fakeDriver) Converge(ctx context.Context, env *driver.Env, step func(driver.Step)) (driver.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.converged++
	f.dirs = append(f.dirs, env.Dir)
	step(driver.Step{Name: "work", State: "done"})
	return driver.Result{Again: f.again}, f.err
}
func (f *fakeDriver) Status(ctx context.Context, env *driver.Env) api.Layer { return f.status }
func (f *fakeDriver) Guard(ctx context.Context, env *driver.Env, ch driver.Change) error {
	return f.guard
}
func (f *fakeDriver) Ports(env *driver.Env, n driver.Node) []driver.Port { return nil }
func (f *fakeDriver) Stop(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped++
	return nil
}

func (f *fakeDriver) counts() (int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.converged, f.stopped
}

func testDaemon(t *testing.T, drivers ...driver.Driver) *Daemon {
	t.Helper()
	d, err := New(Config{StateDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Drivers: drivers, Resync: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func envWith(local string, nodes ...driver.Node) *driver.Env {
	env := &driver.Env{Nodes: nodes, Now: time.Now}
	for _, n := range nodes {
		if n.Name == local {
			env.Local = n
		}
	}
	return env
}

func TestRunDriversConvergesOnlyWhatApplies(t *testing.T) {
	ctl := &fakeDriver{name: "control", role: roles.Control, again: 2 * time.Second}
	sto := &fakeDriver{name: "storage", role: roles.Storage, again: time.Second}
	d := testDaemon(t, ctl, sto)
	env := envWith("a", driver.Node{Name: "a", Roles: []roles.Role{roles.Control}})
	next := d.runDrivers(t.Context(), env)
	if c, s := ctl.counts(); c != 1 || s != 0 {
		t.Fatalf("control converged %d, stopped %d; want 1, 0", c, s)
	}
	if c, s := sto.counts(); c != 0 || s != 0 {
		t.Fatalf("storage runs on a node without the role: converged %d, stopped %d", c, s)
	}
	if next != 2*time.Second {
		t.Fatalf("next round in %s, want the driver's 2s", next)
	}
	if ctl.dirs[0] != d.cfg.StateDir+"/control" {
		t.Fatalf("driver dir %q", ctl.dirs[0])
	}
	if got := d.reconcileSteps()["control"]; len(got) != 1 || got[0].Name != "work" {
		t.Fatalf("steps %+v", got)
	}
}

func TestRunDriversStopsARoleThatLeft(t *testing.T) {
	ctl := &fakeDriver{name: "control", role: roles.Control}
	d := testDaemon(t, ctl)
	with := envWith("a", driver.Node{Name: "a", Roles: []roles.Role{roles.Control}})
	without := envWith("a", driver.Node{Name: "a", Roles: []roles.Role{roles.Compute}})
	d.runDrivers(t.Context(), with)
	d.runDrivers(t.Context(), without)
	d.runDrivers(t.Context(), without)
	if c, s := ctl.counts(); c != 1 || s != 1 {
		t.Fatalf("converged %d, stopped %d; want 1 and exactly 1 stop", c, s)
	}
	if _, ok := d.reconcileSteps()["control"]; ok {
		t.Fatal("a stopped driver's steps are still reported")
	}
	// Settled drivers and none: the loop waits for a kick or the resync.
	if next := d.runDrivers(t.Context(), without); next != time.Minute {
		t.Fatalf("a node with nothing to do comes back in %s, want the resync", next)
	}
}

// leavingDriver is a fakeDriver that removes leftovers when its role is gone.
type leavingDriver struct {
	*fakeDriver
	left int
}

func (l *leavingDriver) Left(ctx context.Context, env *driver.Env) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.left++
	return nil
}

// A Leaver is told, in each round, that its role does not apply here, once
// the node's own record is read; never while the role applies.
func TestRunDriversLeftovers(t *testing.T) {
	ctl := &leavingDriver{fakeDriver: &fakeDriver{name: "control", role: roles.Control}}
	d := testDaemon(t, ctl)
	joined := time.Unix(1, 0)
	with := envWith("a", driver.Node{Name: "a", Roles: []roles.Role{roles.Control}, JoinedAt: joined})
	without := envWith("a", driver.Node{Name: "a", Roles: []roles.Role{roles.Compute}, JoinedAt: joined})
	joining := envWith("a", driver.Node{Name: "a"})
	d.runDrivers(t.Context(), joining)
	d.runDrivers(t.Context(), with)
	if ctl.left != 0 {
		t.Fatalf("Left called %d times while the node joins or has the role", ctl.left)
	}
	d.runDrivers(t.Context(), without)
	d.runDrivers(t.Context(), without)
	if c, s := ctl.counts(); c != 1 || s != 1 || ctl.left != 2 {
		t.Fatalf("converged %d, stopped %d, left %d; want 1, 1, 2", c, s, ctl.left)
	}
}

func TestRunDriversRetriesSoonOnError(t *testing.T) {
	ctl := &fakeDriver{name: "control", role: roles.Control, err: errors.New("boom")}
	d := testDaemon(t, ctl)
	env := envWith("a", driver.Node{Name: "a", Roles: []roles.Role{roles.Control}})
	if next := d.runDrivers(t.Context(), env); next != retrySoon {
		t.Fatalf("after an error the next round is in %s, want %s", next, retrySoon)
	}
}

func TestStopDriversStopsOnlyActiveOnes(t *testing.T) {
	ctl := &fakeDriver{name: "control", role: roles.Control}
	sto := &fakeDriver{name: "storage", role: roles.Storage}
	d := testDaemon(t, ctl, sto)
	d.runDrivers(t.Context(), envWith("a", driver.Node{Name: "a", Roles: []roles.Role{roles.Control}}))
	d.stopDrivers(t.Context())
	if _, s := ctl.counts(); s != 1 {
		t.Fatalf("control stopped %d times", s)
	}
	if _, s := sto.counts(); s != 0 {
		t.Fatalf("storage never ran but was stopped %d times", s)
	}
}

func TestGuard(t *testing.T) {
	soft := &fakeDriver{name: "control", role: roles.Control, guard: errors.New("only copy")}
	d := testDaemon(t, soft)
	env := envWith("a", driver.Node{Name: "a", Roles: []roles.Role{roles.Control}})
	if err := d.guard(t.Context(), env, driver.Change{Kind: driver.RemoveNode, Node: "a"}); err == nil {
		t.Fatal("a refusal was not passed on")
	}
	if err := d.guard(t.Context(), env, driver.Change{Kind: driver.RemoveNode, Node: "a", Force: true}); err != nil {
		t.Fatalf("force did not override a forceable refusal: %v", err)
	}
	soft.guard = driver.Unforceable{Err: errors.New("never")}
	if err := d.guard(t.Context(), env, driver.Change{Kind: driver.RemoveRole, Node: "a", Role: roles.Control, Force: true}); err == nil {
		t.Fatal("force overrode an unforceable refusal")
	}
}

// TestGuardLeaveRoleFirst: a driver asking a node to give up its role
// first is answered as such only when no other driver refuses (whatever
// their order), so a refusal comes before the role is taken away; --force
// goes ahead.
func TestGuardLeaveRoleFirst(t *testing.T) {
	wait := &fakeDriver{name: "compute", role: roles.Compute, guard: driver.LeaveRoleFirst{Role: roles.Compute, Err: errors.New("instances move first")}}
	refuse := &fakeDriver{name: "storage", role: roles.Storage, guard: errors.New("would lose data")}
	d := testDaemon(t, wait, refuse)
	env := envWith("a", driver.Node{Name: "a", Roles: []roles.Role{roles.Compute, roles.Storage}})
	var first driver.LeaveRoleFirst
	err := d.guard(t.Context(), env, driver.Change{Kind: driver.RemoveNode, Node: "a"})
	if errors.As(err, &first) || err == nil || !strings.Contains(err.Error(), "would lose data") {
		t.Fatalf("a later refusal must win over LeaveRoleFirst: %#v", err)
	}
	refuse.guard = nil
	if err := d.guard(t.Context(), env, driver.Change{Kind: driver.RemoveNode, Node: "a"}); !errors.As(err, &first) || first.Role != roles.Compute {
		t.Fatalf("want LeaveRoleFirst(compute), got %#v", err)
	}
	if err := d.guard(t.Context(), env, driver.Change{Kind: driver.RemoveNode, Node: "a", Force: true}); err != nil {
		t.Fatalf("--force: %v", err)
	}
}

func TestRoleLayers(t *testing.T) {
	ctl := &fakeDriver{name: "control", role: roles.Control, status: api.Layer{Name: "control", Built: true, HA: api.HANo}}
	d := testDaemon(t, ctl)
	env := envWith("a", driver.Node{Name: "a", Roles: []roles.Role{roles.Compute}}, driver.Node{Name: "b", Roles: []roles.Role{roles.Storage}})
	ls := d.roleLayers(t.Context(), env)
	// No control node: no control layer. Storage and compute are recorded
	// but have no driver here: status says so.
	if len(ls) != 2 || ls[0].Name != "compute" || ls[1].Name != "storage" || ls[0].Built || ls[1].Built {
		t.Fatalf("layers %+v", ls)
	}
	env = envWith("a", driver.Node{Name: "a", Roles: []roles.Role{roles.Control}})
	if ls := d.roleLayers(t.Context(), env); len(ls) != 1 || ls[0].Name != "control" || !ls[0].Built {
		t.Fatalf("layers %+v", ls)
	}
}

func TestNewRefusesDuplicateDrivers(t *testing.T) {
	if _, err := New(Config{StateDir: t.TempDir(), Drivers: []driver.Driver{&fakeDriver{name: "x"}, &fakeDriver{name: "x"}}}); err == nil {
		t.Fatal("two drivers with one name were accepted")
	}
}
