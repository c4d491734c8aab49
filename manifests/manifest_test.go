package manifests

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/internal/golden"
	"github.com/cloudctl/cloudctl/internal/strictyaml"
	"github.com/cloudctl/cloudctl/roles"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func mustDefault(t *testing.T) *Manifest {
	t.Helper()
	m, err := Default()
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	return m
}

func overlay(t *testing.T, src string) *Manifest {
	t.Helper()
	o, err := Parse("site.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse overlay: %v", err)
	}
	m, err := Overlay(mustDefault(t), o)
	if err != nil {
		t.Fatalf("Overlay: %v", err)
	}
	return m
}

func TestDefault(t *testing.T) {
	m := mustDefault(t)
	if err := m.Validate(); err != nil {
		t.Fatalf("default manifest does not validate:\n%v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"version", m.Version, 1},
		{"mysql.multi_threshold_gib", m.MySQL.MultiThresholdGiB, 32},
		{"storage.min_osd_disk_bytes", m.Storage.MinOSDDiskBytes, int64(10 << 30)},
		{"storage.pool_size_max", m.Storage.PoolSizeMax, 3},
		{"storage.pools", m.Storage.Pools, map[string]string{"instances": "cloud-rbd", "images": "images", "volumes": "volumes"}},
		{"role_minimums.control", m.RoleMinimums.Control, Minimum{Cores: 2, RAMGiB: 4, RecommendedRAMGiB: 8}},
		{"role_minimums.compute.kvm", m.RoleMinimums.Compute.KVM, KVMWarn},
		{"role_minimums.storage.eligible_disks", m.RoleMinimums.Storage.EligibleDisks, 1},
		{"ports.cloudd", m.Ports.Cloudd, 7443},
		{"ports.ceph_mon_v2", m.Ports.CephMonV2, 3300},
		{"ports.ceph_mon_v1", m.Ports.CephMonV1, 6789},
		{"ports.lxd", m.Ports.LXD, 8443},
		{"timeouts.join_token_ttl", m.Timeouts.JoinTokenTTL.Std(), time.Hour},
		{"control_plane.services", m.ControlPlane.Services,
			[]string{"identity", "image", "compute", "compute_api", "placement", "network", "volume", "dashboard"}},
		{"role_groups.converged", m.RoleGroupDefs["converged"], []string{"control", "compute", "storage"}},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if p, err := m.File("galera", "provider"); err != nil || p != "/usr/lib/galera/libgalera_smm.so" {
		t.Errorf("galera provider = %q, %v", p, err)
	}
	for _, b := range []struct{ c, b string }{{"mariadb", "mariadbd"}, {"ceph", "ceph-mon"}, {"ceph", "ceph-mgr"}, {"ceph", "ceph-osd"}, {"lxd", "lxd"}, {"keepalived", "keepalived"}} {
		if p, err := m.Binary(b.c, b.b); err != nil || !filepath.IsAbs(p) {
			t.Errorf("Binary(%s, %s) = %q, %v", b.c, b.b, p, err)
		}
	}
	if _, err := m.Binary("mariadb", "nope"); err == nil {
		t.Error("Binary of an unknown program succeeded")
	}
	if _, err := m.Binary("nope", "x"); err == nil {
		t.Error("Binary of an unknown component succeeded")
	}
}

func TestDefaultIsFreshEachCall(t *testing.T) {
	a := mustDefault(t)
	a.MySQL.MultiThresholdGiB = 1
	a.RoleGroupDefs["converged"][0] = "changed"
	b := mustDefault(t)
	if b.MySQL.MultiThresholdGiB != 32 || b.RoleGroupDefs["converged"][0] != "control" {
		t.Error("a change to one Default() leaked into the next")
	}
}

func TestRoleGroupsWithRolesParse(t *testing.T) {
	m := mustDefault(t)
	tests := []struct {
		in   string
		want []roles.Role
	}{
		{"converged", []roles.Role{roles.Control, roles.Compute, roles.Storage}},
		{"hyperconverged-worker", []roles.Role{roles.Compute, roles.Storage}},
		{"control-plane", []roles.Role{roles.Control}},
		{"Hyperconverged-Worker, control", []roles.Role{roles.Control, roles.Compute, roles.Storage}},
		{"storage", []roles.Role{roles.Storage}},
	}
	for _, tt := range tests {
		got, err := roles.Parse(tt.in, m.RoleGroups())
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("roles.Parse(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		got2, err := m.ParseRoles(tt.in)
		if err != nil || !reflect.DeepEqual(got2, tt.want) {
			t.Errorf("ParseRoles(%q) = %v, %v", tt.in, got2, err)
		}
	}
	_, err := m.ParseRoles("mega")
	if err == nil || !strings.Contains(err.Error(), "converged, hyperconverged-worker") {
		t.Errorf("unknown group error should list the groups, got %v", err)
	}
	// An administrator's own group works once overlaid.
	o := overlay(t, "role_groups:\n  edge: [compute]\n")
	if got, err := o.ParseRoles("edge"); err != nil || !reflect.DeepEqual(got, []roles.Role{roles.Compute}) {
		t.Errorf("ParseRoles(edge) = %v, %v", got, err)
	}
}

func TestOverlay(t *testing.T) {
	src := `
mysql:
  multi_threshold_gib: 16
components:
  lxd:
    binaries:
      lxd: /opt/lxd/bin/lxd
control_plane:
  services: [identity, image]
timeouts:
  join_token_ttl: 30m
  steps:
    galera_form: 20m
    lxd_start:
role_groups:
  edge: [compute]
  converged: [control, storage]
  control-plane:
storage:
  pools:
    backups: cloud-backups
`
	base := mustDefault(t)
	o, err := Parse("site.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Overlay(base, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Fatalf("overlaid manifest does not validate:\n%v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"scalar replaced", m.MySQL.MultiThresholdGiB, 16},
		{"sibling scalar kept", m.MySQL.BufferPool.RAMPercent, 25},
		{"map entry replaced", m.Components["lxd"].Binaries["lxd"], "/opt/lxd/bin/lxd"},
		{"map sibling kept", m.Components["lxd"].Binaries["lxc"], "/usr/bin/lxc"},
		{"component fields kept", m.Components["lxd"].Packages, []string{"lxd", "lxd-client"}},
		{"other components kept", len(m.Components), 5},
		{"list replaced", m.ControlPlane.Services, []string{"identity", "image"}},
		{"duration replaced", m.Timeouts.JoinTokenTTL.Std(), 30 * time.Minute},
		{"step replaced", m.Timeouts.Step("galera_form"), 20 * time.Minute},
		{"step removed falls back to default", m.Timeouts.Step("lxd_start"), 5 * time.Minute},
		{"step kept", m.Timeouts.Step("mysql_start"), time.Minute},
		{"group added", m.RoleGroupDefs["edge"], []string{"compute"}},
		{"group replaced by name", m.RoleGroupDefs["converged"], []string{"control", "storage"}},
		{"group kept", m.RoleGroupDefs["hyperconverged-worker"], []string{"compute", "storage"}},
		{"pool added", m.Storage.Pools["backups"], "cloud-backups"},
		{"pool kept", m.Storage.Pools["instances"], "cloud-rbd"},
		{"sources", m.Sources(), []string{DefaultName, "site.yaml"}},
		{"source of overlaid value", m.Source("mysql.multi_threshold_gib"), "site.yaml"},
		{"source of default value", m.Source("mysql.max_connections"), DefaultName},
		{"source of list item", m.Source("control_plane.services[1]"), "site.yaml"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s: got %#v, want %#v", c.name, c.got, c.want)
		}
	}
	if _, ok := m.RoleGroupDefs["control-plane"]; ok {
		t.Error("an empty value did not remove role group control-plane")
	}
	// The inputs are unchanged.
	if base.MySQL.MultiThresholdGiB != 32 || base.Components["lxd"].Binaries["lxd"] != "/usr/bin/lxd" || len(base.RoleGroupDefs) != 3 {
		t.Error("Overlay changed its base")
	}
	if len(o.RoleGroupDefs) != 2 || o.MySQL.BufferPool.RAMPercent != 0 {
		t.Errorf("the overlay holds only what it sets, got groups %v", o.RoleGroupDefs)
	}
	// Overlays chain: a second one applies over the first.
	o2, err := Parse("second.yaml", []byte("mysql:\n  multi_threshold_gib: 64\n"))
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Overlay(m, o2)
	if err != nil {
		t.Fatal(err)
	}
	if m2.MySQL.MultiThresholdGiB != 64 || m2.ControlPlane.Services[1] != "image" || m2.Source("mysql.multi_threshold_gib") != "second.yaml" {
		t.Errorf("chained overlay: threshold %d services %v", m2.MySQL.MultiThresholdGiB, m2.ControlPlane.Services)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	m := overlay(t, "mysql:\n  multi_threshold_gib: 48\ntimeouts:\n  join_token_ttl: 90m\n")
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "join_token_ttl: 1h30m\n") {
		t.Errorf("durations are not written as text:\n%s", data)
	}
	back, err := Parse("cluster database", data)
	if err != nil {
		t.Fatalf("Parse(Marshal()) failed: %v\n%s", err, data)
	}
	if err := back.Validate(); err != nil {
		t.Fatalf("round-tripped manifest does not validate: %v", err)
	}
	m.src, back.src = nil, nil
	if !reflect.DeepEqual(m, back) {
		t.Errorf("round trip changed the manifest:\n%+v\n%+v", m, back)
	}
}

func TestOverlayOnBuiltValue(t *testing.T) {
	// A manifest assembled in Go (no source file) can still be overlaid.
	base := mustDefault(t)
	base.src = nil
	base.Ports.LXD = 9443
	o, err := Parse("site.yaml", []byte("ports:\n  cloudd: 7444\n"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Overlay(base, o)
	if err != nil {
		t.Fatal(err)
	}
	if m.Ports.LXD != 9443 || m.Ports.Cloudd != 7444 {
		t.Errorf("ports = %+v", m.Ports)
	}
}

func TestParseErrors(t *testing.T) {
	_, err := Parse("site.yaml", []byte("mysql:\n  multi_treshold_gib: 16\n  max_connections: many\nbogus:\n"))
	var errs strictyaml.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("want strictyaml.Errors, got %v", err)
	}
	want := []string{
		`site.yaml:2:3: mysql.multi_treshold_gib: unknown key "multi_treshold_gib"; did you mean "multi_threshold_gib"?`,
		`site.yaml:3:20: mysql.max_connections: expected a whole number, got "many"; write digits only, without quotes, such as 32`,
		`site.yaml:4:1: bogus: unknown key "bogus"; remove it or use one of: components, control_plane, mysql, ports, role_groups, role_minimums, storage, timeouts, version, vrrp`,
	}
	if err.Error() != strings.Join(want, "\n") {
		t.Errorf("got\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
	if _, err := Parse("site.yaml", []byte("- a\n")); err == nil || !strings.Contains(err.Error(), "site.yaml:1:1: the manifest is not a mapping") {
		t.Errorf("list manifest: %v", err)
	}
	if _, err := Parse("site.yaml", []byte("role_minimums:\n  compute:\n    kvm: maybe\n")); err == nil ||
		err.Error() != `site.yaml:3:10: role_minimums.compute.kvm: unknown KVM rule "maybe"; use require, warn or ignore` {
		t.Errorf("kvm rule: %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "read manifest") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

// TestValidateGolden applies each testdata/*.yaml as an overlay on the
// default and compares Validate's messages with testdata/*.golden. Run with
// -update to rewrite them.
func TestValidateGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := Effective(f)
			got := "ok\n"
			if err != nil {
				got = err.Error() + "\n"
			}
			golden.Check(t, strings.TrimSuffix(f, ".yaml")+".golden", got, *update)
		})
	}
}

func TestEffective(t *testing.T) {
	m, err := Effective("")
	if err != nil {
		t.Fatal(err)
	}
	if m.MySQL.MultiThresholdGiB != 32 {
		t.Errorf("threshold %d", m.MySQL.MultiThresholdGiB)
	}
	p := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(p, []byte("mysql:\n  multi_threshold_gib: 8\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err = Effective(p)
	if err != nil || m.MySQL.MultiThresholdGiB != 8 {
		t.Fatalf("Effective(%s) = %v, %v", p, m, err)
	}
}

func TestBufferPoolMiB(t *testing.T) {
	my := mustDefault(t).MySQL
	tests := []struct{ ram, instances, want int }{
		{16, 1, 4096},   // 25 % of 16 GiB
		{64, 8, 2048},   // 16 GiB over 8 instances
		{2, 1, 512},     // small machine
		{1, 8, 128},     // clamped to min_mib
		{256, 1, 8192},  // clamped to max_mib
		{32, 0, 8192},   // 0 instances counts as 1
		{31, 1, 7936},   // just below the threshold
		{32, 8, 1024},   // just at it
		{48, 8, 1536},   // between
		{512, 8, 8192},  // big machine, clamped
		{4, 8, 128},     // tiny share, clamped to min
		{24, 1, 6144},   // this project's test machines
		{8, 1, 2048},    // recommended control RAM
		{4, 1, 1024},    // minimum control RAM
		{128, 8, 4096},  // large multi
		{100, 3, 8192},  // 25600/3 = 8533, clamped
		{96, 3, 8192},   // 24576/3 = 8192 exactly
		{60, 7, 2194},   // integer division
		{0, 1, 128},     // unknown RAM
		{1024, 8, 8192}, // huge
	}
	for _, tt := range tests {
		if got := my.BufferPoolMiB(tt.ram, tt.instances); got != tt.want {
			t.Errorf("BufferPoolMiB(%d GiB, %d) = %d, want %d", tt.ram, tt.instances, got, tt.want)
		}
	}
}

func TestPortsAndMinimums(t *testing.T) {
	m := mustDefault(t)
	if got := m.Ports.MySQLPort(2); got != 3308 {
		t.Errorf("MySQLPort(2) = %d", got)
	}
	if r, i, s := m.Ports.GaleraPorts(1); r != 4570 || i != 4571 || s != 4572 {
		t.Errorf("GaleraPorts(1) = %d %d %d", r, i, s)
	}
	for _, r := range roles.All {
		mn, ok := m.RoleMinimums.For(r)
		if !ok || mn.Cores < 1 || mn.RAMGiB < 1 {
			t.Errorf("minimum for %s = %+v, %v", r, mn, ok)
		}
	}
	if _, ok := m.RoleMinimums.For("nope"); ok {
		t.Error("minimum for an unknown role")
	}
}

func TestDurationText(t *testing.T) {
	tests := map[time.Duration]string{
		time.Hour:                    "1h",
		90 * time.Minute:             "1h30m",
		90 * time.Second:             "1m30s",
		5 * time.Minute:              "5m",
		30 * time.Second:             "30s",
		1500 * time.Millisecond:      "1.5s",
		0:                            "0s",
		time.Hour + 30*time.Second:   "1h0m30s",
		48 * time.Hour:               "48h",
		10*time.Hour + time.Minute*1: "10h1m",
	}
	for d, want := range tests {
		if got := Duration(d).String(); got != want {
			t.Errorf("Duration(%v) = %q, want %q", d, got, want)
		}
		var back Duration
		if err := back.UnmarshalText([]byte(Duration(d).String())); err != nil || back != Duration(d) {
			t.Errorf("round trip of %v: %v, %v", d, back, err)
		}
	}
}

// TestDocsCoverEveryKey keeps docs/manifest.md complete: every key path of
// the manifest types must be documented there.
func TestDocsCoverEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../docs/manifest.md")
	if err != nil {
		t.Fatalf("docs/manifest.md: %v", err)
	}
	var missing []string
	for _, p := range keyPaths(reflect.TypeOf(Manifest{}), "") {
		if !strings.Contains(string(doc), "`"+p+"`") {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		t.Errorf("docs/manifest.md does not document (as `path`): %s", strings.Join(missing, ", "))
	}
}

// keyPaths lists the key paths of a struct type: maps and lists show as
// "<name>" and "[]".
func keyPaths(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			out = append(out, keyPaths(f.Type, prefix)...)
			continue
		}
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		p := prefix + name
		out = append(out, p)
		ft := f.Type
		if ft.Kind() == reflect.Map {
			if ft.Elem().Kind() == reflect.Struct {
				out = append(out, keyPaths(ft.Elem(), p+".<name>.")...)
			}
			continue
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, keyPaths(ft, p+".")...)
		}
	}
	return out
}
