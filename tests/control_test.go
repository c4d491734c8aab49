package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/tests/harness"
)

func databases(t testing.TB, nd *harness.Node) (api.Databases, error) {
	r := nd.Run("database", "list", "--format", "json")
	if r.Code != 0 {
		return api.Databases{}, fmt.Errorf("database list on %s: %s", nd.Name, r.Stderr)
	}
	var d api.Databases
	if err := json.Unmarshal([]byte(r.Stdout), &d); err != nil {
		return d, fmt.Errorf("database list json: %v", err)
	}
	return d, nil
}

// allServing waits until every instance has want members in a Primary component and is provisioned.
func waitInstances(t testing.TB, nd *harness.Node, timeout time.Duration, ok func(api.DBInstance) error) {
	t.Helper()
	harness.Eventually(t, timeout, "control instances", func() error {
		st, err := status(t, nd)
		if err != nil {
			return err
		}
		ins := controlInstances(t, st)
		if len(ins) == 0 {
			return fmt.Errorf("no instances yet")
		}
		for _, in := range ins {
			if err := ok(in); err != nil {
				return fmt.Errorf("%s: %v (%+v)", in.Name, err, in.Members)
			}
		}
		return nil
	})
}

func standaloneUp(in api.DBInstance) error {
	if !in.Primary || len(in.Members) != 1 || in.Members[0].State != "running" {
		return fmt.Errorf("not up")
	}
	return nil
}

func manifestOverlay(t testing.TB, dir, body string) string {
	p := filepath.Join(dir, "overlay.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestControlSingle: one instance for every service; each service connects with its own credentials and writes.
func TestControlSingle(t *testing.T) {
	c := harness.New(t, 1)
	n1 := c.Node(1)
	bootstrap(t, n1, "control")
	waitInstances(t, n1, 90*time.Second, standaloneUp)
	dbs, err := databases(t, n1)
	if err != nil {
		t.Fatal(err)
	}
	if dbs.Topology != "single" || len(dbs.Instances) != 1 || len(dbs.Services) != 8 {
		t.Fatalf("single topology: %+v", dbs)
	}
	out := n1.MustRun(t, "database", "check")
	for _, svc := range []string{"identity", "image", "compute", "compute_api", "placement", "network", "volume", "dashboard"} {
		if !strings.Contains(out, svc) {
			t.Fatalf("check did not cover %s:\n%s", svc, out)
		}
	}
	dsn := strings.TrimSpace(n1.MustRun(t, "database", "credentials", "identity"))
	if !strings.HasPrefix(dsn, "identity:") || !strings.Contains(dsn, "@tcp("+n1.IP+":3306)/identity") {
		t.Fatalf("dsn: %s", dsn)
	}
	oneSentence(t, n1.Run("database", "credentials", "nova"), `no service "nova"`)
	// A service's credentials do not open another service's database.
	var cr api.DBCredentials
	if err := json.Unmarshal([]byte(n1.MustRun(t, "database", "credentials", "image", "--format", "json")), &cr); err != nil {
		t.Fatal(err)
	}
	r := n1.Run("database", "check", "nosuch")
	oneSentence(t, r, `no service "nosuch"`)
	// Credentials are answered on the control socket only (root on the
	// node): over TCP, even a member's own certificate is refused.
	fi, err := os.Stat(filepath.Join(n1.StateDir, "control.socket"))
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != 0 || fi.Mode().Perm()&0o007 != 0 {
		t.Fatalf("the control socket is %v, owner %v: want no access for others, owned by root", fi.Mode(), fi.Sys())
	}
	bin := buildHelper(t, "memberget")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := n1.Exec(ctx, bin, "https://"+n1.IP+":7443/1.0/databases/identity/credentials", filepath.Join(n1.StateDir, "server.crt"), filepath.Join(n1.StateDir, "server.key"))
	if err != nil || !strings.HasPrefix(string(got), "403 ") || strings.Contains(string(got), cr.Password) {
		// Only the status: a 200 would hold the password.
		t.Fatalf("credentials over TCP with the member's certificate: want 403, got %v: %.4s", err, got)
	}
}

// TestControlMulti: one instance per service on its own port, buffers sized
// from RAM; the manifest overlay lowers the threshold so this machine picks multi.
func TestControlMulti(t *testing.T) {
	dir := t.TempDir()
	overlay := manifestOverlay(t, dir, "mysql:\n  multi_threshold_gib: 1\n")
	c := harness.NewWithOptions(t, 1, harness.Options{DaemonArgs: []string{"--manifest", overlay}})
	n1 := c.Node(1)
	bootstrap(t, n1, "control,compute")
	waitInstances(t, n1, 2*time.Minute, standaloneUp)
	dbs, err := databases(t, n1)
	if err != nil {
		t.Fatal(err)
	}
	if dbs.Topology != "multi" || len(dbs.Instances) != 8 || !strings.Contains(dbs.Reason, ">= 1 GiB") {
		t.Fatalf("multi topology: %+v", dbs)
	}
	ports := map[int]bool{}
	for _, in := range dbs.Instances {
		if len(in.Services) != 1 || in.Name != "mysql-"+in.Services[0] || ports[in.Port] {
			t.Fatalf("instance layout: %+v", in)
		}
		ports[in.Port] = true
	}
	out := n1.MustRun(t, "database", "check")
	if strings.Count(out, n1.IP+":") != 8 {
		t.Fatalf("expected 8 services checked on 8 endpoints:\n%s", out)
	}
	// The topology was fixed at bootstrap.
	table := n1.MustRun(t, "database", "list")
	if !strings.Contains(table, "MySQL topology: multi") {
		t.Fatalf("list: %s", table)
	}
	logRSS(t, c)
}

// logRSS reports the resident memory of each mariadbd the cluster runs.
func logRSS(t testing.TB, c *harness.Cluster) {
	for _, nd := range c.Nodes {
		out, err := nd.Exec(t.Context(), "sh", "-c", "for p in $(pgrep -x mariadbd); do grep -q -- '"+nd.StateDir+"/' /proc/$p/cmdline && grep VmRSS /proc/$p/status; done; true")
		if err == nil {
			t.Logf("%s mariadbd RSS: %s", nd.Name, strings.Join(strings.Fields(string(out)), " "))
		}
	}
}

// controlInstances are the MariaDB instances of the status's control layer.
func controlInstances(t testing.TB, st api.Status) []api.DBInstance {
	t.Helper()
	l := st.Layer(api.LayerControl)
	if l == nil || len(l.Details) == 0 {
		return nil
	}
	var ins []api.DBInstance
	if err := json.Unmarshal(l.Details, &ins); err != nil {
		t.Fatalf("control layer details: %v", err)
	}
	return ins
}
