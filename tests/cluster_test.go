package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/tests/harness"
)

// TestBootstrapJoinHA forms a 3-node cluster and checks voters and the HA line.
func TestBootstrapJoinHA(t *testing.T) {
	c := harness.New(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)

	boot := bootstrap(t, n1, "control,compute,storage")
	st := mustStatus(t, n1)
	if len(st.Members) != 1 || st.HA.Enabled || st.HA.Summary != "HA: no — 1 of 3 control nodes" {
		t.Fatalf("after bootstrap: %+v", st)
	}

	again := n1.Run("bootstrap", "--name", "node1", "--address", n1.IP)
	oneSentence(t, again, "already bootstrapped")

	j2 := join(t, n1, n2, "control")
	// The summary follows the control layer, which converges after the join.
	harness.Eventually(t, time.Minute, "HA line after 2 control nodes", func() error {
		st, err := status(t, n1)
		if err != nil {
			return err
		}
		if st.HA.Summary != "HA: no — 2 of 3 control nodes" {
			return fmt.Errorf("summary %q", st.HA.Summary)
		}
		if table := n1.MustRun(t, "status"); !strings.Contains(table, "HA: no — 2 of 3 control nodes") {
			return fmt.Errorf("status table lacks the HA line:\n%s", table)
		}
		return nil
	})

	start := time.Now()
	j3 := join(t, n1, n3, "control,compute")
	harness.Eventually(t, 30*time.Second, "3 dqlite voters", func() error {
		st, err := status(t, n2)
		if err != nil {
			return err
		}
		if v := voters(st); v != 3 {
			return fmt.Errorf("%d voters", v)
		}
		return nil
	})
	to3 := time.Since(start)

	// A follower whose trust store lost the leader (as one that was down
	// while the leader joined never had it) takes the leader's next
	// heartbeat on the cluster database's record of the members, and that
	// heartbeat puts the leader back in its trust store (the gate would
	// otherwise refuse it for ever). Checked at the end: heartbeats come
	// about once a minute.
	leader, follower := dqliteLeader(t, n1, c.Nodes), n3
	if leader == n3 {
		follower = n2
	}
	lost := filepath.Join(follower.StateDir, "truststore", leader.Name+".yaml")
	if err := os.Remove(lost); err != nil {
		t.Fatal(err)
	}
	removed := time.Now()
	// The cluster database and the control databases (Galera across the
	// three control nodes) become highly available by themselves. Only two
	// nodes have the compute role, so the HA line must not say yes: it
	// names the compute layer.
	harness.Eventually(t, 5*time.Minute, "cluster database and control databases HA", func() error {
		st, err := status(t, n3)
		if err != nil {
			return err
		}
		for _, name := range []string{"cluster-database", "control"} {
			l := st.Layer(name)
			if l == nil || l.HA != "yes" {
				return fmt.Errorf("layer %s: %+v (%s)", name, l, st.HA.Summary)
			}
		}
		if st.HA.Enabled || !strings.HasPrefix(st.HA.Summary, "HA: not yet — ") || !strings.Contains(st.HA.Summary, "LXD") {
			return fmt.Errorf("the HA line should name the compute layer: %q", st.HA.Summary)
		}
		return nil
	})
	st = mustStatus(t, n3)
	for _, m := range st.Members {
		if m.Status != "online" {
			t.Fatalf("%s is %s", m.Name, m.Status)
		}
	}
	if got := member(st, "node3").Roles; strings.Join(got, ",") != "control,compute" {
		t.Fatalf("node3 roles = %v", got)
	}
	t.Logf("bootstrap %s, join node2 %s, join node3 %s, from third join to 3 voters %s", boot, j2, j3, to3)
	harness.Eventually(t, 3*time.Minute, "the leader back in a follower's trust store", func() error {
		_, err := os.Stat(lost)
		return err
	})
	t.Logf("%s back in %s's trust store %s after it was removed", leader.Name, follower.Name, time.Since(removed).Round(time.Second))
	noGateRefusals(t, c.Nodes...)
}

// dqliteLeader is the node that leads the cluster database, as from sees it.
func dqliteLeader(t testing.TB, from *harness.Node, nodes []*harness.Node) *harness.Node {
	t.Helper()
	for _, m := range mustStatus(t, from).Members {
		if m.Leader {
			for _, nd := range nodes {
				if nd.Name == m.Name {
					return nd
				}
			}
		}
	}
	t.Fatalf("no cluster database leader in %s's status", from.Name)
	return nil
}

// TestNodeLoss kills one of three nodes: the others still accept a change,
// and the killed node comes back online when restarted.
func TestNodeLoss(t *testing.T) {
	c := harness.New(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	// Control nodes only: every layer present (cluster database, control
	// databases) can be highly available.
	bootstrap(t, n1, "control")
	join(t, n1, n2, "control")
	join(t, n1, n3, "control")
	// Every layer highly available first (3 dqlite voters, Galera of 3):
	// then losing any one node keeps every layer writable.
	harness.Eventually(t, 3*time.Minute, "HA: yes", func() error {
		st, err := status(t, n1)
		if err != nil {
			return err
		}
		if voters(st) != 3 || st.HA.Summary != "HA: yes" {
			return fmt.Errorf("%d voters, %s", voters(st), st.HA.Summary)
		}
		return nil
	})

	// Kill the dqlite leader: the hardest case.
	leader := dqliteLeader(t, n1, c.Nodes)
	var survivor *harness.Node
	for _, nd := range c.Nodes {
		if nd != leader {
			survivor = nd
			break
		}
	}
	leader.Kill(t)
	// A write to the cluster database that adds no layer (a role would):
	// issuing a join token, under a new name each try.
	try := 0
	took := harness.Eventually(t, 60*time.Second, "a cluster change with one node down", func() error {
		try++
		r := survivor.Run("cluster", "add", fmt.Sprintf("spare%d", try))
		if r.Code != 0 {
			return fmt.Errorf("%s", strings.TrimSpace(r.Stderr))
		}
		return nil
	})
	t.Logf("first write after SIGKILL of leader %s: %s", leader.Name, took)
	// Members see a node offline when its heartbeats stop: not at once.
	harness.Eventually(t, time.Minute, "killed node offline and HA degraded", func() error {
		st, err := status(t, survivor)
		if err != nil {
			return err
		}
		if m := member(st, leader.Name); m == nil || m.Status != "offline" {
			return fmt.Errorf("killed node should be offline: %+v", m)
		}
		if !strings.Contains(st.HA.Summary, "degraded") {
			return fmt.Errorf("HA line should say degraded: %q", st.HA.Summary)
		}
		return nil
	})

	leader.Start(t)
	harness.Eventually(t, 60*time.Second, "restarted node back online and up to date", func() error {
		st, err := status(t, leader)
		if err != nil {
			return err
		}
		for _, m := range st.Members {
			if m.Status != "online" {
				return fmt.Errorf("%s is %s", m.Name, m.Status)
			}
		}
		return nil
	})
	// The token issued while it was down is in the cluster database it reads.
	if out := leader.MustRun(t, "cluster", "tokens", "list"); !strings.Contains(out, fmt.Sprintf("spare%d", try)) {
		t.Fatalf("restarted node does not see the change made while it was down:\n%s", out)
	}
	noGateRefusals(t, c.Nodes...)
}

// TestPartition cuts one node off and heals it.
func TestPartition(t *testing.T) {
	c := harness.New(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	bootstrap(t, n1, "control")
	join(t, n1, n2, "control")
	join(t, n1, n3, "control")
	n3.Partition(t)
	harness.Eventually(t, 30*time.Second, "partitioned node seen offline", func() error {
		st, err := status(t, n1)
		if err != nil {
			return err
		}
		if m := member(st, "node3"); m == nil || m.Status != "offline" {
			return fmt.Errorf("node3: %+v", m)
		}
		return nil
	})
	harness.Eventually(t, 60*time.Second, "majority side accepts a change", func() error {
		if r := n1.Run("role", "add", "node2", "compute"); r.Code != 0 {
			return fmt.Errorf("%s", r.Stderr)
		}
		return nil
	})
	n3.Heal(t)
	harness.Eventually(t, 60*time.Second, "healed node online and caught up", func() error {
		st, err := status(t, n3)
		if err != nil {
			return err
		}
		if m := member(st, "node3"); m == nil || m.Status != "online" {
			return fmt.Errorf("node3: %+v", m)
		}
		if m := member(st, "node2"); m == nil || strings.Join(m.Roles, ",") != "control,compute" {
			return fmt.Errorf("node2 roles not replicated: %+v", m)
		}
		return nil
	})
}
