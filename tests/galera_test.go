package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/tests/harness"
)

var dbwriterOnce struct {
	sync.Once
	path string
	err  error
}

func dbwriter(t testing.TB) string {
	t.Helper()
	dbwriterOnce.Do(func() {
		dir, err := filepathTemp()
		if err != nil {
			dbwriterOnce.err = err
			return
		}
		out := filepath.Join(dir, "dbwriter")
		cmd := exec.Command("go", "build", "-o", out, "./dbwriter")
		if b, err := cmd.CombinedOutput(); err != nil {
			dbwriterOnce.err = fmt.Errorf("build dbwriter: %v: %s", err, b)
			return
		}
		dbwriterOnce.path = out
	})
	if dbwriterOnce.err != nil {
		t.Fatal(dbwriterOnce.err)
	}
	return dbwriterOnce.path
}

func galeraSize(want int) func(api.DBInstance) error {
	return func(in api.DBInstance) error {
		if in.Replication != "galera" || !in.Primary || in.Size != want {
			return fmt.Errorf("replication %s primary %v size %d, want galera size %d", in.Replication, in.Primary, in.Size, want)
		}
		synced := 0
		for _, m := range in.Members {
			if m.State == "running" && m.WsrepStatus == "Primary" {
				synced++
			}
		}
		if synced != want {
			return fmt.Errorf("%d members report Primary", synced)
		}
		return nil
	}
}

// dsnOn is the identity service's DSN pointing at node nd.
func dsnOn(t testing.TB, via, nd *harness.Node) string {
	t.Helper()
	var cr api.DBCredentials
	if err := json.Unmarshal([]byte(via.MustRun(t, "database", "credentials", "identity", "--format", "json")), &cr); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s:%s@tcp(%s:3306)/%s?tls=cloudctl&cafile=%s", cr.User, cr.Password, nd.IP, cr.Database, caFile(t, cr.CA))
}

// caFile writes the control databases' CA where the test helpers read it
// (dbwriter's cafile= DSN parameter); the name follows the content.
func caFile(t testing.TB, caPEM string) string {
	t.Helper()
	if caPEM == "" {
		t.Fatal("database credentials carry no CA")
	}
	sum := sha256.Sum256([]byte(caPEM))
	p := filepath.Join(os.TempDir(), "cloudctl-test-ca-"+hex.EncodeToString(sum[:8])+".pem")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if err := os.WriteFile(p, []byte(caPEM), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(p) })
	return p
}

func formGalera(t *testing.T) (*harness.Cluster, time.Duration) {
	c := harness.New(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	bootstrap(t, n1, "control")
	waitInstances(t, n1, 90*time.Second, standaloneUp)
	n1.MustRun(t, "database", "check")
	join(t, n1, n2, "control")
	start := time.Now()
	join(t, n1, n3, "control")
	// The joiners receive their state over stunnel (TLS): ~60 s each here
	// under load, one donor at a time.
	for _, nd := range c.Nodes {
		waitInstances(t, nd, 5*time.Minute, galeraSize(3))
	}
	return c, time.Since(start)
}

// TestGalera covers the HA control layer: formation at the third control
// node, a writer through one node while another is killed and restarted,
// a partitioned minority, a total outage, and removal.
func TestGalera(t *testing.T) {
	c, formed := formGalera(t)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	t.Logf("third control join → size 3 everywhere: %s", formed)
	logRSS(t, c)
	// The data written before replication is on every node.
	for _, nd := range c.Nodes {
		out := nd.MustRun(t, "database", "check", "identity")
		if !strings.Contains(out, "identity") {
			t.Fatalf("check on %s: %s", nd.Name, out)
		}
	}
	w := dbwriter(t)
	ctx := context.Background()

	t.Run("writes survive a killed member", func(t *testing.T) {
		// The writer runs across the fault: the survivors must acknowledge
		// writes after the kill, and the restarted member must hold every
		// acknowledged row, the ones written while it was down included.
		wr := startWriter(t, n1, dsnOn(t, n1, n1))
		powerOff(t, n2)
		killed := time.Now()
		wr.ackedAfter(t, killed, 100, 3*time.Minute, "node2 was killed")
		n2.Start(t)
		restarted := time.Now()
		waitInstances(t, n1, 6*time.Minute, galeraSize(3))
		wr.ackedAfter(t, restarted, 20, 3*time.Minute, "node2 restarted")
		wr.stop()
		verifyEverywhere(t, n1, wr.ids(), n2)
		t.Logf("%d acknowledged writes (%d while node2 was down), all present on the restarted member", len(wr.ids()), wr.count(killed)-wr.count(restarted))
	})

	t.Run("partitioned minority refuses writes, then resyncs", func(t *testing.T) {
		n3.Partition(t)
		harness.Eventually(t, 60*time.Second, "minority refuses writes", func() error {
			out, err := n3.Exec(ctx, w, "try", dsnOn(t, n1, n3))
			if err == nil {
				return fmt.Errorf("write accepted on the minority")
			}
			if !strings.Contains(string(out), "1047") && !strings.Contains(string(out), "WSREP") {
				return fmt.Errorf("unexpected error: %s", out)
			}
			return nil
		})
		if out, err := n1.Exec(ctx, w, "try", dsnOn(t, n1, n1)); err != nil {
			t.Fatalf("majority refused a write: %s", out)
		}
		n3.Heal(t)
		waitInstances(t, n1, 3*time.Minute, galeraSize(3))
		harness.Eventually(t, 2*time.Minute, "healed node accepts writes again", func() error {
			if out, err := n3.Exec(ctx, w, "try", dsnOn(t, n1, n3)); err != nil {
				return fmt.Errorf("%s", out)
			}
			return nil
		})
	})

	t.Run("total outage and restart in any order", func(t *testing.T) {
		// The members hold different data at the cut: node1 is down while
		// writes go on through node2, then all lose power. Bootstrapping
		// from node1 (the first to start) would lose those writes. The
		// writer is a client that keeps its power, in node2's namespace.
		wr := startWriter(t, n2, dsnOn(t, n1, n2))
		powerOff(t, n1)
		wr.ackedAfter(t, time.Now(), 100, 3*time.Minute, "node1 was killed")
		for _, nd := range []*harness.Node{n2, n3} {
			powerOff(t, nd, wr)
		}
		start := time.Now()
		for _, nd := range []*harness.Node{n1, n3, n2} {
			nd.Start(t)
		}
		for _, nd := range []*harness.Node{n1, n2, n3} {
			waitInstances(t, nd, 6*time.Minute, galeraSize(3))
		}
		t.Logf("full restart → size 3 everywhere: %s", time.Since(start))
		wr.ackedAfter(t, start, 20, 3*time.Minute, "the full restart")
		wr.stop()
		verifyEverywhere(t, n1, wr.ids(), n1, n2, n3)
	})

	t.Run("remove shrinks the cluster", func(t *testing.T) {
		n1.MustRun(t, "cluster", "remove", "node3")
		waitInstances(t, n1, 2*time.Minute, galeraSize(2))
		st := mustStatus(t, n1)
		if ins := controlInstances(t, st); len(ins) == 0 || ins[0].Degraded == "" {
			t.Fatalf("a 2-member Galera cluster should be reported degraded: %+v", ins)
		}
		if l := st.Layer(api.LayerControl); l == nil || l.HA != api.HADegraded {
			t.Fatalf("the control layer should be degraded: %+v", l)
		}
		if out, err := n2.Exec(ctx, w, "try", dsnOn(t, n1, n2)); err != nil {
			t.Fatalf("write after removal: %s", out)
		}
	})
}
