package tests

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/tests/harness"
)

// TestManifestKeptInCluster: the manifest overlay used at bootstrap is stored
// in the cluster database, and a joining node (started without it) uses it.
func TestManifestKeptInCluster(t *testing.T) {
	overlay := manifestOverlay(t, t.TempDir(), "mysql:\n  multi_threshold_gib: 7\ncontrol_plane:\n  services: [identity, image]\nrole_groups:\n  edge: [compute, storage]\n")
	c := harness.NewWithOptions(t, 2, harness.Options{NodeArgs: map[int][]string{1: {"--manifest", overlay}}})
	n1, n2 := c.Node(1), c.Node(2)
	bootstrap(t, n1, "control")
	join(t, n1, n2, "compute")
	var m struct {
		MySQL struct {
			MultiThresholdGiB int `json:"multi_threshold_gib"`
		} `json:"mysql"`
		ControlPlane struct {
			Services []string `json:"services"`
		} `json:"control_plane"`
	}
	if err := json.Unmarshal([]byte(n2.MustRun(t, "manifest", "show", "--format", "json")), &m); err != nil {
		t.Fatal(err)
	}
	if m.MySQL.MultiThresholdGiB != 7 || len(m.ControlPlane.Services) != 2 {
		t.Fatalf("joiner does not see the cluster's manifest: %+v", m)
	}
	// A role group defined only in the bootstrap overlay works for `role add`.
	out := n2.MustRun(t, "role", "add", "node2", "edge")
	if !strings.Contains(out, "node2 now has roles: compute,storage") {
		t.Fatalf("role group from the cluster's manifest: %s", out)
	}
	dbs, err := databases(t, n2)
	if err != nil {
		t.Fatal(err)
	}
	if dbs.Topology != "multi" || len(dbs.Services) != 2 {
		t.Fatalf("the control layer did not follow the manifest: %+v", dbs)
	}
}
