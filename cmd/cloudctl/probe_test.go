package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jaypipes/ghw/pkg/snapshot"
	"gopkg.in/yaml.v3"
)

// runProbeCmd runs cloudctl with args and returns stdout and the error.
func runProbeCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app{out: &out, errOut: &errOut, in: strings.NewReader(""), getenv: func(string) string { return "" }}
	root := newRootCmd(a)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// ghwSnapshot returns the path of a snapshot shipped in ghw's module.
func ghwSnapshot(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/jaypipes/ghw").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/jaypipes/ghw: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "testdata", "snapshots", name+".tar.gz")
}

// r610 is the Dell R610 snapshot, unpacked (the CLI takes directories too).
func r610(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := snapshot.UnpackInto(ghwSnapshot(t, "linux-amd64-8581cf3a529e5d8b97ea876eade2f60d"), dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestProbeJSONContract checks the documented JSON shape (docs/probe.md).
func TestProbeJSONContract(t *testing.T) {
	out, err := runProbeCmd(t, "probe", "--snapshot", r610(t), "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	obj := func(m map[string]any, k string) map[string]any {
		t.Helper()
		o, ok := m[k].(map[string]any)
		if !ok {
			t.Fatalf("%s: not an object in %v", k, m)
		}
		return o
	}
	has := func(m map[string]any, keys ...string) {
		t.Helper()
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				t.Errorf("missing key %q in %v", k, m)
			}
		}
	}
	has(v, "source", "memory", "cpu", "kvm", "disks", "nics", "decisions", "findings", "roles")
	has(obj(v, "memory"), "physical_bytes", "usable_bytes", "installed_gib", "physical_source")
	has(obj(v, "cpu"), "arch", "cores", "threads", "virt_flags")
	has(obj(v, "kvm"), "verdict", "reason")
	dec := obj(v, "decisions")
	has(dec, "mysql_topology", "mysql_reason", "osd_disks", "wipe_candidates")
	if dec["mysql_topology"] != "multi" {
		t.Errorf("R610 (66 GiB installed): mysql_topology %v, want multi", dec["mysql_topology"])
	}
	if k := obj(v, "kvm"); k["verdict"] != "unknown" {
		t.Errorf("kvm verdict %v in a snapshot, want unknown", k["verdict"])
	}
	disks, _ := v["disks"].([]any)
	if len(disks) != 8 {
		t.Fatalf("R610: %d disks, want 8 (dm-0..4, sda, sr0, zram0)", len(disks))
	}
	for _, d := range disks {
		dm := d.(map[string]any)
		has(dm, "name", "path", "size_bytes", "type", "kind", "removable", "partitions", "holders", "mounts", "signatures", "checks", "eligible", "wipe_eligible", "reasons")
		if dm["eligible"] != false || len(dm["reasons"].([]any)) == 0 {
			t.Errorf("%v: eligible %v with reasons %v", dm["name"], dm["eligible"], dm["reasons"])
		}
		if dm["name"] == "sda" && (dm["holders"] != nil || dm["signatures"] != nil) {
			t.Errorf("sda: holders %v and signatures %v must be null (unknown) in a snapshot", dm["holders"], dm["signatures"])
		}
	}
	findings, _ := v["findings"].([]any)
	if len(findings) == 0 {
		t.Fatal("no findings")
	}
	for _, f := range findings {
		has(f.(map[string]any), "level", "role", "check", "message")
	}
}

func TestProbeTable(t *testing.T) {
	out, err := runProbeCmd(t, "probe", "--snapshot", r610(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^Hardware of snapshot `,
		`(?m)^memory\s+66 GiB installed, 62\.9 GiB usable`,
		`(?m)^kvm\s+unknown: CPU flag vmx is present`,
		`(?m)^sda\s+465 GiB\s+hdd\s+-\s+no\s+has partitions: sda1, sda2, sda3; in use: sda1 mounted at /boot/efi, sda2 mounted at /boot; not checked: signatures, holders, osd$`,
		`(?m)^sr0\s+.*\s+no\s+optical drive \(sr0\); removable media`,
		`(?m)^mysql topology\s+multi\s+66 GiB installed RAM`,
		`(?m)^osd disks\s+none\s+no disk is eligible`,
		`(?m)^error\s+storage\s+disks\s+0 disk\(s\) eligible`,
		`(?m)^Ready for: control, compute$`,
		`(?m)^Not ready for: storage \(1 error\(s\)\): fix the errors above$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("table does not match %s:\n%s", re, out)
		}
	}
}

func TestProbeRolesAndYAML(t *testing.T) {
	// A tarball this time, and only the storage role.
	out, err := runProbeCmd(t, "probe", "--snapshot", ghwSnapshot(t, "linux-arm64-c288e0776090cd558ef793b2a4e61939"), "--role", "storage", "--format", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		CPU struct {
			Arch string `yaml:"arch"`
		} `yaml:"cpu"`
		Roles    []string `yaml:"roles"`
		Findings []struct {
			Role string `yaml:"role"`
		} `yaml:"findings"`
	}
	if err := yaml.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if v.CPU.Arch != "arm64" || len(v.Roles) != 1 || v.Roles[0] != "storage" || len(v.Findings) == 0 {
		t.Errorf("yaml: %+v", v)
	}
	for _, f := range v.Findings {
		if f.Role != "storage" {
			t.Errorf("finding for %s, only storage was asked", f.Role)
		}
	}

	if _, err := runProbeCmd(t, "probe", "--role", "web"); err == nil || !strings.Contains(err.Error(), `unknown role "web"`) {
		t.Errorf("--role web: err = %v", err)
	}
	if _, err := runProbeCmd(t, "probe", "--snapshot", filepath.Join(t.TempDir(), "missing.tar.gz")); err == nil {
		t.Error("missing snapshot: no error")
	}
}

// TestProbeLive runs the probe on this machine: whatever it has, the JSON
// is well formed and the machine's own decisions are present.
func TestProbeLive(t *testing.T) {
	out, err := runProbeCmd(t, "probe", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Source    string `json:"source"`
		Decisions struct {
			MySQL string `json:"mysql_topology"`
		} `json:"decisions"`
		KVM struct {
			Verdict string `json:"verdict"`
		} `json:"kvm"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if v.Source != "live" || (v.Decisions.MySQL != "single" && v.Decisions.MySQL != "multi") {
		t.Errorf("live probe: %+v", v)
	}
	switch v.KVM.Verdict {
	case "yes", "no", "unknown":
	default:
		t.Errorf("kvm verdict %q", v.KVM.Verdict)
	}
}
