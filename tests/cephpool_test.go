package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/tests/harness"
)

// TestComputeCephPool: one node with the compute and storage roles and a
// file-backed OSD, through real cloudd, Ceph and LXD. The storage role
// creates the Ceph user client.lxd-remote (rbd caps on the instances pool
// only) and hands it over through the cluster database; the compute role
// creates LXD's `remote` pool of the ceph driver with it (its ceph.conf in
// its own state directory, CEPH_CONF in LXD's environment), and status says
// that volumes need the rbd kernel module where it is absent.
func TestComputeCephPool(t *testing.T) {
	harness.Require(t)
	for _, b := range []string{"lxd", "dnsmasq", "ceph-mon", "ceph-osd", "ceph-mgr", "ceph", "rbd"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs %s (scripts/deps.sh installs it)", b)
		}
	}
	c := harness.New(t, 1)
	n1 := c.Node(1)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(n1.StateDir, "compute", "lxd.log"))
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- LXD log\n%s", b)
		}
		computeCleanup(t, c)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	t0 := time.Now()
	n1.MustRun(t, "bootstrap", "--name", n1.Name, "--address", n1.IP, "--role", "compute,storage", "--disk", "loop:4GiB")
	rbd := true
	if _, err := os.Stat("/sys/bus/rbd"); err != nil {
		rbd = false
	}
	l := waitCompute(t, c, n1, 3*time.Minute, "remote pool created on node1", func(l api.Layer) error {
		if err := membersOnline(l, "node1"); err != nil {
			return err
		}
		if len(l.Members) != 1 || !strings.Contains(l.Members[0].Detail, "remote pool created (ceph, OSD pool cloud-rbd as client.lxd-remote)") {
			return fmt.Errorf("member detail %+v", l.Members)
		}
		return nil
	})
	t.Logf("bootstrap to remote pool created: %s", time.Since(t0).Round(time.Millisecond))
	if !rbd {
		want := "remote pool created; volumes need the rbd kernel module, absent on node1"
		if !strings.Contains(l.Reason, want) || !strings.Contains(l.Members[0].Detail, "volumes need the rbd kernel module, absent on node1") {
			t.Fatalf("status does not say the rbd module is absent: reason %q, member %q", l.Reason, l.Members[0].Detail)
		}
	}

	cl := lxdOf(ctx, t, n1)
	pool, _, err := cl.GetStoragePool("remote")
	if err != nil {
		t.Fatalf("remote pool in LXD: %v", err)
	}
	if pool.Driver != "ceph" || pool.Status != "Created" || pool.Config["ceph.user.name"] != "lxd-remote" || pool.Config["ceph.osd.pool_name"] != "cloud-rbd" {
		t.Fatalf("remote pool: driver %s status %s config %v", pool.Driver, pool.Status, pool.Config)
	}

	// The user is not admin: rbd caps on the instances pool only.
	b, err := n1.Exec(ctx, "ceph", "-c", cephConf(n1), "--connect-timeout", "10", "auth", "get", "client.lxd-remote")
	out := string(b)
	if err != nil {
		t.Fatalf("ceph auth get client.lxd-remote: %v: %s", err, caps(out))
	}
	for _, want := range []string{`caps mon = "profile rbd"`, `caps osd = "profile rbd pool=cloud-rbd"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("client.lxd-remote caps lack %q:\n%s", want, caps(out))
		}
	}
	// Its key is root-only, in the compute role's own directory, not /etc/ceph.
	kr := filepath.Join(n1.StateDir, "compute", "ceph", "keyring")
	fi, err := os.Stat(kr)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring %s: %v %v", kr, fi, err)
	}
	// The placeholder image LXD made is in the pool, seen as that user.
	b, err = n1.Exec(ctx, "rbd", "-c", filepath.Join(n1.StateDir, "compute", "ceph", "ceph.conf"), "--id", "lxd-remote", "ls", "cloud-rbd")
	if err != nil || !strings.Contains(string(b), "lxd_cloud-rbd") {
		t.Fatalf("rbd ls cloud-rbd as client.lxd-remote: %v: %q", err, b)
	}
	// The LXD user is refused outside its pool.
	if out, err := n1.Exec(ctx, "rbd", "-c", filepath.Join(n1.StateDir, "compute", "ceph", "ceph.conf"), "--id", "lxd-remote", "ls", "images"); err == nil {
		t.Fatalf("client.lxd-remote could list the images pool: %q", out)
	}
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
