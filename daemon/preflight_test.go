package daemon

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// portDriver is a fake role that needs a peer port and a client port.
type portDriver struct{ fakeDriver }

func (p *portDriver) Ports(env *driver.Env, n driver.Node) []driver.Port {
	if !n.Has(p.role) {
		return nil
	}
	return []driver.Port{{Number: 4567, Proto: "tcp", Purpose: "replication", Peers: true}, {Number: 3306, Proto: "tcp", Purpose: "clients"}}
}

func TestPreflightPorts(t *testing.T) {
	ctl := &portDriver{fakeDriver{name: "control", role: roles.Control}}
	cmp := &fakeDriver{name: "compute", role: roles.Compute}
	d, err := New(Config{StateDir: t.TempDir(), Drivers: []driver.Driver{ctl, cmp}})
	if err != nil {
		t.Fatal(err)
	}
	a := driver.Node{Name: "a", Address: "10.0.0.1:7443", IP: "10.0.0.1", Roles: []roles.Role{roles.Control}}
	b := driver.Node{Name: "b", Address: "10.0.0.2:7443", IP: "10.0.0.2", Roles: []roles.Role{roles.Control, roles.Compute}}
	c := driver.Node{Name: "c", Address: "10.0.0.3:8443", IP: "10.0.0.3", Roles: []roles.Role{roles.Compute}}
	env := &driver.Env{Nodes: []driver.Node{a, b, c}}

	got := d.portsOf(env, b)
	if len(got) != 3 || got[0].Port != 7443 || got[0].Role != "cloudd" || got[1].Port != 4567 || got[1].Role != "control" || got[2].Port != 3306 {
		t.Fatalf("ports of b: %+v", got)
	}
	// a and b share the control role: its peer port, not its client port.
	if u := d.usedBy(env, a, b); len(u) != 2 || u[1].Port != 4567 {
		t.Fatalf("a uses on b: %+v", u)
	}
	// c shares no role with a: only cloudd's port (c's own).
	if u := d.usedBy(env, a, c); len(u) != 1 || u[0].Port != 8443 {
		t.Fatalf("a uses on c: %+v", u)
	}
	if after := withNode(env, driver.Node{Name: "d"}); len(after.Nodes) != 4 || len(env.Nodes) != 3 {
		t.Fatal("withNode must not change env")
	}
}

func TestTestClock(t *testing.T) {
	now, err := TestClock("-30s")
	if err != nil {
		t.Fatal(err)
	}
	if off := time.Until(now()); off > -29*time.Second || off < -31*time.Second {
		t.Fatalf("offset %s", off)
	}
	if _, err := TestClock("soon"); err == nil {
		t.Fatal("a bad offset is refused")
	}
	file := filepath.Join(t.TempDir(), "offset")
	now, err = TestClock("@" + file)
	if err != nil {
		t.Fatal(err)
	}
	if off := time.Until(now()); off > time.Second || off < -time.Second {
		t.Fatalf("no file: offset %s", off)
	}
	if err := os.WriteFile(file, []byte("10s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if off := time.Until(now()); off < 9*time.Second {
		t.Fatalf("file says 10s: offset %s", off)
	}
	if err := os.WriteFile(file, []byte("1h\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if off := time.Until(now()); off < 59*time.Minute {
		t.Fatalf("file says 1h: offset %s", off)
	}
}
