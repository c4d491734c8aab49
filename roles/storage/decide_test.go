package storage

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

func TestSlots(t *testing.T) {
	got := Slots([]api.DiskChoice{{Path: "loop:8GiB"}, {Path: "/dev/sdb", Wipe: true}, {Path: "loop:8GiB"}})
	want := []DiskSlot{{Path: "loop:8GiB", Slot: 0}, {Path: "/dev/sdb", Slot: 0, Wipe: true}, {Path: "loop:8GiB", Slot: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%+v", got)
	}
}

func node(name string, age int, rs ...roles.Role) driver.Node {
	return driver.Node{Name: name, IP: "10.0.0." + name[len(name)-1:], Roles: rs, JoinedAt: time.Unix(int64(age), 0)}
}

func TestMonitorNodes(t *testing.T) {
	s, c := roles.Storage, roles.Control
	cases := []struct {
		nodes []driver.Node
		want  []string
	}{
		{[]driver.Node{node("n1", 1, s)}, []string{"n1"}},
		// Storage first, control nodes fill in while fewer than three.
		{[]driver.Node{node("n1", 1, c), node("n2", 2, s)}, []string{"n2", "n1"}},
		{[]driver.Node{node("n1", 1, c), node("n2", 2, s), node("n3", 3, c), node("n4", 4, c)}, []string{"n2", "n1", "n3"}},
		{[]driver.Node{node("n1", 1, c), node("n2", 2, s), node("n3", 3, s), node("n4", 4, s)}, []string{"n2", "n3", "n4"}},
		// Oldest first, whatever the order given; compute-only nodes never.
		{[]driver.Node{node("n5", 5, s), node("n4", 4, s, c), node("n6", 6, roles.Compute), node("n1", 1, s), node("n2", 2, s)}, []string{"n1", "n2", "n4"}},
		{nil, nil},
		// No storage node: no Ceph on the control nodes either.
		{[]driver.Node{node("n1", 1, c), node("n2", 2, c), node("n3", 3, roles.Compute)}, nil},
	}
	for i, tc := range cases {
		if got := MonitorNodes(tc.nodes, 3); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("case %d: %v, want %v", i, got, tc.want)
		}
	}
	if got := MonitorNodes([]driver.Node{node("n1", 1, s), node("n2", 2, s), node("n3", 3, s)}, 1); !reflect.DeepEqual(got, []string{"n1"}) {
		t.Errorf("max 1: %v", got)
	}
}

func TestShapeFor(t *testing.T) {
	cases := map[int]PoolShape{
		0: {Size: 1, MinSize: 1, Domain: DomainOSD, Rule: RuleOSD},
		1: {Size: 1, MinSize: 1, Domain: DomainOSD, Rule: RuleOSD},
		2: {Size: 2, MinSize: 1, Domain: DomainOSD, Rule: RuleOSD},
		3: {Size: 3, MinSize: 2, Domain: DomainHost, Rule: RuleHost},
		7: {Size: 3, MinSize: 2, Domain: DomainHost, Rule: RuleHost},
	}
	for hosts, want := range cases {
		if got := ShapeFor(hosts, 3); got != want {
			t.Errorf("%d hosts: %+v, want %+v", hosts, got, want)
		}
	}
}

func TestGuardRemoval(t *testing.T) {
	pools := []PoolUse{{Name: "volumes", Size: 3, Objects: 12, Bytes: 3 << 20}, {Name: "images", Size: 3}}
	three := []string{"n1", "n2", "n3"}
	if err := GuardRemoval("n4", three, pools); err != nil {
		t.Errorf("a node without OSDs: %v", err)
	}
	err := GuardRemoval("n3", three, pools)
	if err == nil || !strings.Contains(err.Error(), "below their size") || !strings.Contains(err.Error(), "volumes (3 copies)") || !strings.Contains(err.Error(), "--force") {
		t.Errorf("3 → 2 hosts at size 3: %v", err)
	}
	if err := GuardRemoval("n3", append(three, "n4"), pools); err != nil {
		t.Errorf("4 → 3 hosts at size 3: %v", err)
	}
	err = GuardRemoval("n1", []string{"n1"}, []PoolUse{{Name: "volumes", Size: 1, Objects: 12, Bytes: 3 << 20}})
	if err == nil || !strings.Contains(err.Error(), "last copy") || !strings.Contains(err.Error(), "volumes (12 objects, 3.0 MiB)") {
		t.Errorf("the only host: %v", err)
	}
}

func TestNewKeyAndUUID(t *testing.T) {
	k, err := NewKey(time.Unix(1700000000, 5))
	if err != nil || !validKey(k) {
		t.Fatalf("%q %v", k, err)
	}
	b, _ := base64.StdEncoding.DecodeString(k)
	if len(b) != 28 {
		t.Fatalf("key of %d bytes", len(b))
	}
	k2, _ := NewKey(time.Unix(1700000000, 5))
	if k == k2 {
		t.Fatal("two keys alike")
	}
	u, err := NewUUID()
	if err != nil || len(u) != 36 || u[14] != '4' {
		t.Fatalf("uuid %q %v", u, err)
	}
	if validKey("not a key") {
		t.Fatal("validKey accepted junk")
	}
}

func TestRenderConf(t *testing.T) {
	l := layout{dir: "/var/lib/cloudctl/storage"}
	conf := renderConf(confInput{FSID: "f", Node: "node2", IP: "10.1.2.2", MonIPs: []string{"10.1.2.1", "10.1.2.2"}, OSDMemoryTarget: 1 << 30, Dir: l})
	for _, want := range []string{
		"mon_host = [v2:10.1.2.1:3300,v1:10.1.2.1:6789],[v2:10.1.2.2:3300,v1:10.1.2.2:6789]\n",
		"auth_cluster_required = cephx\n", "osd_memory_target = 1073741824\n", "mon_data_avail_warn = 5\n",
		"crush_location = root=default host=node2\n", "public_addr = 10.1.2.2\n",
		"keyring = /var/lib/cloudctl/storage/keys/ceph.client.admin.keyring\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("conf lacks %q:\n%s", want, conf)
		}
	}
	// admin_socket only in daemon sections, never in [global].
	global := conf[:strings.Index(conf, "[mon]")]
	if strings.Contains(global, "admin_socket") || strings.Count(conf, "admin_socket") != 3 {
		t.Errorf("admin_socket placement:\n%s", conf)
	}
	if strings.Contains(conf, "key =") {
		t.Error("a secret in ceph.conf")
	}
	if got := monAddr("fd00::1"); got != "[v2:[fd00::1]:3300,v1:[fd00::1]:6789]" {
		t.Errorf("IPv6 monitor address %s", got)
	}
}

func TestStateTables(t *testing.T) {
	env := testEnv(t, nil, node("n1", 1, roles.Storage))
	db := env.DB
	ctx := context.Background()
	var st0 state
	if _, err := New().secrets(ctx, env, &st0); err != nil || !st0.Secrets.ok() {
		t.Fatalf("%+v %v", st0.Secrets, err)
	}
	st1, _ := readState(ctx, db)
	if _, err := New().secrets(ctx, env, &st1); err != nil || st1.Secrets != st0.Secrets {
		t.Fatalf("secrets changed on the second call: %v", err)
	}
	now := time.Now()
	if err := recordMonitor(ctx, db, "n1", "10.0.0.1", now); err != nil {
		t.Fatal(err)
	}
	if err := recordMonitor(ctx, db, "n1", "10.0.0.1", now); err != nil {
		t.Fatal(err)
	}
	if err := recordOSD(ctx, db, osdRow{ID: 0, Node: "n1", Path: "loop:4GiB", UUID: "u", FileBacked: true, SizeBytes: 4 << 30, State: osdCreating}, now); err != nil {
		t.Fatal(err)
	}
	if err := recordOSD(ctx, db, osdRow{ID: 1, Node: "gone", Path: "/dev/sdb", UUID: "v", State: osdReady}, now); err != nil {
		t.Fatal(err)
	}
	if err := addDisk(ctx, db, "n1", "loop:2GiB", false, now); err != nil {
		t.Fatal(err)
	}
	st, err := readState(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Monitors) != 1 || len(st.OSDs) != 2 || !st.OSDs[0].FileBacked || len(st.Disks) != 1 {
		t.Fatalf("%+v", st)
	}
	if h := st.hostsWithOSDs(env); len(h) != 0 {
		t.Fatalf("hosts with OSDs counted a creating OSD or a departed node: %v", h)
	}
	if err := setOSDState(ctx, db, 0, osdReady); err != nil {
		t.Fatal(err)
	}
	st, _ = readState(ctx, db)
	if h := st.hostsWithOSDs(env); !reflect.DeepEqual(h, []string{"n1"}) {
		t.Fatalf("hosts %v", h)
	}
	n1 := node("n1", 1, roles.Storage)
	n1.Disks = []api.DiskChoice{{Path: "loop:4GiB"}}
	if got := st.disksOf(n1); len(got) != 2 || got[1].Path != "loop:2GiB" {
		t.Fatalf("disks of n1: %+v", got)
	}
	if err := deleteOSD(ctx, db, 1); err != nil {
		t.Fatal(err)
	}
	if err := deleteOSD(ctx, db, 1); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
}

// TestCheckDisks: every disk of the plan is judged before anything is made;
// one refused disk refuses them all with the probe's reason.
func TestCheckDisks(t *testing.T) {
	verdicts := map[string]*hwprobe.Disk{
		"/dev/sdb": {Eligible: true},
		"/dev/sdc": {WipeEligible: true, Reasons: []string{"carries a gpt signature"}},
		"/dev/sdd": {Reasons: []string{"has partitions: sdd1", "in use: sdd1 mounted at /srv"}},
	}
	d := New()
	d.Inspect = func(_ context.Context, path string, _ hwprobe.Policy) (*hwprobe.Disk, error) {
		if v, ok := verdicts[path]; ok {
			return v, nil
		}
		return nil, errors.New("not a block device listed in /sys/block")
	}
	n := node("n1", 1, roles.Storage)
	env := testEnv(t, nil, n)
	check := func(disks ...api.DiskChoice) ([]DiskSlot, error) {
		env.Local.Disks = disks
		return d.checkDisks(context.Background(), env, state{})
	}
	if s, err := check(api.DiskChoice{Path: "/dev/sdb"}, api.DiskChoice{Path: "loop:8GiB"}, api.DiskChoice{Path: "/dev/sdc", Wipe: true}); err != nil || len(s) != 3 {
		t.Fatalf("%v %v", s, err)
	}
	for _, tc := range []struct {
		disks []api.DiskChoice
		want  string
	}{
		{[]api.DiskChoice{{Path: "/dev/sdb"}, {Path: "/dev/sdc"}}, "disk /dev/sdc: carries a gpt signature; give consent to erase it"},
		{[]api.DiskChoice{{Path: "/dev/sdd", Wipe: true}}, "disk /dev/sdd: not eligible for an OSD: has partitions: sdd1; in use: sdd1 mounted at /srv"},
		{[]api.DiskChoice{{Path: "/dev/sdz"}}, "disk /dev/sdz: not a block device"},
		{[]api.DiskChoice{{Path: "loop:8"}}, "needs a unit"},
		{[]api.DiskChoice{{Path: "/dev/sdb"}, {Path: "/dev/sdb"}}, "listed twice"},
	} {
		s, err := check(tc.disks...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "nothing was changed") || s != nil {
			t.Errorf("%+v: %v, want %q", tc.disks, err, tc.want)
		}
	}
	// Disks that already hold an OSD are not looked at again.
	env.Local.Disks = []api.DiskChoice{{Path: "/dev/sdd"}}
	if s, err := d.checkDisks(context.Background(), env, state{OSDs: []osdRow{{ID: 0, Node: "n1", Path: "/dev/sdd", State: osdReady}}}); err != nil || len(s) != 0 {
		t.Fatalf("%v %v", s, err)
	}
}

func TestVerdict(t *testing.T) {
	three := []string{"a", "b", "c"}
	p3 := []api.StoragePool{{Name: "volumes", Size: 3}}
	cases := []struct {
		det          api.StorageDetails
		health, ha   string
		reasonSubstr string
	}{
		{api.StorageDetails{Health: "HEALTH_OK", Monitors: three, Quorum: three, Pools: p3}, api.HealthOK, api.HAYes, ""},
		{api.StorageDetails{Health: "HEALTH_OK", Monitors: []string{"a"}, Quorum: []string{"a"}, Pools: []api.StoragePool{{Size: 1}}}, api.HealthOK, api.HANo, "1 monitor(s)"},
		{api.StorageDetails{Health: "HEALTH_OK", Monitors: three, Quorum: three, Pools: []api.StoragePool{{Size: 2}}}, api.HealthOK, api.HANo, "pools keep 2 copies"},
		{api.StorageDetails{Health: "HEALTH_WARN", Reasons: []string{"1 osds down", "Degraded data redundancy"}, Monitors: three, Quorum: three[:2], Pools: p3}, api.HealthWarning, api.HADegraded, "2 of 3 monitors in quorum; HEALTH_WARN: 1 osds down"},
		{api.StorageDetails{Health: "HEALTH_OK", Monitors: three, Quorum: three, Pools: p3, PGs: 97, PGsActiveClean: 90}, api.HealthWarning, api.HADegraded, "90 of 97 placement groups active+clean"},
		{api.StorageDetails{Health: "HEALTH_ERR", Reasons: []string{"x"}, Monitors: three, Quorum: three, Pools: p3}, api.HealthError, api.HADegraded, "HEALTH_ERR: x"},
	}
	for i, tc := range cases {
		h, ha, r := verdict(tc.det)
		if h != tc.health || ha != tc.ha || !strings.Contains(r, tc.reasonSubstr) {
			t.Errorf("case %d: %s %s %q", i, h, ha, r)
		}
	}
}

func TestWriteFileAndWipe(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k", "keyring")
	changed, err := writeFile(p, []byte("x"), 0o600)
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	if changed, _ := writeFile(p, []byte("x"), 0o600); changed {
		t.Fatal("unchanged content rewritten")
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	f := filepath.Join(dir, "disk")
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = 0xab
	}
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := wipeSignatures(f); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(f)
	if got[0] != 0 || got[1<<20-1] != 0 || got[1<<20] != 0xab || got[2<<20-1] != 0xab || got[2<<20] != 0 || got[len(got)-1] != 0 {
		t.Fatal("wipe did not zero exactly the first and last MiB")
	}
}

func TestSettledPGs(t *testing.T) {
	sizes := map[int]int{1: 3, 4: 2}
	pgs := []pgBrief{
		{PGID: "1.0", State: "active+clean", Up: []int{0, 1, 2}, Acting: []int{0, 1, 2}},
		// Reported before the pool went from size 2 to 3.
		{PGID: "1.1", State: "active+clean", Up: []int{0, 1}, Acting: []int{0, 1}},
		// Backfilling to a new copy through a temporary acting set.
		{PGID: "1.2", State: "active+clean", Up: []int{0, 1, 2}, Acting: []int{0, 1, 3}},
		{PGID: "1.3", State: "active+undersized+degraded", Up: []int{0, 1}, Acting: []int{0, 1}},
		{PGID: "4.0", State: "active+clean", Up: []int{2, 0}, Acting: []int{2, 0}},
		// A pool the listing did not name.
		{PGID: "7.0", State: "active+clean", Up: []int{2, 0, 1}, Acting: []int{2, 0, 1}},
		{PGID: "bogus", State: "active+clean", Up: []int{0}, Acting: []int{0}},
	}
	if got := settledPGs(pgs, sizes); got != 2 {
		t.Fatalf("settledPGs = %d, want 2 (1.0 and 4.0)", got)
	}
}
