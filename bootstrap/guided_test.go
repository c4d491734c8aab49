package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	controlplan "github.com/cloudctl/cloudctl/roles/control/plan"
)

// script is an Asker with scripted answers by question ID. A question
// without an answer takes its default (Enter). Every answer goes through the
// question's validation, as on a terminal; an invalid answer fails the test
// unless the script expects it (rejects).
type script struct {
	t       *testing.T
	answers map[string]any
	// rejects lists answers given first and expected to be refused.
	rejects map[string]any
	// cancelAt makes the question with this ID return ErrCancelled.
	cancelAt string
	asked    []string
	said     []string
	options  map[string][]Option
	defaults map[string]any
	messages map[string]string
}

func newScript(t *testing.T, answers map[string]any) *script {
	return &script{t: t, answers: answers, rejects: map[string]any{}, options: map[string][]Option{}, defaults: map[string]any{}, messages: map[string]string{}}
}

func (s *script) ask(q Question) (any, bool, error) {
	s.asked = append(s.asked, q.ID)
	s.messages[q.ID] = q.Message
	if q.ID == s.cancelAt {
		return nil, false, ErrCancelled
	}
	v, ok := s.answers[q.ID]
	return v, ok, nil
}

func (s *script) Say(text string) error { s.said = append(s.said, text); return nil }

func (s *script) Input(q Question) (string, error) {
	s.defaults[q.ID] = q.Default
	v, ok, err := s.ask(q)
	if err != nil {
		return "", err
	}
	if bad, ok := s.rejects[q.ID]; ok && q.Validate != nil {
		if err := q.Validate(bad.(string)); err == nil {
			s.t.Errorf("%s: answer %q was accepted, want it refused", q.ID, bad)
		}
	}
	ans := q.Default
	if ok {
		ans = v.(string)
	}
	if q.Validate != nil {
		if err := q.Validate(ans); err != nil {
			s.t.Fatalf("%s: answer %q refused: %v", q.ID, ans, err)
		}
	}
	return ans, nil
}

func (s *script) Select(q Question, options []Option) (string, error) {
	s.options[q.ID], s.defaults[q.ID] = options, q.Default
	v, ok, err := s.ask(q)
	if err != nil {
		return "", err
	}
	ans := q.Default
	if ok {
		ans = v.(string)
	}
	for _, o := range options {
		if o.Value == ans {
			return ans, nil
		}
	}
	s.t.Fatalf("%s: %q is not one of the options %v", q.ID, ans, options)
	return "", nil
}

func (s *script) MultiSelect(q Question, options []Option, defaults []string, validate func([]string) error) ([]string, error) {
	s.options[q.ID], s.defaults[q.ID] = options, defaults
	v, ok, err := s.ask(q)
	if err != nil {
		return nil, err
	}
	if bad, ok := s.rejects[q.ID]; ok {
		if validate == nil || validate(bad.([]string)) == nil {
			s.t.Errorf("%s: answer %v was accepted, want it refused", q.ID, bad)
		}
	}
	ans := defaults
	if ok {
		ans = v.([]string)
	}
	if validate != nil {
		if err := validate(ans); err != nil {
			s.t.Fatalf("%s: answer %v refused: %v", q.ID, ans, err)
		}
	}
	return ans, nil
}

func (s *script) Confirm(q Question, def bool) (bool, error) {
	s.defaults[q.ID] = def
	v, ok, err := s.ask(q)
	if err != nil {
		return false, err
	}
	if ok {
		return v.(bool), nil
	}
	return def, nil
}

func TestGuidedDefaultsOrderAndPlan(t *testing.T) {
	s := newScript(t, nil)
	p, warnings, err := Guide(context.Background(), s, testFacts(), GuideOptions{Cluster: "cloud"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"name", "address", "roles", "mysql_topology", "disks", "floating_address", "region", "zone", "apply"}
	if !reflect.DeepEqual(s.asked, want) {
		t.Fatalf("questions asked %v, want %v", s.asked, want)
	}
	if len(s.said) == 0 || !strings.Contains(s.said[0], "Hardware of test machine") || !strings.Contains(s.said[0], "64 GiB installed") {
		t.Fatalf("the probe summary is not shown first: %q", s.said)
	}
	if !strings.Contains(s.messages["mysql_topology"], "64 GiB installed, at least 32 GiB → one MySQL per service") {
		t.Fatalf("topology prompt does not show the fact: %q", s.messages["mysql_topology"])
	}
	if s.defaults["address"] != "10.0.0.1" || s.defaults["name"] != "node1" || s.defaults["mysql_topology"] != "multi" {
		t.Fatalf("defaults: %v", s.defaults)
	}
	if got := s.defaults["roles"]; !reflect.DeepEqual(got, []string{"control", "compute", "storage"}) {
		t.Fatalf("first node's roles default %v, want all three", got)
	}
	// Disks: eligible ones offered and selected; the wipe candidate offered,
	// not selected; the rejected ones (system disk, loop) listed with reasons.
	if got := s.defaults["disks"]; !reflect.DeepEqual(got, []string{"/dev/sdb", "/dev/sdc"}) {
		t.Fatalf("disk defaults %v", got)
	}
	var offered []string
	for _, o := range s.options["disks"] {
		offered = append(offered, o.Value)
	}
	if !reflect.DeepEqual(offered, []string{"/dev/sdb", "/dev/sdc", "/dev/sdd"}) || !strings.Contains(s.options["disks"][2].Description, "needs a wipe (gpt)") ||
		!strings.Contains(s.options["disks"][0].Description, "Samsung SSD 870, 2 TiB") {
		t.Fatalf("disks offered: %+v", s.options["disks"])
	}
	diskList := strings.Join(s.said, "\n")
	for _, w := range []string{"/dev/sda", "rejected: has partitions: sda1, sda2", "/dev/loop0", "loop device"} {
		if !strings.Contains(diskList, w) {
			t.Errorf("rejected disks not listed with reasons (%q missing):\n%s", w, diskList)
		}
	}
	wantPlan := Plan{Name: "node1", Address: "10.0.0.1:7443", Roles: roles.All, Cluster: "cloud",
		MySQLTopology: "multi", MySQLTopologyReason: testFacts().Hardware.Decisions.MySQLReason,
		Disks: []api.DiskChoice{{Path: "/dev/sdb"}, {Path: "/dev/sdc"}}}
	if !reflect.DeepEqual(p, wantPlan) {
		t.Fatalf("plan\n%+v\nwant\n%+v", p, wantPlan)
	}
	if len(warnings) != 0 {
		t.Fatalf("warnings: %v", warnings)
	}
	last := s.said[len(s.said)-1]
	for _, w := range []string{"Plan: node1 bootstraps the new cluster \"cloud\"", "multi — 64 GiB installed RAM", "/dev/sdb (Samsung SSD 870, 2 TiB, ssd)", "Ceph pools       size 1", "containers and virtual machines"} {
		if !strings.Contains(last, w) {
			t.Errorf("plan screen lacks %q:\n%s", w, last)
		}
	}
}

func TestGuidedAnswers(t *testing.T) {
	s := newScript(t, map[string]any{
		"name":             "edge-7",
		"address":          "192.168.5.10",
		"roles":            []string{"control", "storage"},
		"mysql_topology":   "single",
		"disks":            []string{"/dev/sdc", "/dev/sdd"},
		"wipe:/dev/sdd":    true,
		"floating_address": "10.0.0.100",
		"region":           "eu-west",
		"zone":             "b",
	})
	s.rejects["name"] = "Edge_7"
	s.rejects["floating_address"] = "192.168.5.10"
	s.rejects["roles"] = []string{}
	p, warnings, err := Guide(context.Background(), s, testFacts(), GuideOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"name", "address", "roles", "mysql_topology", "disks", "wipe:/dev/sdd", "floating_address", "region", "zone", "apply"}
	if !reflect.DeepEqual(s.asked, want) {
		t.Fatalf("asked %v, want %v (no KVM question without compute)", s.asked, want)
	}
	if p.Name != "edge-7" || p.Address != "192.168.5.10:7443" || roles.Join(p.Roles) != "control,storage" || p.Region != "eu-west" || p.Zone != "b" || p.FloatingAddress != "10.0.0.100" {
		t.Fatalf("plan %+v", p)
	}
	if p.MySQLTopology != "single" || !strings.Contains(p.MySQLTopologyReason, "overriding the hardware's choice of multi: 64 GiB installed RAM") {
		t.Fatalf("forced topology: %q %q", p.MySQLTopology, p.MySQLTopologyReason)
	}
	if !reflect.DeepEqual(p.Disks, []api.DiskChoice{{Path: "/dev/sdc"}, {Path: "/dev/sdd", Wipe: true}}) {
		t.Fatalf("disks %+v", p.Disks)
	}
	// The floating address is on eth0's network, the node on eth1's: warned.
	ws := strings.Join(warnings.Messages(), "\n")
	if !strings.Contains(ws, "is not on the network of 192.168.5.10:7443") || !strings.Contains(ws, "/dev/sdd will be wiped") {
		t.Fatalf("warnings: %s", ws)
	}
}

func TestGuidedWipeDeclinedLeavesDisk(t *testing.T) {
	s := newScript(t, map[string]any{"disks": []string{"/dev/sdb", "/dev/sdd"}, "wipe:/dev/sdd": false})
	p, _, err := Guide(context.Background(), s, testFacts(), GuideOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Disks, []api.DiskChoice{{Path: "/dev/sdb"}}) {
		t.Fatalf("declined wipe still used the disk: %+v", p.Disks)
	}
	if s.defaults["wipe:/dev/sdd"] != false {
		t.Fatal("the wipe confirmation must default to no")
	}
}

func TestGuidedEmulatedVMs(t *testing.T) {
	// Keep compute: asked, kept, warned.
	s := newScript(t, map[string]any{"roles": []string{"compute"}})
	p, warnings, err := Guide(context.Background(), s, noKVMFacts(), GuideOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.asked, []string{"name", "address", "roles", "kvm", "floating_address", "region", "zone", "apply"}) {
		t.Fatalf("asked %v", s.asked)
	}
	if !strings.Contains(s.messages["kvm"], "virtual machines would run emulated") || roles.Join(p.Roles) != "compute" {
		t.Fatalf("kvm prompt %q, roles %v", s.messages["kvm"], p.Roles)
	}
	if !strings.Contains(strings.Join(warnings.Messages(), "\n"), "no KVM") {
		t.Fatalf("no KVM warning recorded: %v", warnings)
	}
	// Decline: compute is dropped.
	s = newScript(t, map[string]any{"roles": []string{"control", "compute"}, "kvm": false})
	p, _, err = Guide(context.Background(), s, noKVMFacts(), GuideOptions{})
	if err != nil || roles.Join(p.Roles) != "control" {
		t.Fatalf("declined emulation: roles %v, %v", p.Roles, err)
	}
	// Decline with compute alone: nothing is left, nothing applied.
	s = newScript(t, map[string]any{"roles": []string{"compute"}, "kvm": false})
	if _, _, err = Guide(context.Background(), s, noKVMFacts(), GuideOptions{}); err == nil || !strings.Contains(err.Error(), "no role is left") {
		t.Fatalf("compute-only declined: %v", err)
	}
}

func TestGuidedBlockedRolesNotOffered(t *testing.T) {
	// 1 core, 2 GiB: below control's and compute's minimums, enough for storage.
	s := newScript(t, map[string]any{"roles": []string{"storage"}})
	s.rejects["roles"] = []string{"storage", "compute"}
	p, warnings, err := Guide(context.Background(), s, smallFacts(), GuideOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.defaults["roles"]; !reflect.DeepEqual(got, []string{"storage"}) {
		t.Fatalf("roles the machine cannot take were preselected: %v", got)
	}
	if !strings.Contains(s.options["roles"][0].Description, "not possible here: 1 CPU cores; control needs at least 2") {
		t.Fatalf("blocked role not marked: %+v", s.options["roles"])
	}
	// No disk can hold an OSD: a file-backed one is offered, declined by default.
	if roles.Join(p.Roles) != "storage" || len(p.Disks) != 0 || !reflect.DeepEqual(s.asked, []string{"name", "address", "roles", "disks:file", "floating_address", "region", "zone", "apply"}) {
		t.Fatalf("plan %+v, asked %v", p, s.asked)
	}
	if !strings.Contains(strings.Join(warnings.Messages(), "\n"), "the storage role has no OSD disk") {
		t.Fatalf("storage without disks is not warned: %v", warnings)
	}
}

func TestGuidedOffersFileBackedOSD(t *testing.T) {
	s := newScript(t, map[string]any{"roles": []string{"storage"}, "disks:file": true})
	s.rejects["roles"] = []string{"storage", "compute"}
	p, warnings, err := Guide(context.Background(), s, smallFacts(), GuideOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Disks) != 1 || p.Disks[0].Path != "loop:8GiB" {
		t.Fatalf("accepting the file-backed OSD: disks %+v", p.Disks)
	}
	if !strings.Contains(strings.Join(warnings.Messages(), "\n"), "file-backed: not for production") {
		t.Fatalf("the file-backed OSD is not warned: %v", warnings)
	}
}

func TestGuidedCancel(t *testing.T) {
	for _, at := range []string{"name", "roles", "disks", "zone", "apply"} {
		s := newScript(t, nil)
		s.cancelAt = at
		_, _, err := Guide(context.Background(), s, testFacts(), GuideOptions{})
		if !errors.Is(err, ErrCancelled) {
			t.Fatalf("cancel at %s: %v", at, err)
		}
		if s.asked[len(s.asked)-1] != at {
			t.Fatalf("questions went on after Ctrl-C at %s: %v", at, s.asked)
		}
	}
	s := newScript(t, map[string]any{"apply": false})
	if _, _, err := Guide(context.Background(), s, testFacts(), GuideOptions{}); !errors.Is(err, ErrCancelled) {
		t.Fatalf("final no: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Guide(ctx, newScript(t, nil), testFacts(), GuideOptions{}); !errors.Is(err, ErrCancelled) {
		t.Fatalf("cancelled context: %v", err)
	}
}

func TestGuidedJoin(t *testing.T) {
	s := newScript(t, map[string]any{"roles": []string{"compute", "storage"}, "disks": []string{"/dev/sdb"}})
	s.rejects["name"] = "node7"
	p, _, err := Guide(context.Background(), s, testFacts(), GuideOptions{Join: true, TokenName: "node2", Address: "192.168.5.10"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s.asked, []string{"name", "address", "roles", "disks", "region", "zone", "apply"}) {
		t.Fatalf("join asked %v (no site questions)", s.asked)
	}
	if got := s.defaults["roles"]; len(got.([]string)) != 0 {
		t.Fatalf("a joining node has no default roles, got %v", got)
	}
	if p.Name != "node2" || p.Address != "192.168.5.10:7443" || p.MySQLTopology != "" || p.Cluster != "" {
		t.Fatalf("join plan %+v", p)
	}
}

// TestGuidedAndPreseedSamePlan: the same answers give the same Plan from
// the wizard, from a hand-written preseed, and from the preseed the wizard's
// plan is written back as.
func TestGuidedAndPreseedSamePlan(t *testing.T) {
	f := testFacts()
	s := newScript(t, map[string]any{
		"name": "node1", "address": "10.0.0.1", "roles": []string{"control", "compute", "storage"},
		"mysql_topology": "multi", "disks": []string{"/dev/sdb", "/dev/sdd"}, "wipe:/dev/sdd": true,
		"floating_address": "10.0.0.100", "region": "eu", "zone": "a",
	})
	guided, gw, err := Guide(context.Background(), s, f, GuideOptions{Cluster: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	hand := `version: 1
cluster:
  name: lab
  mysql_topology: multi
  floating_address: 10.0.0.100
  region: eu
nodes:
  - name: node1
    address: 10.0.0.1
    roles: [converged]
    zone: a
    disks:
      - path: /dev/disk/by-id/ata-Samsung_SSD_870
      - path: /dev/sdd
        wipe: true
`
	ps, err := ParsePreseed("hand.yaml", []byte(hand), map[string][]roles.Role{"converged": roles.All})
	if err != nil {
		t.Fatal(err)
	}
	fromFile, fw, err := ps.Plan(f, Selection{})
	if err != nil {
		t.Fatal(err)
	}
	// The file names sdb by an alias: the same disk, kept as written.
	fromFile.Disks[0].Path = "/dev/sdb"
	if !reflect.DeepEqual(guided, fromFile) {
		t.Fatalf("guided and preseed plans differ:\n%+v\n%+v", guided, fromFile)
	}
	if !reflect.DeepEqual(gw, fw) {
		t.Fatalf("warnings differ:\n%v\n%v", gw, fw)
	}
	data, err := PlanPreseed(guided, f, false, gw).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePreseed("emitted.yaml", data, nil)
	if err != nil {
		t.Fatalf("emitted preseed does not parse: %v\n%s", err, data)
	}
	replay, _, err := back.Plan(f, Selection{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(guided, replay) {
		t.Fatalf("replayed plan differs:\n%+v\n%+v\n%s", guided, replay, data)
	}
	for _, w := range []string{"# 64 GiB installed RAM", "mysql_topology: multi", "wipe: true", "# Old SSD, 500 GiB, ssd, its gpt signature is erased", "# Warnings when this plan was made:"} {
		if !strings.Contains(string(data), w) {
			t.Errorf("emitted preseed lacks %q:\n%s", w, data)
		}
	}
}

func TestProbeSummary(t *testing.T) {
	s := ProbeSummary(smallFacts())
	for _, w := range []string{"2 GiB installed", "1 cores", "kvm       no:", "0 eligible for OSDs", "eth0 10.0.0.1/24", "error", "not ready for: control, compute"} {
		if !strings.Contains(s, w) {
			t.Errorf("summary lacks %q:\n%s", w, s)
		}
	}
	if strings.Contains(ProbeSummary(testFacts()), "Findings") {
		t.Errorf("a machine with nothing to report lists findings:\n%s", ProbeSummary(testFacts()))
	}
}

func ExamplePlanSummary() {
	f := testFacts()
	p := Plan{Name: "node1", Address: "10.0.0.1:7443", Roles: []roles.Role{roles.Control, roles.Storage}, Cluster: "cloud",
		MySQLTopology: controlplan.Multi, MySQLTopologyReason: f.Hardware.Decisions.MySQLReason, Disks: []api.DiskChoice{{Path: "/dev/sdb"}}}
	fmt.Println(PlanSummary(p, f, nil, false))
	// Output:
	// Plan: node1 bootstraps the new cluster "cloud"
	//   name             node1
	//   address          10.0.0.1:7443
	//   roles            control,storage
	//   region / zone    - / -
	//   MySQL topology   multi — 64 GiB installed RAM (64 GiB in online memory blocks, 63 GiB usable) >= 32 GiB: one MariaDB instance per service
	//   floating address -
	//   OSD disks        /dev/sdb (Samsung SSD 870, 2 TiB, ssd)
	//                    OSD disks: 1 chosen; this machine has 2 eligible disk(s) and 1 usable only after a wipe
	//   Ceph pools       size 1 = min(storage nodes, 3) with 1 storage node(s); it grows as storage nodes join
}
