package control

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

func floatingEnv(t *testing.T, controls int, floating string) *driver.Env {
	t.Helper()
	env := &driver.Env{Manifest: manifest(t), Plan: api.Plan{MySQLTopology: Single, FloatingAddress: floating}}
	for i := 1; i <= 3; i++ {
		n := driver.Node{Name: "node" + string(rune('0'+i)), IP: "10.9.0." + string(rune('0'+i)), Address: "10.9.0." + string(rune('0'+i)) + ":7443", JoinedAt: at(i)}
		if i <= controls {
			n.Roles = []roles.Role{roles.Control}
		}
		env.Nodes = append(env.Nodes, n)
	}
	env.Local = env.Nodes[0]
	env.Frontends = New().Frontends(env)
	return env
}

func floatingDBs() api.Databases {
	return api.Databases{Topology: Single, Instances: []api.DBInstance{{Name: "mysql", Port: 3306}},
		Services: []api.DBService{{Service: "identity", Instance: "mysql", Endpoints: []string{"10.9.0.1:3306"}}, {Service: "image", Instance: "mysql", Endpoints: []string{"10.9.0.1:3306"}}}}
}

// TestFloatingEndpoint: database list and credentials name the floating
// address and the frontend's port once the address answers there; with one
// control node, no address or nobody holding it they keep the members'
// addresses and say why.
func TestFloatingEndpoint(t *testing.T) {
	var dialed []string
	d := New()
	d.dial = func(ctx context.Context, addr string) error {
		dialed = append(dialed, addr)
		return nil
	}
	dbs := floatingDBs()
	d.floating(context.Background(), floatingEnv(t, 3, "10.9.0.100/24"), &dbs)
	if dbs.Services[0].Floating != "10.9.0.100:3306" || dbs.Services[1].Floating != "10.9.0.100:3306" || dbs.EndpointNote != "" {
		t.Fatalf("held floating endpoint: %+v", dbs)
	}
	if len(dialed) != 1 || dialed[0] != "10.9.0.100:3306" {
		t.Fatalf("dialed %v", dialed)
	}

	// The only control node holds the address alone: clients get it, with
	// a note that it is not highly available.
	dbs = floatingDBs()
	d.floating(context.Background(), floatingEnv(t, 1, "10.9.0.100"), &dbs)
	if dbs.Services[0].Floating != "10.9.0.100:3306" || dbs.EndpointNote != "one control node holds the floating address 10.9.0.100: the database endpoint is not highly available until a second control node joins" {
		t.Fatalf("one control node: floating %q, note %q", dbs.Services[0].Floating, dbs.EndpointNote)
	}

	for name, c := range map[string]struct {
		controls int
		floating string
		dial     error
		note     string
	}{
		"no address":       {controls: 3, note: "the plan has no floating address: clients use the members' own addresses, and the database endpoint is not highly available"},
		"ipv6 in the plan": {controls: 3, floating: "fd00::100", note: "only IPv4 floating addresses are supported"},
		"nobody holds it":  {controls: 3, floating: "10.9.0.100", dial: errors.New("no route to host"), note: "the floating address 10.9.0.100 does not answer on port 3306 (no control node holds it yet)"},
	} {
		d.dial = func(ctx context.Context, addr string) error { return c.dial }
		dbs := floatingDBs()
		d.floating(context.Background(), floatingEnv(t, c.controls, c.floating), &dbs)
		if dbs.Services[0].Floating != "" || !strings.Contains(dbs.EndpointNote, c.note) {
			t.Errorf("%s: floating %q, note %q; want none and a note with %q", name, dbs.Services[0].Floating, dbs.EndpointNote, c.note)
		}
	}
}

// The control role's frontends carry the writable check of each member.
func TestFrontendsCheckWritable(t *testing.T) {
	env := floatingEnv(t, 3, "10.9.0.100")
	fs := New().Frontends(env)
	if len(fs) != 1 || len(fs[0].Backends) != 3 {
		t.Fatalf("frontends %+v", fs)
	}
	for i, be := range fs[0].Backends {
		want := driver.HTTPCheck{Addr: env.Nodes[i].Address, Path: "/1.0/control/instances/mysql/writable"}
		if be.Check == nil || *be.Check != want {
			t.Errorf("backend %s check %+v, want %+v", be.Node, be.Check, want)
		}
	}
}

// TestWritableVerdict: HAProxy sends writes only to a Synced, ready member
// of the Primary component.
func TestWritableVerdict(t *testing.T) {
	synced := map[string]string{"wsrep_cluster_status": "Primary", "wsrep_local_state": "4", "wsrep_local_state_comment": "Synced", "wsrep_ready": "ON"}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range synced {
			m[a] = b
		}
		m[k] = v
		return m
	}
	for name, c := range map[string]struct {
		galera bool
		vars   map[string]string
		ok     bool
		reason string
	}{
		"synced":       {galera: true, vars: synced, ok: true},
		"standalone":   {galera: false, vars: nil, ok: true, reason: "standalone"},
		"donor":        {galera: true, vars: with("wsrep_local_state", "2"), reason: "not Synced (wsrep_local_state 2"},
		"joining":      {galera: true, vars: with("wsrep_local_state", "1"), reason: "not Synced"},
		"joined":       {galera: true, vars: with("wsrep_local_state", "3"), reason: "not Synced"},
		"not ready":    {galera: true, vars: with("wsrep_ready", "OFF"), reason: "not ready (wsrep_ready OFF)"},
		"non-primary":  {galera: true, vars: with("wsrep_cluster_status", "non-Primary"), reason: "not in the Primary component"},
		"no variables": {galera: true, vars: map[string]string{}, reason: "wsrep_cluster_status unknown"},
	} {
		ok, reason := WritableVerdict(c.galera, c.vars)
		if ok != c.ok || !strings.Contains(reason, c.reason) {
			t.Errorf("%s: %v %q, want %v %q", name, ok, reason, c.ok, c.reason)
		}
	}
}

// The writable endpoint answers 503 for an instance this node does not host.
func TestWritableNotHosted(t *testing.T) {
	d := New()
	d.writers.set(hostedInstances(t.TempDir(), Desired{Host: true, Instances: []Instance{{Name: "mysql"}}}))
	_, err := d.handleWritable(context.Background(), &driver.Env{}, driver.Request{Vars: map[string]string{"name": "mysql-other"}})
	if driver.StatusCode(err) != 503 || !strings.Contains(err.Error(), "hosts no copy of mysql-other") {
		t.Fatalf("not hosted: %v", err)
	}
	// A hosted instance whose server does not answer: 503 too.
	_, err = d.handleWritable(context.Background(), &driver.Env{}, driver.Request{Vars: map[string]string{"name": "mysql"}})
	if driver.StatusCode(err) != 503 {
		t.Fatalf("silent server: %v", err)
	}
	d.writers.close()
}
