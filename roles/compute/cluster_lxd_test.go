package compute

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lxd "github.com/canonical/lxd/client"
	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
)

// TestLXDCluster runs the driver against real LXD in three namespaces: one
// node forms the cluster and runs a container, two more join, a container
// launches on each member, a SIGKILLed member's peers keep launching and it
// comes back, the leader losing the role hands its leadership over,
// evacuates and leaves, a move LXD left half-done is finished, the only
// database voter of two members stays, and a member evacuated to leave that
// has the role again is restored.
func TestLXDCluster(t *testing.T) {
	r := newRig(t, 3)
	img := busyboxImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	n1, n2, n3 := r.node("node1"), r.node("node2"), r.node("node3")
	// Only node1 has the role at first.
	r.setRoles("node2", nil)
	r.setRoles("node3", nil)
	for _, n := range r.nodes {
		r.start(n)
	}
	formed := r.eventually(2*time.Minute, "node1 forms the LXD cluster", func() error {
		on, err := r.online(ctx, n1)
		if err != nil {
			return err
		}
		if len(on) != 1 {
			return fmt.Errorf("online: %v", on)
		}
		c := r.lxd(n1)
		if _, _, err := c.GetProfile("default"); err != nil {
			return err
		}
		p, _, err := c.GetProfile("default")
		if err != nil || p.Devices["root"]["pool"] != PoolName || p.Devices["eth0"]["network"] != NetworkName {
			return fmt.Errorf("default profile not ready: %v %v", p, err)
		}
		return nil
	})
	ps, _ := r.state(ctx, n1)
	t.Logf("node1: LXD ready in %.2fs, cluster formed %.2fs after start, bootstrap %.2fs", ps.ReadySeconds, formed.Seconds(), ps.JoinSeconds)
	c1 := r.lxd(n1)
	importImage(t, c1, img)

	t.Run("one node launches and execs", func(t *testing.T) {
		defer func() {
			var g map[string]string
			if err := agentCall(ctx, r.root, "node1", "GET", "guard/node1", nil, &g); err != nil || !strings.Contains(g["refused"], "no other compute node is online") {
				t.Fatalf("guard on the only member with an instance: %v %v", g, err)
			}
			t.Logf("guard: %s", g["refused"])
		}()
		t0 := time.Now()
		if err := launch(ctx, c1, "", "solo"); err != nil {
			t.Fatal(err)
		}
		t.Logf("launch on one node: %s", time.Since(t0).Round(time.Millisecond))
		out, err := execIn(ctx, c1, "solo", "sh", "-c", "echo hello from $(hostname)")
		if err != nil || strings.TrimSpace(out) != "hello from solo" {
			t.Fatalf("exec: %q %v", out, err)
		}
	})

	t.Run("three nodes form a cluster", func(t *testing.T) {
		t0 := time.Now()
		// One join at a time, as cloudctl users join nodes: with both
		// given the role at once, node3's LXD hung in its join once
		// (an open problem of concurrent LXD joins, docs/compute.md).
		for i, name := range []string{"node2", "node3"} {
			want := i + 2
			r.setRoles(name, []roles.Role{roles.Compute})
			r.eventually(3*time.Minute, fmt.Sprintf("%d LXD members online", want), func() error {
				on, err := r.online(ctx, n1)
				if err != nil {
					return err
				}
				if len(on) != want {
					return fmt.Errorf("online: %v", on)
				}
				return nil
			})
		}
		t.Logf("two members joined in %s", time.Since(t0).Round(time.Millisecond))
		for _, n := range []*rigNode{n2, n3} {
			var ps PeerState
			// The cluster lists a member before its own join operation returns.
			r.eventually(time.Minute, n.name+" reports its join", func() error {
				var err error
				if ps, err = r.state(ctx, n); err != nil {
					return err
				}
				if ps.JoinSeconds == 0 {
					return fmt.Errorf("no join time yet")
				}
				return nil
			})
			t.Logf("%s: LXD ready in %.2fs, join %.2fs, RSS %d KiB", n.name, ps.ReadySeconds, ps.JoinSeconds, ps.RSSKiB)
		}
		for _, n := range r.nodes {
			t0 := time.Now()
			name := "on-" + n.name
			if err := launch(ctx, c1, n.name, name); err != nil {
				t.Fatal(err)
			}
			t.Logf("launch on %s: %s", n.name, time.Since(t0).Round(time.Millisecond))
			in, _, err := c1.GetInstance(name)
			if err != nil || in.Location != n.name {
				t.Fatalf("%s: location %v %v", name, in, err)
			}
		}
		var l api.Layer
		r.eventually(time.Minute, "status shows HA", func() error {
			if err := agentCall(ctx, r.root, "node2", "GET", "status", nil, &l); err != nil {
				return err
			}
			if l.HA != api.HAYes || len(l.Members) != 3 {
				return fmt.Errorf("layer: %+v", l)
			}
			return nil
		})
		for _, m := range l.Members {
			if m.State != "online" || !strings.Contains(m.Detail, "instance(s)") {
				t.Fatalf("member %+v", m)
			}
		}
		t.Logf("status: %+v", l.Members)
	})

	t.Run("access token works once", func(t *testing.T) {
		var a api.ComputeAccess
		if err := agentCall(ctx, r.root, "node1", "POST", "compute/access", api.ComputeAccessRequest{Name: "alice"}, &a); err != nil {
			t.Fatal(err)
		}
		if a.Address != n1.ip+":8443" || a.ExpiresAt.IsZero() {
			t.Fatalf("access: %+v", a)
		}
		var pending []api.ComputeAccess
		if err := agentCall(ctx, r.root, "node1", "GET", "compute/access", nil, &pending); err != nil || len(pending) != 1 || pending[0].Name != "alice" {
			t.Fatalf("pending: %+v %v", pending, err)
		}
		lxc := func(conf string, args ...string) (string, error) {
			full := append([]string{"netns", "exec", n3.ns, "env", "LXD_CONF=" + conf, "lxc"}, args...)
			out, err := exec.CommandContext(ctx, "ip", full...).CombinedOutput()
			return string(out), err
		}
		conf1, conf2 := filepath.Join(r.root, "lxc1"), filepath.Join(r.root, "lxc2")
		if out, err := lxc(conf1, "remote", "add", "cloud", a.Token); err != nil {
			t.Fatalf("lxc remote add: %v: %s", err, out)
		}
		out, err := lxc(conf1, "list", "cloud:", "--format", "csv", "-c", "nL")
		if err != nil || !strings.Contains(out, "on-node2,node2") {
			t.Fatalf("lxc list: %v: %s", err, out)
		}
		if out, err := lxc(conf2, "remote", "add", "cloud", a.Token); err == nil {
			t.Fatalf("second use of the token was accepted: %s", out)
		} else {
			if !strings.Contains(out, "No matching certificate add operation") {
				t.Fatalf("second use refused for another reason: %s", out)
			}
		}
		// Revocation: a second token revoked before use is refused.
		var b api.ComputeAccess
		if err := agentCall(ctx, r.root, "node1", "POST", "compute/access", api.ComputeAccessRequest{Name: "bob"}, &b); err != nil {
			t.Fatal(err)
		}
		if err := agentCall(ctx, r.root, "node1", "DELETE", "compute/access/bob", nil, nil); err != nil {
			t.Fatal(err)
		}
		if out, err := lxc(filepath.Join(r.root, "lxc3"), "remote", "add", "cloud", b.Token); err == nil {
			t.Fatalf("revoked token was accepted: %s", out)
		}
	})

	t.Run("SIGKILL one member", func(t *testing.T) {
		r.kill(n3)
		r.eventually(2*time.Minute, "node3 seen offline", func() error {
			on, err := r.online(ctx, n1)
			if err != nil {
				return err
			}
			if len(on) != 2 {
				return fmt.Errorf("online: %v", on)
			}
			return nil
		})
		for _, n := range []*rigNode{n1, n2} {
			if err := launch(ctx, c1, n.name, "after-kill-"+n.name); err != nil {
				t.Fatal(err)
			}
		}
		r.start(n3)
		back := r.eventually(2*time.Minute, "node3 back in the LXD cluster", func() error {
			on, err := r.online(ctx, n1)
			if err != nil {
				return err
			}
			if len(on) != 3 {
				return fmt.Errorf("online: %v", on)
			}
			return nil
		})
		t.Logf("node3 back online %s after restart", back.Round(time.Millisecond))
		// The container outlived LXD; once node3's LXD has it again, exec works.
		r.eventually(time.Minute, "exec in the container on node3", func() error {
			out, err := execIn(ctx, c1, "on-node3", "echo", "alive")
			if err != nil || strings.TrimSpace(out) != "alive" {
				return fmt.Errorf("exec: %q %v", out, err)
			}
			return nil
		})
	})

	// The LXD leader loses the role: it hands its leadership over (LXD
	// does when it stops), evacuates and leaves; the others go on.
	var keep []*rigNode
	t.Run("the leader's role removal hands over, evacuates and leaves", func(t *testing.T) {
		gone := r.leaderAmong(c1, r.nodes, "an LXD leader that can hand its lead over", func(blocked error) bool { return blocked == nil })
		keep = nil
		for _, n := range r.nodes {
			if n != gone {
				keep = append(keep, n)
			}
		}
		c1 = r.lxd(keep[0])
		// LXD may mark a member offline for a heartbeat or two: the guard
		// then refuses for a moment.
		r.eventually(time.Minute, "the guard lets "+gone.name+" go", func() error {
			var g map[string]string
			if err := agentCall(ctx, r.root, keep[0].name, "GET", "guard/"+gone.name, nil, &g); err != nil || g["refused"] != "" {
				return fmt.Errorf("guard: %v %v", g, err)
			}
			return nil
		})
		t0 := time.Now()
		r.setRoles(gone.name, nil)
		r.eventually(3*time.Minute, gone.name+" left the LXD cluster", func() error {
			ms, err := c1.GetClusterMemberNames()
			if err != nil {
				return err
			}
			if len(ms) != 2 {
				return fmt.Errorf("members: %v", ms)
			}
			return nil
		})
		t.Logf("%s (the leader) evacuated and left in %s", gone.name, time.Since(t0).Round(time.Millisecond))
		// Leaving as the leader would have lost the database (the wait
		// above would fail); the lead may also have moved by itself before
		// the leave, then there was nothing to hand over.
		if b, _ := os.ReadFile(gone.log); strings.Contains(string(b), "hand its database leadership over") {
			t.Logf("%s handed its lead over before leaving", gone.name)
		} else {
			t.Logf("%s no longer led when it left: no handover needed", gone.name)
		}
		in, _, err := c1.GetInstance("on-" + gone.name)
		if err != nil || in.Location == gone.name {
			t.Fatalf("on-%s after evacuation: %+v %v", gone.name, in, err)
		}
		t.Logf("on-%s moved to %s, %s", gone.name, in.Location, in.Status)
		r.eventually(time.Minute, gone.name+"'s LXD state removed", func() error {
			if hasState(pathsIn(filepath.Join(r.root, gone.name, "compute"))) {
				return fmt.Errorf("state still there")
			}
			return nil
		})
	})

	t.Run("a half-done move is finished", func(t *testing.T) {
		// What LXD 5.0 leaves when the rename back fails: the copy, running
		// here, under its temporary name.
		temp := movePrefix + "c0ffee"
		if err := launch(ctx, c1, keep[1].name, temp); err != nil {
			t.Fatal(err)
		}
		d := &Driver{moves: map[string]moved{"c0ffee": {Name: "healed", Running: true}}}
		left, err := d.repairMoves(ctx, c1, slog.Default())
		if err != nil || left != 0 {
			t.Fatalf("repair: %d left, %v", left, err)
		}
		in, _, err := c1.GetInstance("healed")
		if err != nil || in.Location != keep[1].name || in.StatusCode != lxdapi.Running {
			t.Fatalf("after the repair: %+v %v", in, err)
		}
		if _, _, err := c1.GetInstance(temp); err == nil {
			t.Fatalf("%s still there", temp)
		}
		// Nothing more to do: a second repair changes nothing.
		if left, err := d.repairMoves(ctx, c1, slog.Default()); err != nil || left != 0 {
			t.Fatalf("second repair: %d left, %v", left, err)
		}
	})

	// Two members keep one database voter, the leader: its removal is
	// refused, and a leader that lost the role anyway waits instead of
	// leaving (LXD 5.0 lost its database when it left).
	t.Run("the only database voter of two stays", func(t *testing.T) {
		// Not while LXD still settles from two voters to one.
		leader := r.leaderAmong(c1, keep, "the LXD leader of two, its only voter", func(blocked error) bool {
			return blocked != nil && strings.Contains(blocked.Error(), "holds the only copy")
		})
		var g map[string]string
		if err := agentCall(ctx, r.root, keep[0].name, "GET", "guard/"+leader.name, nil, &g); err != nil || !strings.Contains(g["refused"], "holds the only copy of the LXD database") {
			t.Fatalf("guard on %s: %v %v", leader.name, g, err)
		}
		t.Logf("guard: %s", g["refused"])
		r.setRoles(leader.name, nil)
		r.eventually(3*time.Minute, leader.name+" waits", func() error {
			if b, _ := os.ReadFile(leader.log); !strings.Contains(string(b), "state=waiting detail=\""+leader.name+" holds the only copy of the LXD database") {
				return fmt.Errorf("not waiting yet")
			}
			return nil
		})
		if ms, err := c1.GetClusterMemberNames(); err != nil || len(ms) != 2 {
			t.Fatalf("LXD members while %s waits: %v %v", leader.name, ms, err)
		}
		insts, err := c1.GetInstances(lxdapi.InstanceTypeAny)
		if err != nil {
			t.Fatalf("the LXD database while %s waits: %v", leader.name, err)
		}
		// Nothing moved: it waits before evacuating.
		for _, in := range insts {
			if in.Name == "healed" && in.Location != keep[1].name {
				t.Fatalf("healed moved while %s waits: %+v", leader.name, in)
			}
		}
		if m, _, err := c1.GetClusterMember(leader.name); err != nil || m.Status != "Online" {
			t.Fatalf("%s while it waits: %+v %v", leader.name, m, err)
		}
		r.setRoles(leader.name, []roles.Role{roles.Compute})
	})

	// A member evacuated to leave the role that gets the role back is
	// restored (LXD places instances on it again); one a person evacuated
	// is left alone.
	t.Run("an evacuated member that keeps the role is restored", func(t *testing.T) {
		n := keep[1]
		member := func() (string, error) {
			m, _, err := c1.GetClusterMember(n.name)
			if err != nil {
				return "", err
			}
			return m.Status, nil
		}
		evacuate := func() {
			op, err := c1.UpdateClusterMemberState(n.name, lxdapi.ClusterMemberStatePost{Action: "evacuate"})
			if err == nil {
				err = op.WaitContext(ctx)
			}
			if err != nil {
				t.Fatalf("evacuate %s: %v", n.name, err)
			}
		}
		// By a person: the driver writes no mark (and restores only a
		// marked member, TestRestoreOnlyMarked).
		evacuate()
		p := pathsIn(filepath.Join(r.root, n.name, "compute"))
		if _, err := os.Stat(p.evacuated); err == nil {
			t.Fatalf("%s marked as evacuated by the driver", n.name)
		}
		// By the driver, to leave the role (the mark it writes), then the
		// role is back: the agent restores it.
		if err := os.WriteFile(p.evacuated, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		r.eventually(3*time.Minute, n.name+" restored", func() error {
			st, err := member()
			if err != nil || st != "Online" {
				return fmt.Errorf("%s: %s %v", n.name, st, err)
			}
			if _, err := os.Stat(p.evacuated); err == nil {
				return fmt.Errorf("mark still there")
			}
			return nil
		})
		in, _, err := c1.GetInstance("healed")
		if err != nil || in.Location != n.name {
			t.Fatalf("healed after the restore: %+v %v", in, err)
		}
	})

	// Two of three lost for good: cloudd's `cluster recover` calls
	// RecoverAlone on the survivor, which rebuilds the LXD database from its
	// own copy and removes the lost members; the survivor's instances live
	// on and it launches again.
	t.Run("two of three lost: the survivor recovers the LXD cluster alone", func(t *testing.T) {
		var back *rigNode
		for _, n := range r.nodes {
			if n != keep[0] && n != keep[1] {
				back = n
			}
		}
		survivor := keep[0]
		cs := r.lxd(survivor)
		r.setRoles(back.name, []roles.Role{roles.Compute})
		r.eventually(3*time.Minute, "three LXD database voters online", func() error {
			ms, err := cs.GetClusterMembers()
			if err != nil {
				return err
			}
			voters := 0
			for _, m := range ms {
				for _, role := range m.Roles {
					if role == "database" && m.Status == "Online" {
						voters++
					}
				}
			}
			if voters != 3 {
				return fmt.Errorf("%d of %d members online voters", voters, len(ms))
			}
			return nil
		})
		if err := launch(ctx, cs, survivor.name, "before-loss"); err != nil {
			t.Fatal(err)
		}
		lost := []string{keep[1].name, back.name}
		for _, n := range []*rigNode{keep[1], back} {
			r.powerCut(n)
		}
		t0 := time.Now()
		recoverOnce := func(n int) {
			t.Helper()
			if err := agentCall(ctx, r.root, survivor.name, "POST", "recover?lost="+strings.Join(lost, ","), nil, nil); err != nil {
				t.Fatal(err)
			}
			r.eventually(7*time.Minute, fmt.Sprintf("recovery %d on %s ends", n, survivor.name), func() error {
				b, _ := os.ReadFile(survivor.log)
				if i := strings.Index(string(b), "recover failed"); i >= 0 {
					t.Fatalf("recovery on %s: %s", survivor.name, strings.SplitN(string(b[i:]), "\n", 2)[0])
				}
				if strings.Count(string(b), "recover done") < n {
					return fmt.Errorf("not done yet")
				}
				return nil
			})
		}
		recoverOnce(1)
		rebuilt := time.Since(t0)
		if b, _ := os.ReadFile(survivor.log); strings.Count(string(b), "now the only voter of the LXD database") != 1 {
			t.Fatalf("%s recovered without rebuilding the LXD database once (two of three voters were lost):\n%s", survivor.name, r.logTail(survivor))
		}
		// As cloudd's recovery: the lost members leave the cluster, the
		// loop resumes, starts LXD and removes them from the LXD cluster.
		for _, n := range lost {
			r.depart(n)
		}
		r.eventually(3*time.Minute, "the survivor alone in the LXD cluster", func() error {
			c, err := lxd.ConnectLXDUnixWithContext(ctx, pathsIn(filepath.Join(r.root, survivor.name, "compute")).socket(), nil)
			if err != nil {
				return err
			}
			ms, err := c.GetClusterMemberNames()
			if err != nil {
				return err
			}
			if len(ms) != 1 || ms[0] != survivor.name {
				return fmt.Errorf("LXD members: %v", ms)
			}
			return nil
		})
		took := time.Since(t0)
		cs = r.lxd(survivor)
		if out, err := execIn(ctx, cs, "before-loss", "echo", "alive"); err != nil || strings.TrimSpace(out) != "alive" {
			t.Fatalf("exec in before-loss after the recovery: %q %v", out, err)
		}
		if err := launch(ctx, cs, "", "after-recovery"); err != nil {
			t.Fatal(err)
		}
		if out, err := execIn(ctx, cs, "after-recovery", "echo", "alive"); err != nil || strings.TrimSpace(out) != "alive" {
			t.Fatalf("exec in after-recovery: %q %v", out, err)
		}
		// A second call finds nothing left to do: no second rebuild.
		recoverOnce(2)
		if b, _ := os.ReadFile(survivor.log); strings.Count(string(b), "now the only voter of the LXD database") != 1 {
			t.Fatalf("the second recovery rebuilt the LXD database again")
		}
		if _, _, err := cs.GetServer(); err != nil {
			t.Fatalf("LXD after the second recovery: %v", err)
		}
		t.Logf("two of three lost: %s rebuilt the LXD database in %s; alone in the LXD cluster %s after the call", survivor.name, rebuilt.Round(time.Millisecond), took.Round(time.Millisecond))
	})
}
