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
	if err := os.WriteFile(p, []byte(caPEM), 0o644); err != nil {
		t.Fatal(err)
	}
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
		var acked []byte
		var werr error
		done := make(chan struct{})
		go func() {
			acked, werr = n1.Output(ctx, w, "write", dsnOn(t, n1, n1), "20")
			close(done)
		}()
		time.Sleep(3 * time.Second)
		n2.Kill(t)
		time.Sleep(5 * time.Second)
		n2.Start(t)
		<-done
		if werr != nil {
			t.Fatalf("writer: %v: %s", werr, acked)
		}
		ids := strings.Fields(string(acked))
		if len(ids) < 100 {
			t.Fatalf("only %d acknowledged writes: the survivors did not keep accepting writes", len(ids))
		}
		waitInstances(t, n1, 3*time.Minute, galeraSize(3))
		// Every acknowledged write is on the restarted node.
		verify := exec.Command("ip", "netns", "exec", n2.NS, w, "verify", dsnOn(t, n1, n2))
		verify.Stdin = strings.NewReader(strings.Join(ids, "\n"))
		if out, err := verify.CombinedOutput(); err != nil {
			t.Fatalf("acknowledged writes missing on %s: %v: %s", n2.Name, err, out)
		}
		t.Logf("%d acknowledged writes, all present on the restarted member", len(ids))
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
		acked, err := n2.Output(ctx, w, "write", dsnOn(t, n1, n2), "3")
		if err != nil {
			t.Fatalf("writer: %v %s", err, acked)
		}
		for _, nd := range []*harness.Node{n1, n2, n3} {
			nd.Kill(t)
		}
		start := time.Now()
		for _, nd := range []*harness.Node{n3, n1, n2} {
			nd.Start(t)
		}
		for _, nd := range c.Nodes {
			waitInstances(t, nd, 4*time.Minute, galeraSize(3))
		}
		t.Logf("full restart → size 3 everywhere: %s", time.Since(start))
		verify := exec.Command("ip", "netns", "exec", n3.NS, w, "verify", dsnOn(t, n1, n3))
		verify.Stdin = strings.NewReader(string(acked))
		if out, err := verify.CombinedOutput(); err != nil {
			t.Fatalf("acknowledged writes lost in the outage: %v: %s", err, out)
		}
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
