package tests

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	lxd "github.com/canonical/lxd/client"
	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/tests/harness"
)

// TestCompute drives the compute role through real cloudd and real LXD on
// one shared three-node cluster: one node launches and execs; three form an
// LXD cluster and launch on each member; a trust token works once; a
// SIGKILLed member's peers keep launching and it comes back; `role remove`
// evacuates the node and it leaves the LXD cluster.
func TestCompute(t *testing.T) {
	harness.Require(t)
	needLXD(t)
	img := busyboxImage(t)
	c := harness.New(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	t.Cleanup(func() { computeCleanup(t, c) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	t0 := time.Now()
	bootstrap(t, n1, "compute")
	waitCompute(t, c, n1, 2*time.Minute, "node1 online in the LXD cluster", func(l api.Layer) error {
		return membersOnline(l, "node1")
	})
	t.Logf("bootstrap to LXD member online: %s", time.Since(t0).Round(time.Millisecond))
	c1 := lxdOf(ctx, t, n1)
	harness.Eventually(t, time.Minute, "default profile has the root disk and eth0", func() error {
		p, _, err := c1.GetProfile("default")
		if err != nil {
			return err
		}
		if p.Devices["root"]["pool"] != "local" || p.Devices["eth0"]["network"] == "" {
			return fmt.Errorf("profile devices: %v", p.Devices)
		}
		return nil
	})
	importImage(t, c1, img)

	t.Run("one node launches and execs", func(t *testing.T) {
		t0 := time.Now()
		if err := launch(ctx, c1, "", "solo"); err != nil {
			t.Fatal(err)
		}
		t.Logf("launch: %s", time.Since(t0).Round(time.Millisecond))
		out, err := execIn(ctx, c1, "solo", "sh", "-c", "echo hello from $(hostname)")
		if err != nil || strings.TrimSpace(out) != "hello from solo" {
			t.Fatalf("exec: %q %v", out, err)
		}
	})

	t.Run("three nodes form an LXD cluster", func(t *testing.T) {
		for _, n := range []*harness.Node{n2, n3} {
			t0 := time.Now()
			join(t, n1, n, "compute")
			waitCompute(t, c, n1, 2*time.Minute, n.Name+" online in the LXD cluster", func(l api.Layer) error {
				return membersOnline(l, n.Name)
			})
			t.Logf("%s: cloudctl join to LXD member online: %s", n.Name, time.Since(t0).Round(time.Millisecond))
		}
		var det struct {
			Nodes []struct {
				Node         string  `json:"node"`
				ReadySeconds float64 `json:"ready_seconds"`
				JoinSeconds  float64 `json:"join_seconds"`
				RSSKiB       int64   `json:"rss_kib"`
				VMs          bool    `json:"vms"`
				VMReason     string  `json:"vm_reason"`
			} `json:"nodes"`
		}
		// A member is listed online before its own join operation returns:
		// wait for every node's join time too.
		l := waitCompute(t, c, n2, time.Minute, "compute HA and join times", func(l api.Layer) error {
			if l.HA != api.HAYes {
				return fmt.Errorf("ha %s: %s", l.HA, l.Reason)
			}
			if err := json.Unmarshal(l.Details, &det); err != nil {
				return err
			}
			for _, n := range det.Nodes {
				if n.JoinSeconds == 0 {
					return fmt.Errorf("%s reports no join time yet", n.Node)
				}
			}
			return nil
		})
		for _, n := range det.Nodes {
			t.Logf("%s: LXD start to ready %.2fs, cluster bootstrap/join %.2fs, LXD RSS %d KiB; %s", n.Node, n.ReadySeconds, n.JoinSeconds, n.RSSKiB, n.VMReason)
			// A node without VMs is marked containers-only in status,
			// with the reason.
			want := "containers and VMs"
			if !n.VMs {
				if !strings.HasPrefix(n.VMReason, "containers only: ") {
					t.Fatalf("%s offers no VMs and says %q, not why", n.Node, n.VMReason)
				}
				want = n.VMReason
			}
			found := false
			for _, m := range l.Members {
				found = found || m.Node == n.Node && strings.Contains(m.Detail, want)
			}
			if !found {
				t.Fatalf("status does not show %q for %s: %+v", want, n.Node, l.Members)
			}
		}
		for _, n := range c.Nodes {
			t0 := time.Now()
			if err := launch(ctx, c1, n.Name, "on-"+n.Name); err != nil {
				t.Fatal(err)
			}
			t.Logf("launch on %s: %s", n.Name, time.Since(t0).Round(time.Millisecond))
			in, _, err := c1.GetInstance("on-" + n.Name)
			if err != nil || in.Location != n.Name {
				t.Fatalf("on-%s: %+v %v", n.Name, in, err)
			}
		}
		l = waitCompute(t, c, n1, time.Minute, "instance counts", func(l api.Layer) error {
			for _, m := range l.Members {
				if !strings.Contains(m.Detail, "instance(s)") {
					return fmt.Errorf("member %+v", m)
				}
			}
			return nil
		})
		t.Logf("compute layer: ha=%s members=%+v", l.HA, l.Members)
	})

	t.Run("access token works once", func(t *testing.T) {
		var acc struct {
			Name, Token, Address string
		}
		out := n1.MustRun(t, "compute", "access", "--name", "alice", "--format", "json")
		if err := json.Unmarshal([]byte(out), &acc); err != nil || acc.Token == "" {
			t.Fatalf("access: %v: %s", err, out)
		}
		if acc.Address != n1.IP+":8443" {
			t.Fatalf("access address %q, want %s:8443 (no floating address)", acc.Address, n1.IP)
		}
		if list := n1.MustRun(t, "compute", "access", "--list"); !strings.Contains(list, "alice") {
			t.Fatalf("list: %s", list)
		}
		// The lxc client runs in node3's namespace with its own config.
		lxc := func(conf string, args ...string) (string, error) {
			out, err := n3.Exec(ctx, "env", append([]string{"LXD_CONF=" + conf, "lxc"}, args...)...)
			return string(out), err
		}
		conf1, conf2 := filepath.Join(c.Dir(), "lxc1"), filepath.Join(c.Dir(), "lxc2")
		if out, err := lxc(conf1, "remote", "add", "cloud", acc.Token); err != nil {
			t.Fatalf("lxc remote add: %v: %s", err, out)
		}
		out, err := lxc(conf1, "list", "cloud:", "--format", "csv", "-c", "nL")
		if err != nil || !strings.Contains(out, "on-node2,node2") {
			t.Fatalf("lxc list: %v: %s", err, out)
		}
		out, err = lxc(conf2, "remote", "add", "cloud", acc.Token)
		if err == nil || !strings.Contains(out, "No matching certificate add operation") {
			t.Fatalf("second use of the token: %v: %s", err, out)
		}
		n1.MustRun(t, "compute", "access", "--name", "bob")
		n1.MustRun(t, "compute", "access", "--revoke", "bob")
		oneSentence(t, n1.Run("compute", "access", "--revoke", "bob"), "no pending trust token")
	})

	t.Run("SIGKILL one compute node", func(t *testing.T) {
		n3.Kill(t)
		waitCompute(t, c, n1, 2*time.Minute, "node3 offline in the LXD cluster", func(l api.Layer) error {
			for _, m := range l.Members {
				if m.Node == "node3" && m.State == "online" {
					return fmt.Errorf("node3 still online")
				}
			}
			return membersOnline(l, "node1", "node2")
		})
		for _, n := range []*harness.Node{n1, n2} {
			if err := launch(ctx, c1, n.Name, "after-kill-"+n.Name); err != nil {
				t.Fatal(err)
			}
		}
		t0 := time.Now()
		n3.Start(t)
		waitCompute(t, c, n1, 2*time.Minute, "node3 back in the LXD cluster", func(l api.Layer) error {
			return membersOnline(l, "node1", "node2", "node3")
		})
		t.Logf("node3 back online %s after cloudd restart", time.Since(t0).Round(time.Millisecond))
		harness.Eventually(t, time.Minute, "exec in the container on node3", func() error {
			out, err := execIn(ctx, c1, "on-node3", "echo", "alive")
			if err != nil || strings.TrimSpace(out) != "alive" {
				return fmt.Errorf("exec: %q %v", out, err)
			}
			return nil
		})
	})

	t.Run("every compute node killed and started again", func(t *testing.T) {
		for _, n := range c.Nodes {
			n.Kill(t)
		}
		// A power cut takes the containers too: they outlive cloudd and
		// LXD (liblxc's monitors are not their children), so kill each
		// container's processes after LXD is gone, as the power would,
		// before it could record them as stopped.
		for _, n := range c.Nodes {
			killed := n.KillContainer(t, "on-"+n.Name)
			if killed < 2 {
				t.Fatalf("container on-%s: %d processes found to kill, want its monitor and its init at least", n.Name, killed)
			}
			t.Logf("container on-%s: %d processes killed", n.Name, killed)
		}
		t0 := time.Now()
		for _, n := range c.Nodes {
			n.Start(t)
		}
		waitCompute(t, c, n1, 3*time.Minute, "the LXD cluster answers again", func(l api.Layer) error {
			return membersOnline(l, "node1", "node2", "node3")
		})
		t.Logf("all three back online %s after the cloudd restarts", time.Since(t0).Round(time.Millisecond))
		// LXD starts again the instances that were running when it died.
		harness.Eventually(t, 2*time.Minute, "exec in each member's container", func() error {
			for _, n := range c.Nodes {
				out, err := execIn(ctx, c1, "on-"+n.Name, "echo", "alive")
				if err != nil || strings.TrimSpace(out) != "alive" {
					return fmt.Errorf("on-%s: %q %v", n.Name, out, err)
				}
			}
			return nil
		})
		if err := launch(ctx, c1, "node2", "after-restart"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("role remove evacuates and leaves", func(t *testing.T) {
		// Whichever node leads LXD's database can hand its lead over once
		// LXD sees its three voters online (right after restarts it marks
		// one offline for a few heartbeats, and the guard then refuses).
		harness.Eventually(t, 3*time.Minute, "three LXD voters online", func() error {
			return lxdVoters(c1, 3, 3)
		})
		// A node keeps at least one role: give node3 another first.
		n1.MustRun(t, "role", "add", "node3", "control")
		t0 := time.Now()
		if r := untilLXDSettles(n1, 3*time.Minute, "role", "remove", "node3", "compute"); r.Code != 0 {
			t.Fatalf("role remove node3 compute: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		harness.Eventually(t, 3*time.Minute, "node3 left the LXD cluster", func() error {
			ms, err := c1.GetClusterMemberNames()
			if err != nil {
				return err
			}
			if len(ms) != 2 {
				return fmt.Errorf("members: %v", ms)
			}
			return nil
		})
		t.Logf("evacuated and left in %s", time.Since(t0).Round(time.Millisecond))
		in, _, err := c1.GetInstance("on-node3")
		if err != nil || in.Location == "node3" {
			t.Fatalf("on-node3 after evacuation: %+v %v", in, err)
		}
		t.Logf("on-node3 moved to %s, %s", in.Location, in.Status)
		harness.Eventually(t, time.Minute, "node3's LXD state removed", func() error {
			if _, err := os.Stat(filepath.Join(n3.StateDir, "compute", "lxd", "database")); err == nil {
				return fmt.Errorf("node3 still holds LXD state")
			}
			return nil
		})
	})

	t.Run("cluster remove moves the instances first", func(t *testing.T) {
		// Two LXD members keep one database voter, the leader. Removing it
		// is refused (LXD 5.0 loses its database when it leaves), nothing
		// changes, and the way out the refusal names works: a third
		// compute node becomes a voter and the node can go.
		var leader string
		harness.Eventually(t, 2*time.Minute, "one LXD leader of two members", func() error {
			ms, err := c1.GetClusterMembers()
			if err != nil {
				return err
			}
			leader = ""
			voters := 0
			for _, m := range ms {
				for _, r := range m.Roles {
					switch r {
					case "database-leader":
						leader = m.ServerName
					case "database":
						voters++
					}
				}
			}
			// Right after node3 left, both may still vote until LXD
			// rebalances to one voter.
			if len(ms) != 2 || leader == "" || voters != 1 {
				return fmt.Errorf("members: %+v", ms)
			}
			return nil
		})
		other := map[string]*harness.Node{"node1": n2, "node2": n1}[leader]
		r := other.Run("cluster", "remove", leader)
		if r.Code == 0 || !strings.Contains(r.Stderr, "holds the only copy of the LXD database") {
			t.Fatalf("cluster remove %s (the LXD leader of two): exit %d\n%s%s", leader, r.Code, r.Stdout, r.Stderr)
		}
		t.Logf("refused: %s", strings.TrimSpace(r.Stderr))
		if ms, err := c1.GetClusterMemberNames(); err != nil || len(ms) != 2 {
			t.Fatalf("LXD members after the refusal: %v %v", ms, err)
		}
		if st := mustStatus(t, n1); len(st.Members) != 3 {
			t.Fatalf("members after the refusal: %+v", st.Members)
		}
		want := 1
		if leader == "node2" {
			n1.MustRun(t, "role", "add", "node3", "compute")
			want = 2
			// node2 can hand its lead over once LXD made the three of them
			// voters, all online.
			harness.Eventually(t, 3*time.Minute, "node3 back in the LXD cluster, three voters online", func() error {
				return lxdVoters(c1, 3, 3)
			})
		}
		insts, err := c1.GetInstances(lxdapi.InstanceTypeAny)
		if err != nil {
			t.Fatal(err)
		}
		var moving []string
		for _, in := range insts {
			if in.Location == "node2" {
				moving = append(moving, in.Name)
			}
		}
		if len(moving) == 0 {
			t.Fatalf("no instance on node2 to move: %+v", insts)
		}
		t0 := time.Now()
		// The CLI waits up to 15 minutes (a settle wait of at most 2,
		// the moves, LXD's restart and stop): give it 12 here.
		r = untilLXDSettles(n1, 12*time.Minute, "cluster", "remove", "node2")
		if r.Code != 0 || !strings.Contains(r.Stderr, "as it gives up its compute role first") || !strings.Contains(r.Stdout, "Removed node2") {
			t.Fatalf("cluster remove node2 (runs %v): exit %d\n%s%s\nnode1: %s\nnode2: %s", moving, r.Code, r.Stdout, r.Stderr, n1.LogTail(20), n2.LogTail(20))
		}
		t.Logf("node2 removed, %d instance(s) moved first, in %s:\n%s", len(moving), time.Since(t0).Round(time.Millisecond), r.Stderr)
		for _, name := range moving {
			in, _, err := c1.GetInstance(name)
			if err != nil || in.Location == "node2" || in.Location == "" {
				t.Fatalf("%s after node2's removal: %+v %v", name, in, err)
			}
		}
		if ms, err := c1.GetClusterMemberNames(); err != nil || len(ms) != want {
			t.Fatalf("LXD members after node2's removal: %v %v (want %d)", ms, err, want)
		}
		if st := mustStatus(t, n1); len(st.Members) != 2 {
			t.Fatalf("members after node2's removal: %+v", st.Members)
		}
	})
}

// untilLXDSettles runs cloudctl args on nd (each run bounded by timeout)
// again while the compute guard refuses for a passing reason: LXD marks a
// member offline for a heartbeat or two under load, and settles its voters
// after a member leaves. It gives up after 3 minutes of such refusals.
func untilLXDSettles(nd *harness.Node, timeout time.Duration, args ...string) harness.Result {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r := nd.RunFor(timeout, args...)
		passing := r.Code != 0 && (strings.Contains(r.Stderr, "too few of its other database voters can take over") || strings.Contains(r.Stderr, "still settling its database voters"))
		if !passing || time.Now().After(deadline) {
			return r
		}
		time.Sleep(time.Second)
	}
}

// lxdVoters checks that the LXD cluster has members members and that many
// of them are database voters online.
func lxdVoters(c lxd.InstanceServer, members, voters int) error {
	ms, err := c.GetClusterMembers()
	if err != nil {
		return err
	}
	n := 0
	for _, m := range ms {
		for _, r := range m.Roles {
			if r == "database" && m.Status == "Online" {
				n++
			}
		}
	}
	if len(ms) != members || n != voters {
		return fmt.Errorf("want %d members, %d voters online: %+v", members, voters, ms)
	}
	return nil
}

// needLXD skips t on a machine without LXD and its helpers.
func needLXD(t *testing.T) {
	t.Helper()
	for _, b := range []string{"lxd", "lxc", "dnsmasq"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs %s (scripts/deps.sh installs it)", b)
		}
	}
}

// computeLayer reads the compute layer of nd's status.
func computeLayer(t testing.TB, nd *harness.Node) (api.Layer, error) {
	st, err := status(t, nd)
	if err != nil {
		return api.Layer{}, err
	}
	for _, l := range st.Layers {
		if l.Name == api.LayerCompute {
			return l, nil
		}
	}
	return api.Layer{}, fmt.Errorf("no compute layer in status")
}

// waitCompute waits until check accepts nd's compute layer; on timeout it
// fails with the layer last seen and the daemon logs.
func waitCompute(t testing.TB, c *harness.Cluster, nd *harness.Node, timeout time.Duration, what string, check func(api.Layer) error) api.Layer {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last api.Layer
	var err error
	for time.Now().Before(deadline) {
		if last, err = computeLayer(t, nd); err == nil {
			if err = check(last); err == nil {
				return last
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, n := range c.Nodes {
		t.Logf("---- %s log ----\n%s", n.Name, n.Log())
	}
	t.Fatalf("%s: not true after %s: %v; compute layer last seen: %+v", what, timeout, err, last)
	return last
}

func membersOnline(l api.Layer, names ...string) error {
	state := map[string]string{}
	for _, m := range l.Members {
		state[m.Node] = m.State
	}
	for _, n := range names {
		if state[n] != "online" {
			return fmt.Errorf("%s is %q (members %+v)", n, state[n], l.Members)
		}
	}
	return nil
}

// lxdOf connects to a node's LXD over its unix socket (a path, reachable
// from the test's namespace; no network).
func lxdOf(ctx context.Context, t testing.TB, nd *harness.Node) lxd.InstanceServer {
	t.Helper()
	c, err := lxd.ConnectLXDUnixWithContext(ctx, filepath.Join(nd.StateDir, "compute", "lxd", "unix.socket"), nil)
	if err != nil {
		t.Fatalf("connect to %s's LXD: %v", nd.Name, err)
	}
	return c
}

// computeCleanup stops the containers through LXD (they outlive LXD), stops
// the nodes, then kills what LXD left for this test only: processes whose
// command line names the cluster's unique directory (dnsmasq, lxc monitors)
// and the containers below those monitors.
func computeCleanup(t testing.TB, c *harness.Cluster) {
	// Stopping the containers through LXD is bounded: an LXD that does not
	// answer must not hold the suite; killing below still ends everything.
	done := make(chan struct{})
	go func() {
		defer close(done)
		stopContainers(c)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Logf("cleanup: LXD did not stop the containers within 2 minutes; killing them")
	}
	for _, nd := range c.Nodes {
		nd.Kill(t)
	}
	killUnder(c.Dir())
}

// stopContainers stops, through each node's LXD, the containers it hosts.
func stopContainers(c *harness.Cluster) {
	for _, nd := range c.Nodes {
		cl, err := lxd.ConnectLXDUnix(filepath.Join(nd.StateDir, "compute", "lxd", "unix.socket"), nil)
		if err != nil {
			continue
		}
		insts, err := cl.GetInstances(lxdapi.InstanceTypeAny)
		if err != nil {
			continue
		}
		for _, in := range insts {
			if in.Location != nd.Name && in.Location != "none" && in.Location != "" {
				continue
			}
			if op, err := cl.UpdateInstanceState(in.Name, lxdapi.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, ""); err == nil {
				wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_ = op.WaitContext(wctx)
				cancel()
			}
		}
	}
}

func killUnder(root string) {
	ents, _ := os.ReadDir("/proc")
	var mine []int
	parent := map[int]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			if i := strings.LastIndexByte(string(st), ')'); i > 0 {
				if f := strings.Fields(string(st)[i+1:]); len(f) > 2 {
					parent[pid], _ = strconv.Atoi(f[1])
				}
			}
		}
		if cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && bytes.Contains(cl, []byte(root)) {
			mine = append(mine, pid)
		}
	}
	set := map[int]bool{}
	for _, p := range mine {
		set[p] = true
	}
	for pid, pp := range parent {
		if set[pp] {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, p := range mine {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
	// Wait (bounded) until they are gone, so their files can be removed.
	for i := 0; i < 100; i++ {
		alive := false
		for _, p := range mine {
			if syscall.Kill(p, 0) == nil {
				if st, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/stat"); err == nil && !strings.Contains(string(st), ") Z ") {
					alive = true
				}
			}
		}
		if !alive {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// busyboxImage builds a 1 MB unified LXD image from busybox-static: a
// metadata.yaml and a rootfs whose init exits on SIGPWR (LXD's stop signal).
func busyboxImage(t testing.TB) []byte {
	t.Helper()
	const bb = "/bin/busybox"
	f, err := elf.Open(bb)
	if err != nil {
		t.Skipf("needs busybox-static (%v)", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			f.Close()
			t.Skip("/bin/busybox is not static: install busybox-static")
		}
	}
	f.Close()
	bin, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	now := time.Now()
	add := func(h *tar.Header, body []byte) {
		h.ModTime = now
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	add(&tar.Header{Name: "metadata.yaml", Typeflag: tar.TypeReg, Mode: 0o644},
		[]byte(fmt.Sprintf("architecture: x86_64\ncreation_date: %d\nproperties:\n  description: busybox (cloudctl tests)\n  os: busybox\n", now.Unix())))
	for _, d := range []string{"rootfs", "rootfs/bin", "rootfs/sbin", "rootfs/etc", "rootfs/dev", "rootfs/proc", "rootfs/sys", "rootfs/tmp", "rootfs/root", "rootfs/run"} {
		add(&tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	}
	add(&tar.Header{Name: "rootfs/bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bin)
	for _, l := range []string{"sh", "sleep", "echo", "cat", "ls", "hostname", "ps", "true"} {
		add(&tar.Header{Name: "rootfs/bin/" + l, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	add(&tar.Header{Name: "rootfs/sbin/init", Typeflag: tar.TypeReg, Mode: 0o755}, []byte("#!/bin/sh\ntrap 'exit 0' PWR TERM INT\nwhile :; do sleep 1; done\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// importImage imports the image through the LXD client API as "busybox".
func importImage(t testing.TB, c lxd.InstanceServer, img []byte) {
	t.Helper()
	op, err := c.CreateImage(lxdapi.ImagesPost{}, &lxd.ImageCreateArgs{MetaFile: bytes.NewReader(img), MetaName: "busybox.tar.gz"})
	if err != nil {
		t.Fatalf("import image: %v", err)
	}
	if err := op.Wait(); err != nil {
		t.Fatalf("import image: %v", err)
	}
	fp, _ := op.Get().Metadata["fingerprint"].(string)
	if err := c.CreateImageAlias(lxdapi.ImageAliasesPost{ImageAliasesEntry: lxdapi.ImageAliasesEntry{Name: "busybox", Target: fp}}); err != nil {
		t.Fatalf("alias image: %v", err)
	}
}

// launch creates and starts a busybox container, on target when given.
func launch(ctx context.Context, c lxd.InstanceServer, target, name string) error {
	if target != "" {
		c = c.UseTarget(target)
	}
	op, err := c.CreateInstance(lxdapi.InstancesPost{Name: name, Type: lxdapi.InstanceTypeContainer, Source: lxdapi.InstanceSource{Type: "image", Alias: "busybox"}})
	if err == nil {
		err = op.WaitContext(ctx)
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	op, err = c.UpdateInstanceState(name, lxdapi.InstanceStatePut{Action: "start", Timeout: -1}, "")
	if err == nil {
		err = op.WaitContext(ctx)
	}
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// execIn runs a command in a container; LXD records its output, read back
// as a log file (no websockets).
func execIn(ctx context.Context, c lxd.InstanceServer, name string, cmd ...string) (string, error) {
	op, err := c.ExecInstance(name, lxdapi.InstanceExecPost{Command: cmd, RecordOutput: true}, nil)
	if err == nil {
		err = op.WaitContext(ctx)
	}
	if err != nil {
		return "", fmt.Errorf("exec in %s: %w", name, err)
	}
	md := op.Get().Metadata
	if rc, _ := md["return"].(float64); rc != 0 {
		return "", fmt.Errorf("exec in %s: exit %v", name, rc)
	}
	outs, _ := md["output"].(map[string]any)
	path, _ := outs["1"].(string)
	if path == "" {
		return "", fmt.Errorf("exec in %s: no recorded output in %v", name, md)
	}
	rd, err := c.GetInstanceLogfile(name, filepath.Base(path))
	if err != nil {
		return "", fmt.Errorf("exec in %s: read output: %w", name, err)
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	return string(b), err
}

// TestComputeQuickJoin: a compute node that joins right after the first one
// bootstrapped, before that one's LXD has created its network and pool,
// waits for them (cloudd answers 503 for the LXD join token until then)
// instead of failing its LXD join ("Joining member has no config for
// network cloudbr0"), and both end up online.
func TestComputeQuickJoin(t *testing.T) {
	c := harness.New(t, 2)
	n1, n2 := c.Node(1), c.Node(2)
	t.Cleanup(func() { computeCleanup(t, c) })
	bootstrap(t, n1, "compute")
	join(t, n1, n2, "compute")
	waitCompute(t, c, n1, 3*time.Minute, "both LXD members online", func(l api.Layer) error {
		return membersOnline(l, "node1", "node2")
	})
}
