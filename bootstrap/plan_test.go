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
	intents    int
}

func (f *fakeDaemon) Info(context.Context) (client.Info, error) { return f.info, nil }
func (f *fakeDaemon) Bootstrap(_ context.Context, name, addr string, ni api.NodeInit) error {
	f.bootstraps = append(f.bootstraps, ni)
	return nil
}
func (f *fakeDaemon) JoinIntent(context.Context, string, api.JoinToken, api.NodeInit) error {
	f.intents++
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
	_, err := ApplyJoin(context.Background(), f, p, client.Joiner{Token: jt}, time.Now)
	if err == nil || !strings.Contains(err.Error(), `issued for a node named "node2"`) || f.joins+f.intents != 0 {
		t.Fatalf("wrong-name join: %v (joins %d, intents %d)", err, f.joins, f.intents)
	}
	p.Name = "node2"
	jt.ExpiresAt = time.Now().Add(-time.Minute)
	_, err = ApplyJoin(context.Background(), f, p, client.Joiner{Token: jt}, time.Now)
	if err == nil || !strings.Contains(err.Error(), "expired") || f.joins+f.intents != 0 {
		t.Fatalf("expired join: %v", err)
	}
	f.info.Initialized = true
	_, err = ApplyJoin(context.Background(), f, p, client.Joiner{Token: jt}, time.Now)
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

func TestApplySendsDisksAndSiteSettings(t *testing.T) {
	f := &fakeDaemon{}
	p := good()
	p.Disks = []api.DiskChoice{{Path: "/dev/sdb"}, {Path: "/dev/sdd", Wipe: true}}
	p.MySQLTopology, p.MySQLTopologyReason = "multi", "64 GiB installed RAM"
	p.FloatingAddress = "10.0.0.100"
	p.Cluster = "lab"
	if _, err := Apply(context.Background(), f, p, time.Now); err != nil {
		t.Fatal(err)
	}
	ni := f.bootstraps[0]
	if len(ni.Disks) != 2 || !ni.Disks[1].Wipe || ni.Plan.MySQLTopology != "multi" || ni.Plan.MySQLTopologyReason != "64 GiB installed RAM" ||
		ni.Plan.FloatingAddress != "10.0.0.100" || ni.Plan.Cluster != "lab" || ni.Plan.Bootstrap != "node1" || ni.Plan.Version != 1 {
		t.Fatalf("node init: %+v plan %+v", ni, ni.Plan)
	}
	// Not chosen by the user: decided here all the same, once, and carried
	// in the plan with the manifest it was decided with.
	p.MySQLTopologyAuto = true
	p.Manifest = "mysql:\n  multi_threshold_gib: 1\n"
	if _, err := Apply(context.Background(), f, p, time.Now); err != nil {
		t.Fatal(err)
	}
	if ni := f.bootstraps[1]; ni.Plan.MySQLTopology != "multi" || ni.Plan.MySQLTopologyReason == "" || ni.Manifest != p.Manifest {
		t.Fatalf("auto topology sent as %q (%q), manifest %q", ni.Plan.MySQLTopology, ni.Plan.MySQLTopologyReason, ni.Manifest)
	}
	p.MySQLTopologyAuto = false
	p.MySQLTopology = "huge"
	if _, err := Apply(context.Background(), f, p, time.Now); err == nil || len(f.bootstraps) != 2 {
		t.Fatalf("invalid topology applied: %v", err)
	}
}

func TestCheckAgainstFacts(t *testing.T) {
	f := testFacts()
	ok := Plan{Name: "node1", Address: "10.0.0.1:7443", Roles: roles.All, Disks: []api.DiskChoice{{Path: "/dev/sdb"}}, FloatingAddress: "10.0.0.100"}
	if ps := ok.Check(f, false); len(ps) != 0 {
		t.Fatalf("good plan: %v", ps)
	}
	cases := map[string]struct {
		mod     func(*Plan)
		join    bool
		field   string
		want    string
		warning bool
	}{
		"address elsewhere":    {mod: func(p *Plan) { p.Address = "10.0.0.2:7443" }, field: "address", want: "not on this machine (its addresses: 10.0.0.1, 192.168.5.10)"},
		"missing disk":         {mod: func(p *Plan) { p.Disks = []api.DiskChoice{{Path: "/dev/sdz"}} }, field: "disk:/dev/sdz", want: "does not exist"},
		"system disk":          {mod: func(p *Plan) { p.Disks = []api.DiskChoice{{Path: "/dev/sda"}} }, field: "disk:/dev/sda", want: "in use: sda2 mounted at /"},
		"loop disk":            {mod: func(p *Plan) { p.Disks = []api.DiskChoice{{Path: "/dev/loop0"}} }, field: "disk:/dev/loop0", want: "loop device"},
		"wipe without consent": {mod: func(p *Plan) { p.Disks = []api.DiskChoice{{Path: "/dev/sdd"}} }, field: "disk:/dev/sdd", want: "consent to erase it"},
		"wipe with consent":    {mod: func(p *Plan) { p.Disks = []api.DiskChoice{{Path: "/dev/sdd", Wipe: true}} }, field: "disk:/dev/sdd", want: "will be wiped", warning: true},
		"alias":                {mod: func(p *Plan) { p.Disks = []api.DiskChoice{{Path: "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4"}} }, field: "disk:/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", want: "signature (gpt)"},
		"storage no disks":     {mod: func(p *Plan) { p.Disks = nil }, field: "disks", want: "no OSD disk", warning: true},
		"disks no storage":     {mod: func(p *Plan) { p.Roles = []roles.Role{roles.Control} }, field: "disks", want: "no storage role"},
		"floating local":       {mod: func(p *Plan) { p.FloatingAddress = "192.168.5.10" }, field: "floating_address", want: "already in use on this machine"},
		"floating own":         {mod: func(p *Plan) { p.FloatingAddress = "10.0.0.1" }, field: "floating_address", want: "this node's own address"},
		"floating elsewhere":   {mod: func(p *Plan) { p.FloatingAddress = "172.16.0.1" }, field: "floating_address", want: "not on the network", warning: true},
		"bad label":            {mod: func(p *Plan) { p.Zone = "a b" }, field: "zone", want: "invalid zone label"},
	}
	for name, c := range cases {
		p := ok
		c.mod(&p)
		ps := p.Check(f, c.join)
		if len(ps) != 1 || ps[0].Field != c.field || !strings.Contains(ps[0].Message, c.want) || ps[0].Warning != c.warning {
			t.Errorf("%s: problems %+v, want one %q at %s (warning %v)", name, ps, c.want, c.field, c.warning)
		}
	}
	// A joining node's floating address is the cluster's business.
	p := ok
	p.FloatingAddress = "192.168.5.10"
	if ps := p.Check(f, true); len(ps) != 0 {
		t.Fatalf("join checked site settings: %v", ps)
	}
	// Hardware below a role's minimum is an error at that role.
	ps := Plan{Name: "node1", Address: "10.0.0.1:7443", Roles: []roles.Role{roles.Control}}.Check(smallFacts(), false)
	if len(ps.Errors()) != 2 || ps.Errors()[0].Field != "role:control" {
		t.Fatalf("small machine: %+v", ps)
	}
}

func TestCheckRBDAbsent(t *testing.T) {
	f := testFacts()
	p := Plan{Name: "node2", Address: "10.0.0.1:7443", Roles: []roles.Role{roles.Compute}}
	if ps := p.Check(f, true); len(ps) != 0 {
		t.Fatalf("rbd not known absent: %v", ps)
	}
	f.RBDAbsent = true
	ps := p.Check(f, true)
	if len(ps) != 1 || !ps[0].Warning || ps[0].Field != "role:compute" || !strings.Contains(ps[0].Message, "volumes on it need the rbd kernel module") || !strings.Contains(ps[0].Message, "absent on node2") {
		t.Fatalf("rbd absent: %+v", ps)
	}
	p.Roles = []roles.Role{roles.Control}
	if ps := p.Check(f, true); len(ps) != 0 {
		t.Fatalf("no compute role: %v", ps)
	}
}
