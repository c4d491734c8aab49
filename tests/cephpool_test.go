package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/tests/harness"
)

// TestComputeCephPool: three compute nodes, one of them with the storage
// role and a file-backed OSD, through real cloudd, Ceph and LXD. The storage role
// creates the Ceph user client.lxd-remote (rbd caps on the instances pool
// only) and hands it over through the cluster database; the compute role
// creates LXD's `remote` pool of the ceph driver with it (its ceph.conf in
// its own state directory, CEPH_CONF in LXD's environment), and status says
// that volumes need the rbd kernel module where it is absent. A member
// joining later and a member restarted after a SIGKILL have it too. The
// Ceph keys are in the cluster database only sealed, under a key only the
// storage node holds (cephSealed).
func TestComputeCephPool(t *testing.T) {
	harness.Require(t)
	for _, b := range []string{"lxd", "dnsmasq", "ceph-mon", "ceph-osd", "ceph-mgr", "ceph", "rbd"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs %s (scripts/deps.sh installs it)", b)
		}
	}
	c := harness.New(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	t.Cleanup(func() {
		if t.Failed() {
			for _, nd := range c.Nodes {
				b, _ := os.ReadFile(filepath.Join(nd.StateDir, "compute", "lxd.log"))
				if len(b) > 3000 {
					b = b[len(b)-3000:]
				}
				t.Logf("--- %s LXD log\n%s", nd.Name, b)
			}
		}
		computeCleanup(t, c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rbd := true
	if _, err := os.Stat("/sys/bus/rbd"); err != nil {
		rbd = false
	}
	created := func(names ...string) func(api.Layer) error {
		return func(l api.Layer) error {
			if err := membersOnline(l, names...); err != nil {
				return err
			}
			for _, m := range l.Members {
				if !strings.Contains(m.Detail, "remote pool created (ceph, OSD pool cloud-rbd as client.lxd-remote)") {
					return fmt.Errorf("%s: detail %q", m.Node, m.Detail)
				}
				if !rbd && !strings.Contains(m.Detail, "volumes need the rbd kernel module, absent on "+m.Node) {
					return fmt.Errorf("%s: detail %q does not say rbd is absent", m.Node, m.Detail)
				}
			}
			return nil
		}
	}

	// Two LXD members first, then the storage layer: the pool is defined
	// on each member, then created cluster-wide.
	t0 := time.Now()
	bootstrap(t, n1, "compute")
	// node1 must have made the bridge and pool before another member joins
	// (LXD refuses a join while a network is pending; see docs/compute.md).
	waitCompute(t, c, n1, 2*time.Minute, "node1 online in the LXD cluster", func(l api.Layer) error {
		return membersOnline(l, "node1")
	})
	c1 := lxdOf(ctx, t, n1)
	harness.Eventually(t, 2*time.Minute, "node1's default profile has the root disk and eth0", func() error {
		p, _, err := c1.GetProfile("default")
		if err != nil {
			return err
		}
		if p.Devices["root"]["pool"] != "local" || p.Devices["eth0"]["network"] == "" {
			return fmt.Errorf("profile devices: %v", p.Devices)
		}
		return nil
	})
	join(t, n1, n2, "compute")
	waitCompute(t, c, n1, 2*time.Minute, "node1 and node2 in the LXD cluster", func(l api.Layer) error {
		return membersOnline(l, "node1", "node2")
	})
	t.Logf("two LXD members: %s", time.Since(t0).Round(time.Millisecond))
	t1 := time.Now()
	n1.MustRun(t, "role", "add", "node2", "storage")
	n1.MustRun(t, "storage", "disk", "add", "node2", "loop:4GiB")
	l := waitCompute(t, c, n1, 3*time.Minute, "remote pool created on node1 and node2", created("node1", "node2"))
	t.Logf("storage role added to remote pool created on two members: %s", time.Since(t1).Round(time.Millisecond))
	if !rbd {
		want := "remote pool created; volumes need the rbd kernel module, absent on node1, node2"
		if !strings.Contains(l.Reason, want) {
			t.Fatalf("status reason %q lacks %q", l.Reason, want)
		}
	}

	// A member joining a cluster that has the pool.
	t2 := time.Now()
	r := n3.Run("cluster", "join", "--token-file", tokenFile(t, n3, token(t, n1, n3.Name)), "--role", "compute", "--address", n3.IP)
	if r.Code != 0 {
		t.Fatalf("join node3: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	// The plan says it before anything starts, not the first launch.
	if !rbd && !strings.Contains(r.Stderr, "rbd module is absent on node3") {
		t.Fatalf("the join's plan does not warn that node3 has no rbd module:\n%s", r.Stderr)
	}
	waitCompute(t, c, n1, 2*time.Minute, "node3 joined with the remote pool", created("node1", "node2", "node3"))
	t.Logf("node3 join to remote pool created there: %s", time.Since(t2).Round(time.Millisecond))

	pool, _, err := c1.GetStoragePool("remote")
	if err != nil {
		t.Fatalf("remote pool in LXD: %v", err)
	}
	if pool.Driver != "ceph" || pool.Status != "Created" || pool.Config["ceph.user.name"] != "lxd-remote" || pool.Config["ceph.osd.pool_name"] != "cloud-rbd" {
		t.Fatalf("remote pool: driver %s status %s config %v", pool.Driver, pool.Status, pool.Config)
	}

	// The user is not admin: rbd caps on the instances pool only.
	b, err := n2.Exec(ctx, "ceph", "-c", cephConf(n2), "--connect-timeout", "10", "auth", "get", "client.lxd-remote")
	out := string(b)
	if err != nil {
		t.Fatalf("ceph auth get client.lxd-remote: %v: %s", err, caps(out))
	}
	for _, want := range []string{`caps mon = "profile rbd"`, `caps osd = "profile rbd pool=cloud-rbd"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("client.lxd-remote caps lack %q:\n%s", want, caps(out))
		}
	}
	// Its key is root-only, in each compute member's own directory, not /etc/ceph.
	for _, nd := range c.Nodes {
		kr := filepath.Join(nd.StateDir, "compute", "ceph", "keyring")
		fi, err := os.Stat(kr)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("keyring %s: %v %v", kr, fi, err)
		}
	}
	// The placeholder image LXD made is in the pool, seen as that user.
	b, err = n3.Exec(ctx, "rbd", "-c", filepath.Join(n3.StateDir, "compute", "ceph", "ceph.conf"), "--id", "lxd-remote", "ls", "cloud-rbd")
	if err != nil || !strings.Contains(string(b), "lxd_cloud-rbd") {
		t.Fatalf("rbd ls cloud-rbd as client.lxd-remote: %v: %q", err, b)
	}
	// The LXD user is refused outside its pool.
	if out, err := n3.Exec(ctx, "rbd", "-c", filepath.Join(n3.StateDir, "compute", "ceph", "ceph.conf"), "--id", "lxd-remote", "ls", "images"); err == nil {
		t.Fatalf("client.lxd-remote could list the images pool: %q", out)
	}

	// The Ceph keys are sealed in every member's cluster database; only
	// the storage node holds their key.
	cephSealed(t, []*harness.Node{n2}, []*harness.Node{n1, n3})
	// node1 runs no Ceph and holds no key to it: node2 guards the removal
	// of its own storage role for node1 (over the cluster API), and its
	// refusal is the one node1 gives; nothing changes.
	oneSentence(t, n1.Run("role", "remove", "node2", "storage"), "would lose the last copy of the data")
	if st := mustStatus(t, n1); member(st, "node2") == nil || !slices.Contains(member(st, "node2").Roles, "storage") {
		t.Fatalf("node2 lost its storage role to a refused removal: %+v", member(st, "node2"))
	}

	// A member's LXD restarted (cloudd SIGKILLed) starts again with the pool.
	n3.Kill(t)
	waitCompute(t, c, n1, 2*time.Minute, "node3 offline in the LXD cluster", func(l api.Layer) error {
		for _, m := range l.Members {
			if m.Node == "node3" && m.State == "online" {
				return fmt.Errorf("node3 still online")
			}
		}
		return nil
	})
	t3 := time.Now()
	n3.Start(t)
	waitCompute(t, c, n1, 2*time.Minute, "node3 back with the remote pool", created("node1", "node2", "node3"))
	t.Logf("node3 restart to remote pool created there: %s", time.Since(t3).Round(time.Millisecond))
}

// cephSealed: the Ceph keys are in the cluster database only sealed, and
// only the nodes that run Ceph (ceph) hold the storage seal key. No file of
// any member's cluster database (the Raft log included, where every write
// stays) holds the client.admin key, the mon. key or client.lxd-remote's
// key in the clear, though sealed values are there (so the check sees the
// rows); every other node (others, compute nodes with the remote pool)
// holds no storage seal key and is refused it, and its keyring holds the
// same key as the storage node's users.
func cephSealed(t *testing.T, ceph, others []*harness.Node) {
	t.Helper()
	keyOf := func(path, entity string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		section := ""
		for _, l := range strings.Split(string(b), "\n") {
			l = strings.TrimSpace(l)
			if strings.HasPrefix(l, "[") {
				section = l
			}
			if k, ok := strings.CutPrefix(l, "key = "); ok && section == "["+entity+"]" {
				return k, nil
			}
		}
		return "", fmt.Errorf("%s holds no key of %s", path, entity)
	}
	st := ceph[0]
	keys := map[string]string{}
	harness.Eventually(t, time.Minute, "the keyrings of the storage node and of every compute node", func() error {
		for what, p := range map[string]string{
			"client.admin": filepath.Join(st.StateDir, "storage", "keys", "ceph.client.admin.keyring"),
			"mon.":         filepath.Join(st.StateDir, "storage", "mon", "ceph-"+st.Name, "keyring"),
		} {
			k, err := keyOf(p, what)
			if err != nil {
				return err
			}
			keys[what] = k
		}
		// The compute nodes' keyrings: one key, the one the monitors know.
		for _, nd := range append(append([]*harness.Node(nil), ceph...), others...) {
			k, err := keyOf(filepath.Join(nd.StateDir, "compute", "ceph", "keyring"), "client.lxd-remote")
			if err != nil {
				return err
			}
			if have := keys["client.lxd-remote"]; have != "" && have != k {
				return fmt.Errorf("%s's keyring holds another key of client.lxd-remote", nd.Name)
			}
			keys["client.lxd-remote"] = k
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	onMon, err := st.Output(ctx, "ceph", "-c", cephConf(st), "--connect-timeout", "10", "auth", "get-key", "client.lxd-remote")
	cancel()
	if err != nil || strings.TrimSpace(string(onMon)) != keys["client.lxd-remote"] {
		t.Fatalf("the compute nodes' key of client.lxd-remote is not the monitors' (%v)", err)
	}
	for _, nd := range ceph {
		if fi, err := os.Stat(filepath.Join(nd.StateDir, "storage", "seal.key")); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s's storage seal key: %v %v", nd.Name, fi, err)
		}
	}
	for _, nd := range others {
		if _, err := os.Stat(filepath.Join(nd.StateDir, "storage", "seal.key")); err == nil {
			t.Fatalf("%s holds the storage seal key and runs no Ceph", nd.Name)
		}
	}
	// cloudd tells callers apart by their member certificate: a storage
	// node's own gets the key, another member's is refused.
	bin := buildHelper(t, "memberget")
	url := "https://" + st.IP + ":7443/1.0/storage/seal-key"
	for _, nd := range append([]*harness.Node{st}, others...) {
		want := "403 "
		if nd == st {
			want = "200 "
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := nd.Exec(ctx, bin, url, filepath.Join(nd.StateDir, "server.crt"), filepath.Join(nd.StateDir, "server.key"))
		cancel()
		if err != nil || !strings.HasPrefix(string(out), want) {
			// The answer to a storage node holds the key: show its status only.
			t.Fatalf("GET storage/seal-key with %s's certificate: want %q, got %v: %.4s", nd.Name, want, err, out)
		}
		if want == "403 " && !strings.Contains(string(out), nd.Name+" is not one") {
			t.Fatalf("the refusal does not say why: %s", out)
		}
	}
	clear := map[string]string{}
	for what, k := range keys {
		clear["the key of "+what] = k
	}
	sealedInDatabases(t, append(append([]*harness.Node(nil), ceph...), others...), clear)
}

// caps keeps the caps lines of `ceph auth get` (never the key).
func caps(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "caps") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}
