package compute

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	lxd "github.com/canonical/lxd/client"
	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/roles/driver"
)

func inst(name, loc, uuid string, code lxdapi.StatusCode) lxdapi.Instance {
	return lxdapi.Instance{Name: name, Location: loc, StatusCode: code, Config: map[string]string{"volatile.uuid": uuid}}
}

// TestHalfMoved: a copy left under LXD's temporary name gets the name it
// had back when that name is free; others are left alone.
func TestHalfMoved(t *testing.T) {
	before := []lxdapi.Instance{
		inst("web", "node3", "u1", lxdapi.Running),
		inst("db", "node3", "u2", lxdapi.Stopped),
		inst("other", "node2", "u3", lxdapi.Running),
	}
	known := movesOf(before, "node3")
	if len(known) != 2 || known["u1"] != (moved{Name: "web", Running: true}) || known["u2"] != (moved{Name: "db"}) {
		t.Fatalf("movesOf: %+v", known)
	}
	after := []lxdapi.Instance{
		inst(movePrefix+"u1", "node2", "u1", lxdapi.Stopped), // web: the rename back failed
		inst("db", "node1", "u2", lxdapi.Stopped),            // db: moved whole
		inst(movePrefix+"u9", "node2", "u9", lxdapi.Running), // not ours
		inst("other", "node2", "u3", lxdapi.Running),
	}
	got := halfMoved(after, known)
	if len(got) != 1 || got[0] != (repair{Temp: movePrefix + "u1", Name: "web", Start: true}) {
		t.Fatalf("halfMoved: %+v", got)
	}
	// A copy that runs is stopped first; a name taken since is not reused.
	after[0].StatusCode = lxdapi.Running
	if got := halfMoved(after, known); len(got) != 1 || !got[0].Stop {
		t.Fatalf("running copy: %+v", got)
	}
	after = append(after, inst("web", "node1", "u7", lxdapi.Running))
	if got := halfMoved(after, known); len(got) != 0 {
		t.Fatalf("name taken: %+v", got)
	}
	// A temporary copy is never recorded as an instance of its own.
	if m := movesOf([]lxdapi.Instance{inst(movePrefix+"u1", "node3", "u1", lxdapi.Stopped)}, "node3"); len(m) != 0 {
		t.Fatalf("movesOf a temporary copy: %+v", m)
	}
}

// TestSettling: a leaving node waits for the other LXD members to be online
// for at most settleWait, then moves its instances anyway.
func TestSettling(t *testing.T) {
	ms := []lxdapi.ClusterMember{{ServerName: "node1", Status: "Online"}, {ServerName: "node2", Status: "Offline"}, {ServerName: "node3", Status: "Online"}}
	ok, off := othersOnline(ms, "node3")
	if ok || len(off) != 1 || off[0] != "node2 (Offline)" {
		t.Fatalf("othersOnline: %v %v", ok, off)
	}
	if ok, _ := othersOnline(ms, "node2"); !ok {
		t.Fatal("the leaving member itself counted")
	}
	d := &Driver{}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if !d.settling(t0, false) || !d.settling(t0.Add(settleWait-time.Second), false) {
		t.Fatal("should wait within settleWait")
	}
	if d.settling(t0.Add(settleWait), false) {
		t.Fatal("should go ahead after settleWait")
	}
	if d.settling(t0.Add(settleWait), true) {
		t.Fatal("all online: no wait")
	}
	if !d.settling(t0.Add(time.Hour), false) {
		t.Fatal("a new wait after the members were all online")
	}
}

// memberLXD answers GetClusterMember with a status and fails the test on a
// state change (a restore).
type memberLXD struct {
	lxd.InstanceServer
	t      *testing.T
	status string
}

func (m memberLXD) GetClusterMember(name string) (*lxdapi.ClusterMember, string, error) {
	return &lxdapi.ClusterMember{ServerName: name, Status: m.status}, "", nil
}

func (m memberLXD) UpdateClusterMemberState(name string, _ lxdapi.ClusterMemberStatePost) (lxd.Operation, error) {
	m.t.Fatalf("%s restored", name)
	return nil, nil
}

// TestRestoreOnlyMarked: a member evacuated without the driver's mark (a
// person's maintenance) is left evacuated; a stale mark on a member that
// is online is dropped, and nothing is restored.
func TestRestoreOnlyMarked(t *testing.T) {
	dir := t.TempDir()
	p := pathsIn(dir)
	env := &driver.Env{Dir: dir, Log: slog.Default(), Local: driver.Node{Name: "node2"}}
	step := func(driver.Step) {}
	d := &Driver{}
	if err := d.restore(context.Background(), env, memberLXD{t: t, status: "Evacuated"}, p, step); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.evacuated, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.restore(context.Background(), env, memberLXD{t: t, status: "Online"}, p, step); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.evacuated); !os.IsNotExist(err) {
		t.Fatalf("stale mark kept: %v", err)
	}
}
