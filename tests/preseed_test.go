package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/api"
	boot "github.com/cloudctl/cloudctl/bootstrap"
	"github.com/cloudctl/cloudctl/tests/harness"
)

// TestPreseedCluster: one preseed file describes a three-node cluster; node1
// bootstraps from it, node2 and node3 join from it (each picks its own
// entry: node2 by its address, node3 by the token's name), and the cluster
// records the plan the file set. A file that does not fit the machine is
// refused with its position and changes nothing.
func TestPreseedCluster(t *testing.T) {
	c := harness.New(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	dir := t.TempDir()
	vip := c.Subnet + ".100"
	site := filepath.Join(dir, "site.yaml")
	writeTestFile(t, site, fmt.Sprintf(`version: 1
cluster:
  name: lab
  mysql_topology: multi
  floating_address: %s
  region: eu-west
nodes:
  - name: node1
    address: %s
    roles: [converged]
    zone: a
    disks: []
  - name: node2
    address: %s
    roles: [control, compute]
    zone: b
  - name: node3
    roles: [control, storage]
    zone: c
    disks: []
`, vip, n1.IP, n2.IP))

	// node2's address is not on node1 (its own namespace): refused, with the
	// place in the file, and nothing changes.
	bad := filepath.Join(dir, "bad.yaml")
	writeTestFile(t, bad, fmt.Sprintf("version: 1\nnodes:\n  - name: node1\n    address: %s\n    roles: [control]\n", n2.IP))
	r := n1.Run("bootstrap", "--preseed", bad)
	oneSentence(t, r, fmt.Sprintf("%s:4:14: nodes[0].address: address %s is not on this machine (its addresses: %s)", bad, n2.IP, n1.IP))
	if r := n1.Run("status"); r.Code == 0 || !strings.Contains(r.Stderr, "not part of a cluster yet") {
		t.Fatalf("a refused preseed changed the node: %s%s", r.Stdout, r.Stderr)
	}
	if r := n1.Run("preseed", "validate", bad); r.Code == 0 || !strings.Contains(r.Stdout, bad+":4:14: nodes[0].address") {
		t.Fatalf("validate of a bad file: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if out := n2.MustRun(t, "preseed", "validate", site); !strings.Contains(out, site+": ok") || !strings.Contains(out, "This machine is node2") {
		t.Fatalf("validate on node2: %s", out)
	}

	// node1 bootstraps from the file.
	r = n1.Run("bootstrap", "--preseed", site)
	if r.Code != 0 {
		t.Fatalf("bootstrap --preseed: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	saved := filepath.Join(n1.StateDir, "preseed.yaml")
	if !strings.Contains(r.Stdout, "Bootstrapped node1 ("+n1.IP+":7443) with roles control,compute,storage") || !strings.Contains(r.Stdout, "Saved the preseed of this install to "+saved) {
		t.Fatalf("bootstrap output:\n%s", r.Stdout)
	}
	if !strings.Contains(r.Stderr, "Warning: the storage role has no OSD disk") {
		t.Fatalf("storage without disks is not warned:\n%s", r.Stderr)
	}
	st, err := os.Stat(saved)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("saved preseed: %v %v", st, err)
	}
	data, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	ps, err := boot.ParsePreseed(saved, data, nil)
	if err != nil {
		t.Fatalf("the saved preseed does not parse: %v\n%s", err, data)
	}
	if ps.Cluster.Name != "lab" || ps.Cluster.MySQLTopology != boot.TopologyMulti || ps.Cluster.FloatingAddress != vip ||
		len(ps.Nodes) != 1 || ps.Nodes[0].Address != n1.IP+":7443" || ps.Nodes[0].Zone != "a" || ps.Nodes[0].Region != "eu-west" {
		t.Fatalf("saved preseed does not reproduce the run:\n%s", data)
	}
	oneSentence(t, n1.Run("bootstrap", "--preseed", saved), "already bootstrapped")

	// The cluster recorded the plan the file set.
	plan := clusterPlan(t, n1)
	if plan.Cluster != "lab" || plan.Bootstrap != "node1" || plan.MySQLTopology != "multi" || plan.FloatingAddress != vip ||
		!strings.Contains(plan.MySQLTopologyReason, "GiB installed RAM") {
		t.Fatalf("stored plan: %+v", plan)
	}

	// node2 joins: its entry is the one with its address.
	r = n2.Run("cluster", "join", "--token-file", tokenFile(t, n2, token(t, n1, "node2")), "--preseed", site)
	if r.Code != 0 || !strings.Contains(r.Stdout, "Joined as node2 ("+n2.IP+":7443) with roles control,compute") {
		t.Fatalf("node2 join: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// node3 joins: its entry has no address; it is the one named like the token.
	r = n3.Run("cluster", "join", "--token-file", tokenFile(t, n3, token(t, n1, "node3")), "--preseed", site)
	if r.Code != 0 || !strings.Contains(r.Stdout, "Joined as node3 ("+n3.IP+":7443) with roles control,storage") {
		t.Fatalf("node3 join: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if data, err := os.ReadFile(filepath.Join(n3.StateDir, "preseed.yaml")); err != nil || !strings.Contains(string(data), "name: node3") || strings.Contains(string(data), "mysql_topology") {
		t.Fatalf("node3's saved preseed (its own entry, no site settings): %v\n%s", err, data)
	}

	stat := mustStatus(t, n3)
	want := map[string]string{"node1": "control,compute,storage a", "node2": "control,compute b", "node3": "control,storage c"}
	for name, w := range want {
		m := member(stat, name)
		if m == nil || strings.Join(m.Roles, ",")+" "+m.Zone != w || m.Region != "eu-west" {
			t.Fatalf("%s: %+v, want %s in eu-west", name, m, w)
		}
	}
	if p := clusterPlan(t, n3); p.MySQLTopology != "multi" || p.MySQLTopologyReason != plan.MySQLTopologyReason {
		t.Fatalf("plan seen from node3: %+v", p)
	}
}

func clusterPlan(t *testing.T, nd *harness.Node) api.Plan {
	t.Helper()
	out := nd.MustRun(t, "cluster", "plan", "--format", "json")
	var p api.Plan
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("cluster plan json: %v\n%s", err, out)
	}
	table := nd.MustRun(t, "cluster", "plan")
	if !strings.Contains(table, "mysql topology") || !strings.Contains(table, p.MySQLTopology) {
		t.Fatalf("cluster plan table:\n%s", table)
	}
	return p
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
