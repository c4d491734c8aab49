package compute

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

func TestDecideCluster(t *testing.T) {
	order := []string{"node1", "node2", "node3"}
	cases := []struct {
		name      string
		local     string
		clustered bool
		peers     []PeerState
		want      Action
		via       string
	}{
		{"already a member", "node2", true, nil, Settled, ""},
		{"first node bootstraps", "node1", false, nil, Bootstrap, ""},
		{"first node joins when another formed it", "node1", false, []PeerState{{Node: "node3", Running: true, Clustered: true}}, Join, "node3"},
		{"later node waits for the first", "node2", false, []PeerState{{Node: "node1", Running: true}}, Wait, ""},
		{"later node joins through a member", "node3", false, []PeerState{{Node: "node1", Running: true}, {Node: "node2", Running: true, Clustered: true}}, Join, "node2"},
		{"a stopped member is not asked", "node3", false, []PeerState{{Node: "node2", Clustered: true}}, Wait, ""},
	}
	for _, c := range cases {
		d := decideCluster(c.local, c.clustered, order, c.peers)
		if d.Action != c.want || d.Via != c.via {
			t.Errorf("%s: got %+v, want action %d via %q", c.name, d, c.want, c.via)
		}
		if d.Action == Wait && !strings.Contains(d.Reason, "node1") {
			t.Errorf("%s: reason %q does not name the first node", c.name, d.Reason)
		}
	}
}

func TestServerConfig(t *testing.T) {
	want := serverConfig("10.0.0.5", 8443)
	if want["core.https_address"] != "10.0.0.5:8443" || want["images.auto_update_interval"] != "0" {
		t.Fatalf("config: %v", want)
	}
	have := map[string]any{"core.https_address": "10.0.0.5:8443", "images.auto_update_interval": "6"}
	ch := configChanges(have, want)
	if _, ok := ch["core.https_address"]; ok || ch["images.auto_update_interval"] != "0" || ch["core.remote_token_expiry"] != TokenExpiry {
		t.Fatalf("changes: %v", ch)
	}
	for k, v := range want {
		have[k] = v
	}
	if ch := configChanges(have, want); len(ch) != 0 {
		t.Fatalf("settled config still changes: %v", ch)
	}
}

func TestMemberConfig(t *testing.T) {
	keys := []lxdapi.ClusterMemberConfigKey{
		{Entity: "storage-pool", Name: PoolName, Key: "source"},
		{Entity: "network", Name: NetworkName, Key: "bridge.external_interfaces"},
		{Entity: "storage-pool", Name: "other", Key: "source"},
	}
	got := memberConfig(keys, "/var/lib/cloudctl/compute/pool-local", "")
	if got[0].Value != "/var/lib/cloudctl/compute/pool-local" || got[1].Value != "" || got[2].Value != "" || len(got) != 3 {
		t.Fatalf("member config: %+v", got)
	}
}

func TestVMVerdict(t *testing.T) {
	if ok, why := vmVerdict(hwprobe.KVM{Verdict: hwprobe.KVMYes}, "lxc | qemu"); !ok || why != "" {
		t.Fatalf("kvm and qemu: %v %q", ok, why)
	}
	if ok, why := vmVerdict(hwprobe.KVM{Verdict: hwprobe.KVMNo, Reason: "no vmx"}, "lxc | qemu"); ok || !strings.Contains(why, "containers only") || !strings.Contains(why, "no vmx") {
		t.Fatalf("no kvm: %v %q", ok, why)
	}
	if ok, why := vmVerdict(hwprobe.KVM{Verdict: hwprobe.KVMYes}, "lxc"); ok || !strings.Contains(why, "qemu") {
		t.Fatalf("no qemu driver: %v %q", ok, why)
	}
}

func TestAccessAddress(t *testing.T) {
	if a := accessAddress(api.Plan{}, "10.1.0.2", 8443); a != "10.1.0.2:8443" {
		t.Fatal(a)
	}
	if a := accessAddress(api.Plan{FloatingAddress: "10.1.0.100/24"}, "10.1.0.2", 8443); a != "10.1.0.100:8443" {
		t.Fatal(a)
	}
	if a := accessAddress(api.Plan{FloatingAddress: "fd00::100"}, "10.1.0.2", 8443); a != "[fd00::100]:8443" {
		t.Fatal(a)
	}
}

func TestRetargetToken(t *testing.T) {
	tok := (&lxdapi.CertificateAddToken{ClientName: "alice", Fingerprint: "ab", Addresses: []string{"10.1.0.2:8443", "10.1.0.3:8443"}, Secret: "s"}).String()
	out, err := retargetToken(tok, "10.1.0.100:8443")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(out)
	var got lxdapi.CertificateAddToken
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got.Addresses, ",") != "10.1.0.100:8443,10.1.0.2:8443,10.1.0.3:8443" || got.Secret != "s" || got.ClientName != "alice" {
		t.Fatalf("token: %+v", got)
	}
	if _, err := retargetToken("not base64!", "x:1"); err == nil {
		t.Fatal("bad token accepted")
	}
}

func TestHAVerdict(t *testing.T) {
	on := func(n string, roles ...string) Member { return Member{Name: n, Status: "Online", Roles: roles} }
	if ha, why := haVerdict(nil); ha != api.HANo || why == "" {
		t.Fatal(ha, why)
	}
	if ha, why := haVerdict(&ClusterView{Members: []Member{on("a", "database-leader", "database"), on("b", "database-standby")}}); ha != api.HANo || !strings.Contains(why, "three") {
		t.Fatal(ha, why)
	}
	three := &ClusterView{Members: []Member{on("a", "database-leader", "database"), on("b", "database"), on("c", "database")}}
	if ha, _ := haVerdict(three); ha != api.HAYes {
		t.Fatal(ha)
	}
	three.Members[2].Status = "Offline"
	if ha, why := haVerdict(three); ha != api.HADegraded || !strings.Contains(why, "2 of 3") {
		t.Fatal(ha, why)
	}
}

func TestGuardRemoval(t *testing.T) {
	all := map[string]bool{"node1": true, "node2": true, "node3": true}
	v := &ClusterView{
		Members: []Member{{Name: "node1", Status: "Online"}, {Name: "node2", Status: "Offline"}},
		Names:   map[string][]string{"node1": {"web", "db"}},
	}
	err := guardRemoval(driver.RemoveRole, "node1", v, all)
	if err == nil || !strings.Contains(err.Error(), "db, web") || !strings.Contains(err.Error(), "no other compute node is online") {
		t.Fatalf("refusal: %v", err)
	}
	if err := guardRemoval(driver.RemoveRole, "node2", v, all); err != nil {
		t.Fatalf("node without instances refused: %v", err)
	}
	v.Members[1].Status = "Online"
	if err := guardRemoval(driver.RemoveRole, "node1", v, all); err != nil {
		t.Fatalf("movable instances refused: %v", err)
	}
	err = guardRemoval(driver.RemoveNode, "node1", v, all)
	var first driver.LeaveRoleFirst
	if !errors.As(err, &first) || first.Role != roles.Compute || !strings.Contains(err.Error(), "they move to node2") {
		t.Fatalf("node removal with movable instances: want LeaveRoleFirst(compute), got %#v", err)
	}
	if err := guardRemoval(driver.RemoveNode, "node2", v, all); err != nil {
		t.Fatalf("node removal without instances: %v", err)
	}
	// An online member that gave up the compute role (leaving, or never
	// had it) takes nothing.
	if err := guardRemoval(driver.RemoveRole, "node1", v, map[string]bool{"node1": true}); err == nil || !strings.Contains(err.Error(), "no other compute node is online") {
		t.Fatalf("only a member without the role online: want a refusal, got %v", err)
	}
	v.Members[1].Status = "Offline"
	if err := guardRemoval(driver.RemoveNode, "node1", v, all); errors.As(err, &first) || err == nil || !strings.Contains(err.Error(), "no other compute node is online") {
		t.Fatalf("node removal with nowhere to move: want a refusal, got %#v", err)
	}
}

// TestGuardSoleVoter: the LXD database leader is not let go, by role or
// node removal, with or without instances, when no voter could take its
// lead over: the only voter of two members, or a leader whose other voters
// online are no majority; with enough voters online it is, and alone it is
// (nothing is left to lose).
func TestGuardSoleVoter(t *testing.T) {
	all := map[string]bool{"node1": true, "node2": true, "node3": true}
	v := &ClusterView{Members: []Member{
		{Name: "node1", Status: "Online", Roles: []string{"database-leader", "database"}},
		{Name: "node2", Status: "Online"},
	}}
	for _, kind := range []driver.ChangeKind{driver.RemoveRole, driver.RemoveNode} {
		err := guardRemoval(kind, "node1", v, all)
		var first driver.LeaveRoleFirst
		if err == nil || errors.As(err, &first) || !strings.Contains(err.Error(), "node1 holds the only copy of the LXD database") || !strings.Contains(err.Error(), "add a compute node first, then try again") {
			t.Fatalf("%v of the sole voter: %#v", kind, err)
		}
	}
	if err := guardRemoval(driver.RemoveRole, "node2", v, all); err != nil {
		t.Fatalf("the spare refused: %v", err)
	}
	v.Members = append(v.Members, Member{Name: "node3", Status: "Offline", Roles: []string{"database"}})
	v.Members[1].Roles = []string{"database"}
	if err := guardRemoval(driver.RemoveRole, "node1", v, all); err == nil || !strings.Contains(err.Error(), "too few of its other database voters can take over (node3 (Offline))") {
		t.Fatalf("leader of three voters, one offline: %v", err)
	}
	v.Members[2].Status = "Online"
	if err := guardRemoval(driver.RemoveRole, "node1", v, all); err != nil {
		t.Fatalf("leader with the other voters online refused: %v", err)
	}
	if err := guardRemoval(driver.RemoveRole, "node2", v, all); err != nil {
		t.Fatalf("a voter that does not lead refused: %v", err)
	}
	alone := &ClusterView{Members: v.Members[:1]}
	if err := guardRemoval(driver.RemoveNode, "node1", alone, all); err != nil {
		t.Fatalf("the only member refused: %v", err)
	}
}

// TestLeadership reads leadership from LXD's member roles: the lead can be
// handed over when the voters left online are a majority of all voters.
func TestLeadership(t *testing.T) {
	ms := []Member{
		{Name: "a", Status: "Online", Roles: []string{"database"}},
		{Name: "b", Status: "Online", Roles: []string{"database-leader", "database"}},
		{Name: "c", Status: "Online", Roles: []string{"database"}},
		{Name: "d", Status: "Online", Roles: []string{"database-standby"}},
		{Name: "e", Status: "Online"},
	}
	keep := map[string]bool{"a": true, "b": true, "c": true, "d": true, "e": true}
	if l, err := leadership(ms, "b", keep); !l || err != nil {
		t.Fatalf("b: %v %v", l, err)
	}
	// A voter whose node is leaving the compute role does not count: it
	// may be gone by the time the lead moves.
	keep["c"] = false
	if l, err := leadership(ms, "b", keep); !l || err == nil || !strings.Contains(err.Error(), "c (leaving the compute role)") {
		t.Fatalf("b with a leaving voter: %v %v", l, err)
	}
	keep["c"] = true
	// Evacuated says nothing of whether its LXD is up: not counted.
	ms[0].Status = "Evacuated"
	if l, err := leadership(ms, "b", keep); !l || err == nil || !strings.Contains(err.Error(), "a (Evacuated)") || !strings.Contains(err.Error(), "restore an evacuated one") {
		t.Fatalf("b with an evacuated voter: %v %v", l, err)
	}
	ms[0].Status = "Online"
	if l, err := leadership(ms, "a", keep); l || err != nil {
		t.Fatalf("a: %v %v", l, err)
	}
	// A standby or a spare is no voter: one voter offline leaves one of
	// three online besides the leader.
	ms[2].Status = "Offline"
	if l, err := leadership(ms, "b", keep); !l || err == nil || !strings.Contains(err.Error(), "c (Offline)") {
		t.Fatalf("b with one of two other voters offline: %v %v", l, err)
	}
	// Two voters (a moment after a shrink from three): the other one alone
	// is no majority either.
	if l, err := leadership(ms[:2], "b", keep); !l || err == nil || !strings.Contains(err.Error(), "still settling its database voters (2, none offline)") {
		t.Fatalf("b of two voters: %v %v", l, err)
	}
	if l, err := leadership(ms[1:2], "b", keep); l || err != nil {
		t.Fatalf("b alone: %v %v", l, err)
	}
}

// TestNextHandover: LXD is restarted to hand its lead over three times in
// a row, then at most once a minute; a member that no longer leads starts
// counting again.
func TestNextHandover(t *testing.T) {
	d := &Driver{}
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for i := 1; i <= 3; i++ {
		if n, ok := d.nextHandover(t0); !ok || n != i {
			t.Fatalf("restart %d: %d %v", i, n, ok)
		}
	}
	if n, ok := d.nextHandover(t0.Add(30 * time.Second)); ok || n != 3 {
		t.Fatalf("fourth within the gap: %d %v", n, ok)
	}
	if n, ok := d.nextHandover(t0.Add(handoverGap)); !ok || n != 4 {
		t.Fatalf("fourth after the gap: %d %v", n, ok)
	}
	d.resetHandovers()
	if n, ok := d.nextHandover(t0.Add(handoverGap + time.Second)); !ok || n != 1 {
		t.Fatalf("after a reset: %d %v", n, ok)
	}
}

// TestGuardLeaving: a node that gave up the compute role is removed only
// once it holds no LXD state (it left the LXD cluster, stopped LXD and
// removed its state); when it does not
// answer, as the other members see it; with no view at all, it waits.
func TestGuardLeaving(t *testing.T) {
	var first driver.LeaveRoleFirst
	own := &PeerState{Running: true, Clustered: true, Cluster: &ClusterView{Names: map[string][]string{"node2": {"web", "db"}}}}
	if err := guardLeaving("node2", own, nil); !errors.As(err, &first) || !strings.Contains(err.Error(), "still leaving the LXD cluster (moving its 2 instance(s)") {
		t.Fatalf("still clustered: %#v", err)
	}
	own.Clustered = false
	if err := guardLeaving("node2", own, nil); !errors.As(err, &first) || !strings.Contains(err.Error(), "stopping its LXD") {
		t.Fatalf("standalone, running: %#v", err)
	}
	// LXD not answering is no proof: it may restart mid-evacuation.
	if err := guardLeaving("node2", &PeerState{}, nil); !errors.As(err, &first) || !strings.Contains(err.Error(), "still holds LXD state") {
		t.Fatalf("silent LXD with state: %#v", err)
	}
	if err := guardLeaving("node2", &PeerState{Left: true}, nil); err != nil {
		t.Fatalf("state removed: %v", err)
	}
	v := &ClusterView{Members: []Member{{Name: "node1", Status: "Online"}, {Name: "node2", Status: "Evacuated"}}, Names: map[string][]string{"node2": {"web"}}}
	if err := guardLeaving("node2", nil, v); !errors.As(err, &first) || !strings.Contains(err.Error(), "moving its 1 instance(s)") {
		t.Fatalf("silent, still a member: %#v", err)
	}
	v.Members = v.Members[:1]
	if err := guardLeaving("node2", nil, v); err != nil {
		t.Fatalf("silent, left: %v", err)
	}
	if err := guardLeaving("node2", nil, nil); !errors.As(err, &first) || !strings.Contains(err.Error(), "cannot be told yet") {
		t.Fatalf("no view: %#v", err)
	}
}

func TestJoinPut(t *testing.T) {
	// A throw-away self-signed certificate's PEM.
	certPEM := testCertPEM(t)
	fp, err := certFingerprint(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	tok := (&lxdapi.ClusterMemberJoinToken{ServerName: "node2", Fingerprint: fp, Addresses: []string{"10.1.0.2:8443"}, Secret: "s3"}).String()
	put, err := joinPut("node2", "10.1.0.3:8443", "/pool", "", JoinInfo{Token: tok, Certificate: certPEM,
		MemberKeys: []lxdapi.ClusterMemberConfigKey{{Entity: "storage-pool", Name: PoolName, Key: "source"}}})
	if err != nil {
		t.Fatal(err)
	}
	if put.ClusterAddress != "10.1.0.2:8443" || put.ServerAddress != "10.1.0.3:8443" || put.ClusterPassword != tok || put.ClusterToken != "" || put.MemberConfig[0].Value != "/pool" || !put.Enabled {
		t.Fatalf("put: %+v", put)
	}
	bad := (&lxdapi.ClusterMemberJoinToken{ServerName: "node2", Fingerprint: "00", Addresses: []string{"10.1.0.2:8443"}, Secret: "s3"}).String()
	if _, err := joinPut("node2", "x", "/pool", "", JoinInfo{Token: bad, Certificate: certPEM}); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched fingerprint: %v", err)
	}
}

func TestCgroupMounted(t *testing.T) {
	fresh := "22 1 0:5 / /sys rw,relatime - sysfs sysfs rw\n"
	if cgroupMounted(fresh) {
		t.Fatal("fresh sysfs seen as cgroup")
	}
	v2 := fresh + "30 22 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n"
	hybrid := fresh + "31 22 0:27 / /sys/fs/cgroup/memory rw shared:9 - cgroup cgroup rw,memory\n"
	if !cgroupMounted(v2) || !cgroupMounted(hybrid) {
		t.Fatal("mounted cgroups not seen")
	}
}
