package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/bootstrap"
)

// runCLI runs cloudctl in-process with stdin and returns stdout, stderr and the error.
func runCLI(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app{out: &out, errOut: &errOut, in: strings.NewReader(stdin), getenv: func(string) string { return "" }}
	root := newRootCmd(a)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

func preseedFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func needAddress(t *testing.T) {
	t.Helper()
	if a, err := bootstrap.DefaultAddress(); err != nil || a == "" {
		t.Skip("this machine has no network address")
	}
}

func TestPreseedExampleCommand(t *testing.T) {
	out, _, err := runCLI(t, "", "preseed", "example")
	if err != nil || out != bootstrap.ExampleYAML() {
		t.Fatalf("preseed example: %v\n%s", err, out)
	}
	if _, err := bootstrap.ParsePreseed("example", []byte(out), (&app{}).roleGroups()); err != nil {
		t.Fatalf("the example is not valid: %v", err)
	}
}

func TestPreseedValidateCommand(t *testing.T) {
	needAddress(t)
	// One entry without an address: it is this machine's, on its default address.
	ok := preseedFile(t, "version: 1\nnodes:\n  - name: node1\n    roles: [control-plane]\n")
	out, _, err := runCLI(t, "", "preseed", "validate", ok)
	if err != nil || !strings.HasPrefix(out, ok+": ok\n") || !strings.Contains(out, "This machine is node1") {
		t.Fatalf("valid file: %v\n%s", err, out)
	}

	bad := preseedFile(t, "version: 1\nnodes:\n  - name: node1\n    roles: [control, gpu]\n    adress: 10.0.0.1\n")
	out, _, err = runCLI(t, "", "preseed", "validate", bad)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || !strings.Contains(err.Error(), "2 problems; nothing was applied") {
		t.Fatalf("invalid file: %v", err)
	}
	for _, w := range []string{bad + `:4:22: nodes[0].roles[1]: unknown role "gpu"`, bad + `:5:5: nodes[0].adress: unknown key "adress"; did you mean "address"?`} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}

	// An address that is not on this machine, found by --name.
	other := preseedFile(t, "version: 1\nnodes:\n  - name: node1\n    roles: [control]\n  - name: node2\n    address: 203.0.113.77\n    roles: [compute]\n")
	out, _, err = runCLI(t, "", "preseed", "validate", other, "--name", "node2", "--format", "json")
	var res struct {
		OK     bool `json:"ok"`
		Errors []struct {
			Line   int    `json:"line"`
			Column int    `json:"column"`
			Path   string `json:"path"`
		} `json:"errors"`
	}
	if jerr := json.Unmarshal([]byte(out), &res); jerr != nil || err == nil || res.OK || len(res.Errors) != 1 ||
		res.Errors[0].Path != "nodes[1].address" || res.Errors[0].Line != 6 || res.Errors[0].Column != 14 {
		t.Fatalf("address not here: %v %v\n%s", err, jerr, out)
	}
}

func TestBootstrapDryRunPaths(t *testing.T) {
	needAddress(t)
	state := filepath.Join(t.TempDir(), "state") // no daemon, not even a directory
	snap := snapshotFile(t, "linux-amd64-8581cf3a529e5d8b97ea876eade2f60d")

	// Flags: the plan of a 66 GiB snapshot, control only.
	out, _, err := runCLI(t, "", "--state-dir", state, "bootstrap", "--dry-run", "--snapshot", snap, "--name", "n1", "--role", "converged", "--disk", "none", "--zone", "z9")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := bootstrap.ParsePreseed("out", []byte(out), nil)
	if err != nil {
		t.Fatalf("dry run output: %v\n%s", err, out)
	}
	n := ps.Nodes[0]
	if n.Name != "n1" || strings.Join(n.Roles, ",") != "control,compute,storage" || n.Zone != "z9" || n.Disks == nil || len(n.Disks) != 0 ||
		ps.Cluster.MySQLTopology != bootstrap.TopologyMulti || !strings.Contains(out, "# 66 GiB installed RAM") {
		t.Fatalf("flags plan:\n%s", out)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("a dry run touched the state directory: %v", err)
	}

	// The same from a preseed on stdin gives the same plan.
	again, _, err := runCLI(t, out, "--state-dir", state, "bootstrap", "--dry-run", "--snapshot", snap, "--preseed", "-")
	if err != nil || body(again) != body(out) {
		t.Fatalf("stdin preseed: %v\n%s\n---\n%s", err, again, out)
	}

	// --accept-defaults asks nothing and takes the defaults: all three roles,
	// every eligible disk (none in a snapshot), the topology of 66 GiB.
	def, _, err := runCLI(t, "", "--state-dir", state, "bootstrap", "--dry-run", "--snapshot", snap, "--accept-defaults", "--name", "n1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(def, "roles: [control, compute, storage]") || !strings.Contains(def, "mysql_topology: multi") || !strings.Contains(def, "disks: []") {
		t.Fatalf("accept-defaults plan:\n%s", def)
	}

	// Bad input: one sentence each, nothing written.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"bootstrap", "--guided", "--preseed", "x.yaml"}, "use one of them"},
		{[]string{"bootstrap", "--guided", "--accept-defaults"}, "use one of them"},
		{[]string{"bootstrap", "--dry-run", "--mysql-topology", "big"}, `unknown MySQL topology "big"`},
		{[]string{"bootstrap", "--preseed", "x.yaml", "--role", "control"}, "--role cannot be combined with --preseed"},
		{[]string{"bootstrap", "--snapshot", snap}, "only goes with --dry-run"},
		{[]string{"bootstrap", "--wipe"}, "--wipe needs --disk"},
		{[]string{"bootstrap", "--dry-run", "--guided"}, "--guided needs a terminal"},
		{[]string{"bootstrap", "--dry-run", "--role", "gpu"}, `unknown role "gpu"`},
		{[]string{"bootstrap", "--dry-run", "--address", "203.0.113.77"}, "address 203.0.113.77 is not on this machine"},
		{[]string{"bootstrap", "--dry-run", "--disk", "/dev/nope"}, "disk /dev/nope does not exist on this machine"},
		{[]string{"bootstrap", "--dry-run", "--preseed", "/nonexistent/site.yaml"}, "read the preseed"},
	} {
		out, _, err := runCLI(t, "", append([]string{"--state-dir", state}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) || out != "" {
			t.Errorf("%v: error %v, stdout %q; want %q", c.args, err, out, c.want)
		}
	}
}

func TestJoinDryRun(t *testing.T) {
	needAddress(t)
	tok, err := api.JoinToken{Name: "node2", Cluster: "cloud", Secret: "s", Fingerprint: "f",
		Addresses: []string{"203.0.113.1:7443"}, ExpiresAt: time.Now().Add(time.Hour)}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	if _, _, err := runCLI(t, "", "--state-dir", state, "cluster", "join", tok, "--dry-run"); err == nil || !strings.Contains(err.Error(), "choose this node's roles: --role ROLES") {
		t.Fatalf("join without roles: %v", err)
	}
	out, _, err := runCLI(t, "", "--state-dir", state, "cluster", "join", tok, "--dry-run", "--role", "compute")
	if err != nil {
		t.Fatal(err)
	}
	ps, err := bootstrap.ParsePreseed("out", []byte(out), nil)
	if err != nil || ps.Nodes[0].Name != "node2" || ps.Cluster.Name != "" || ps.Cluster.MySQLTopology != "" {
		t.Fatalf("join plan (named after the token, no site settings): %v\n%s", err, out)
	}
	// A preseed for another cluster is refused at its cluster.name.
	other := preseedFile(t, "version: 1\ncluster:\n  name: prod\nnodes:\n  - name: node2\n    roles: [compute]\n")
	_, _, err = runCLI(t, "", "--state-dir", state, "cluster", "join", tok, "--dry-run", "--preseed", other)
	if err == nil || !strings.Contains(err.Error(), other+`:3:9: cluster.name: this preseed describes cluster "prod" but the token is for cluster "cloud"`) {
		t.Fatalf("foreign preseed: %v", err)
	}
}
