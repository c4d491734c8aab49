package bootstrap

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/roles"
)

// fakeDaemon records calls; it stands in for cloudd in logic tests only.
type fakeDaemon struct {
	info       client.Info
	bootstraps []api.NodeInit
	joins      int
}

func (f *fakeDaemon) Info(context.Context) (client.Info, error) { return f.info, nil }
func (f *fakeDaemon) Bootstrap(_ context.Context, name, addr string, ni api.NodeInit) error {
	f.bootstraps = append(f.bootstraps, ni)
	return nil
}
func (f *fakeDaemon) Join(context.Context, string, string, api.JoinToken, api.NodeInit) error {
	f.joins++
	return nil
}

func good() Plan {
	return Plan{Name: "node1", Address: "10.0.0.1:7443", Roles: []roles.Role{roles.Control, roles.Storage}}
}

func TestValidate(t *testing.T) {
	cases := map[string]struct {
		mod  func(*Plan)
		want string
	}{
		"ok":             {mod: func(*Plan) {}},
		"bad name":       {mod: func(p *Plan) { p.Name = "Node_1" }, want: "invalid node name"},
		"empty name":     {mod: func(p *Plan) { p.Name = "" }, want: "invalid node name"},
		"no port":        {mod: func(p *Plan) { p.Address = "10.0.0.1" }, want: "use host:port"},
		"hostname":       {mod: func(p *Plan) { p.Address = "db.example:7443" }, want: "not an IP address"},
		"port range":     {mod: func(p *Plan) { p.Address = "10.0.0.1:70000" }, want: "port must be"},
		"loopback":       {mod: func(p *Plan) { p.Address = "127.0.0.1:7443" }, want: "loopback"},
		"no roles":       {mod: func(p *Plan) { p.Roles = nil }, want: "no role chosen"},
		"unknown role":   {mod: func(p *Plan) { p.Roles = []roles.Role{"gpu"} }, want: `unknown role "gpu"`},
		"unspecified ip": {mod: func(p *Plan) { p.Address = "0.0.0.0:7443" }, want: "unspecified"},
	}
	for name, c := range cases {
		p := good()
		c.mod(&p)
		err := p.Validate()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: Validate() = %v, want %q", name, err, c.want)
		}
	}
}

func TestApplyBootstrapsOnce(t *testing.T) {
	f := &fakeDaemon{}
	res, err := Apply(context.Background(), f, good(), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.bootstraps) != 1 || strings.Join(f.bootstraps[0].Roles, ",") != "control,storage" || f.bootstraps[0].Plan == nil || !res.Bootstrap {
		t.Fatalf("bootstrap call: %+v, result %+v", f.bootstraps, res)
	}
	f.info = client.Info{Name: "node1", Address: "10.0.0.1:7443", Initialized: true}
	_, err = Apply(context.Background(), f, good(), time.Now)
	if !errors.Is(err, ErrAlreadyMember) || !strings.Contains(err.Error(), "already bootstrapped") {
		t.Fatalf("second bootstrap: %v", err)
	}
	if len(f.bootstraps) != 1 {
		t.Fatal("second bootstrap reached the daemon")
	}
}

func TestApplyInvalidPlanTouchesNothing(t *testing.T) {
	f := &fakeDaemon{}
	p := good()
	p.Roles = nil
	if _, err := Apply(context.Background(), f, p, time.Now); err == nil || len(f.bootstraps) != 0 {
		t.Fatalf("invalid plan applied: %v", err)
	}
}

func TestApplyJoinRefusesWithoutContactingCluster(t *testing.T) {
	f := &fakeDaemon{}
	jt := api.JoinToken{Name: "node2", Secret: "s", Fingerprint: "f", Addresses: []string{"10.0.0.1:7443"}, ExpiresAt: time.Now().Add(time.Hour)}
	p := good()
	p.Name = "node3"
	_, err := ApplyJoin(context.Background(), f, p, jt, time.Now)
	if err == nil || !strings.Contains(err.Error(), `issued for a node named "node2"`) || f.joins != 0 {
		t.Fatalf("wrong-name join: %v (joins %d)", err, f.joins)
	}
	p.Name = "node2"
	jt.ExpiresAt = time.Now().Add(-time.Minute)
	_, err = ApplyJoin(context.Background(), f, p, jt, time.Now)
	if err == nil || !strings.Contains(err.Error(), "expired") || f.joins != 0 {
		t.Fatalf("expired join: %v", err)
	}
	f.info.Initialized = true
	_, err = ApplyJoin(context.Background(), f, p, jt, time.Now)
	if !errors.Is(err, ErrAlreadyMember) {
		t.Fatalf("member join: %v", err)
	}
}

func TestWithPortAndRoute(t *testing.T) {
	if WithPort("10.0.0.1") != "10.0.0.1:7443" || WithPort("10.0.0.1:9") != "10.0.0.1:9" || WithPort("fd00::1") != "[fd00::1]:7443" {
		t.Fatal("WithPort")
	}
	if defaultRouteInterface("testdata/route") != "ens3" {
		t.Fatalf("default route interface = %q", defaultRouteInterface("testdata/route"))
	}
}
