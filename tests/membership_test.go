package tests

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/tests/harness"
)

func TestRoles(t *testing.T) {
	c := harness.New(t, 2)
	n1, n2 := c.Node(1), c.Node(2)
	bootstrap(t, n1, "control")
	join(t, n1, n2, "compute")

	out := n2.MustRun(t, "role", "add", "node2", "storage,control")
	if !strings.Contains(out, "node2 now has roles: control,compute,storage") {
		t.Fatalf("role add: %s", out)
	}
	// A new control node fetches the control seal key from node1; once it
	// leaves the role it deletes its copy.
	key := filepath.Join(n2.StateDir, "control", "seal.key")
	harness.Eventually(t, time.Minute, "node2 fetched the control seal key", func() error {
		fi, err := os.Stat(key)
		if err != nil {
			return err
		}
		if fi.Mode().Perm() != 0o600 {
			return fmt.Errorf("mode %v", fi.Mode())
		}
		return nil
	})
	n1.MustRun(t, "role", "remove", "node2", "control")
	if got := strings.Join(member(mustStatus(t, n1), "node2").Roles, ","); got != "compute,storage" {
		t.Fatalf("roles after remove = %s", got)
	}
	harness.Eventually(t, time.Minute, "node2 deleted its copy of the seal key", func() error {
		if _, err := os.Stat(key); !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	// Adding a role the node has already changes nothing and is not an error.
	n1.MustRun(t, "role", "add", "node2", "compute")

	oneSentence(t, n1.Run("role", "add", "node2", "database"), `unknown role "database"`)
	oneSentence(t, n1.Run("role", "remove", "node2", "control"), "does not have the control role")
	oneSentence(t, n1.Run("role", "remove", "node1", "control"), "would be left with no role")
	n1.MustRun(t, "role", "add", "node1", "compute")
	oneSentence(t, n1.Run("role", "remove", "node1", "control"), "only copy of the control-plane databases")
	oneSentence(t, n1.Run("role", "add", "node9", "compute"), `no node "node9"`)
	oneSentence(t, n1.Run("role", "add", "node2"), "usage: cloudctl role add NODE ROLE")
	if got := strings.Join(member(mustStatus(t, n2), "node2").Roles, ","); got != "compute,storage" {
		t.Fatalf("failed role changes changed roles: %s", got)
	}
	js := n1.MustRun(t, "cluster", "list", "--format", "yaml")
	if !strings.Contains(js, "name: node2") || !strings.Contains(js, "- storage") {
		t.Fatalf("yaml listing: %s", js)
	}
}

func TestRemove(t *testing.T) {
	c := harness.New(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	bootstrap(t, n1, "control")
	join(t, n1, n2, "compute")
	join(t, n1, n3, "storage")

	oneSentence(t, n1.Run("cluster", "remove", "node9"), `no member "node9"`)

	n1.MustRun(t, "cluster", "remove", "node3")
	harness.Eventually(t, 30*time.Second, "node3 gone", func() error {
		st, err := status(t, n1)
		if err != nil {
			return err
		}
		if len(st.Members) != 2 || member(st, "node3") != nil {
			return fmt.Errorf("members: %+v", st.Members)
		}
		return nil
	})
	// The removed node can join again with a new token.
	harness.Eventually(t, 30*time.Second, "node3 reset after removal", func() error {
		r := n3.Run("status")
		if r.Code == 0 || !strings.Contains(r.Stderr, "not part of a cluster") {
			return fmt.Errorf("node3 status: %d %s%s", r.Code, r.Stdout, r.Stderr)
		}
		return nil
	})
	join(t, n1, n3, "storage")
	if st := mustStatus(t, n3); len(st.Members) != 3 {
		t.Fatalf("rejoin: %+v", st.Members)
	}

	n2.Kill(t)
	harness.Eventually(t, 30*time.Second, "node2 offline", func() error {
		st, err := status(t, n1)
		if err != nil {
			return err
		}
		if m := member(st, "node2"); m == nil || m.Status != "offline" {
			return fmt.Errorf("node2: %+v", m)
		}
		return nil
	})
	oneSentence(t, n1.Run("cluster", "remove", "node2"), "--force")
	harness.Eventually(t, 60*time.Second, "forced removal", func() error {
		if r := n1.Run("cluster", "remove", "node2", "--force"); r.Code != 0 {
			return fmt.Errorf("%s", r.Stderr)
		}
		return nil
	})
	st := mustStatus(t, n1)
	if len(st.Members) != 2 || member(st, "node2") != nil {
		t.Fatalf("after forced removal: %+v", st.Members)
	}
}
