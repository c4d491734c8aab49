package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
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
	sealedOnlyOnControl(t, n1, n2)
}

// sealedOnlyOnControl: the control secrets are in the cluster database only
// sealed, and only the control node (ctl) holds their key. No file of any
// member's cluster database (the Raft log included, where every write stays)
// holds a service password in the clear, though the sealed rows are there
// (so the check sees the rows: here in ctl's log, as other is a dqlite
// spare, which keeps no copy; a voter's or standby's log is the same); the
// other node holds no key, and its `database credentials` names ctl.
func sealedOnlyOnControl(t *testing.T, ctl, other *harness.Node) {
	t.Helper()
	var pws []string
	harness.Eventually(t, time.Minute, "the control node's credentials", func() error {
		pws = pws[:0]
		for _, svc := range []string{"identity", "image"} {
			r := ctl.Run("database", "credentials", svc, "--format", "json")
			var cr api.DBCredentials
			if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &cr) != nil || cr.Password == "" {
				return fmt.Errorf("%s: %s%s", svc, r.Stdout, r.Stderr)
			}
			pws = append(pws, cr.Password)
		}
		return nil
	})
	oneSentence(t, other.Run("database", "credentials", "identity"), "only control nodes hold their key: run this on "+ctl.Name)
	if fi, err := os.Stat(filepath.Join(ctl.StateDir, "control", "seal.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the control node's seal key: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(other.StateDir, "control", "seal.key")); err == nil {
		t.Fatalf("%s holds the control seal key without the control role", other.Name)
	}
	// cloudd tells callers apart by their member certificate: the control
	// node's own gets the key, the other node's is refused.
	bin := buildHelper(t, "memberget")
	url := "https://" + ctl.IP + ":7443/1.0/control/seal-key"
	for _, tc := range []struct {
		nd   *harness.Node
		want string
	}{{other, "403 "}, {ctl, "200 "}} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := tc.nd.Exec(ctx, bin, url, filepath.Join(tc.nd.StateDir, "server.crt"), filepath.Join(tc.nd.StateDir, "server.key"))
		cancel()
		if err != nil || !strings.HasPrefix(string(out), tc.want) {
			t.Fatalf("GET seal-key with %s's certificate: want %q, got %v: %s", tc.nd.Name, tc.want, err, out)
		}
		if tc.nd == other && !strings.Contains(string(out), "is not one") {
			t.Fatalf("the refusal does not say why: %s", out)
		}
	}
	clear := map[string]string{}
	for i, pw := range pws {
		clear[fmt.Sprintf("a service password (%d)", i+1)] = pw
	}
	sealedInDatabases(t, []*harness.Node{ctl, other}, clear)
}
