package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/cephclient"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/seal"
	splan "github.com/cloudctl/cloudctl/roles/storage/plan"
)

// inNamespaceEnv is set when the test binary runs inside the namespace the
// outer test made for it; its value is the node's address there.
const inNamespaceEnv = "CLOUDCTL_STORAGE_TEST_IP"

// runInNamespace runs the calling test again inside a new network namespace
// with one address, and returns false; inside it returns true.
func runInNamespace(t *testing.T) bool {
	t.Helper()
	if os.Getenv(inNamespaceEnv) != "" {
		return true
	}
	if testing.Short() {
		t.Skip("real Ceph: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("real Ceph: needs root for a network namespace")
	}
	for _, p := range []string{"ip", "/usr/bin/ceph-mon", "/usr/bin/ceph-osd", "/usr/bin/ceph-mgr", "/usr/bin/monmaptool"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("real Ceph: %s not installed", p)
		}
	}
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	ns := fmt.Sprintf("cst%d%x", os.Getpid(), b)
	ip := fmt.Sprintf("10.%d.%d.1", 200+int(b[0])%50, b[1])
	for _, args := range [][]string{{"netns", "add", ns}, {"-n", ns, "link", "set", "lo", "up"}, {"-n", ns, "addr", "add", ip + "/32", "dev", "lo"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	t.Cleanup(func() {
		// Every process left in the namespace was started by this test.
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, p := range strings.Fields(string(out)) {
			_ = exec.Command("kill", "-9", p).Run()
		}
		_ = exec.Command("ip", "netns", "del", ns).Run()
	})
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.v", "-test.timeout", "10m")
	cmd.Env = append(os.Environ(), inNamespaceEnv+"="+ip)
	out, err := cmd.CombinedOutput()
	t.Logf("inside namespace %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("test inside the namespace failed: %v", err)
	}
	return false
}

// converge runs rounds until ok says the cluster is where the test wants
// it, or the deadline passes (then it fails with what it saw last).
func converge(t *testing.T, d *Driver, env *driver.Env, what string, timeout time.Duration, ok func(api.Layer) bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	var lastErr error
	var last api.Layer
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, lastErr = d.Converge(ctx, env, func(s driver.Step) { t.Logf("step: %s %s %s", s.Name, s.State, s.Detail) })
		last = d.Status(ctx, env)
		cancel()
		if lastErr == nil && ok(last) {
			return time.Since(start)
		}
		time.Sleep(time.Second)
	}
	dumpLogs(t, env)
	j, _ := json.MarshalIndent(last, "", "  ")
	t.Fatalf("%s: not reached in %s; last error: %v; last status:\n%s", what, timeout, lastErr, j)
	return 0
}

func dumpLogs(t *testing.T, env *driver.Env) {
	logs, _ := filepath.Glob(filepath.Join(env.Dir, "log", "*"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("--- %s\n%s", l, b)
	}
}

func healthOK(l api.Layer) bool { return l.Health == api.HealthOK }

func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var n int
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:")), "%d", &n)
			return n
		}
	}
	return 0
}

// TestRealCephOneNode creates a one-node cluster with a file-backed OSD
// through the driver, writes and reads back an RBD image with go-ceph, adds
// a second OSD, and restarts everything as after a power cut.
func TestRealCephOneNode(t *testing.T) {
	if !runInNamespace(t) {
		return
	}
	ip := os.Getenv(inNamespaceEnv)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	node := driver.Node{Name: "node1", Address: ip + ":7443", IP: ip, Roles: []roles.Role{roles.Storage}, JoinedAt: time.Now(),
		Disks: []api.DiskChoice{{Path: "loop:4GiB"}}}
	env := testEnv(t, log, node)
	d := New()
	t.Cleanup(func() { _ = d.Stop(context.Background()) })

	took := converge(t, d, env, "HEALTH_OK with one OSD", 4*time.Minute, healthOK)
	t.Logf("MEASURE time to HEALTH_OK, one node, one file-backed OSD: %s", took.Round(100*time.Millisecond))
	for _, n := range env.Sup.Names() {
		s, _ := env.Sup.Status(n)
		t.Logf("MEASURE RSS %s: %d MiB", n, rssKiB(s.Pid)/1024)
	}
	// The monitor's admin socket answers mon_status (what status reads
	// when the monitors do not answer a command).
	if ms, err := localMonStatus(context.Background(), layout{dir: env.Dir}, "node1"); err != nil || ms.State != "leader" || ms.Name != "node1" || len(ms.MonMap.Mons) != 1 {
		t.Fatalf("mon_status over the admin socket: %+v, %v", ms, err)
	}
	st := d.Status(context.Background(), env)
	var det api.StorageDetails
	if err := json.Unmarshal(st.Details, &det); err != nil {
		t.Fatal(err)
	}
	if len(det.OSDs) != 1 || !det.OSDs[0].FileBacked || det.OSDs[0].Note != splan.FileBackedNote || !det.OSDs[0].Up {
		t.Fatalf("OSDs: %+v", det.OSDs)
	}
	if len(det.Pools) < 3 || st.HA != api.HANo {
		t.Fatalf("pools %+v, HA %s", det.Pools, st.HA)
	}
	for _, p := range det.Pools {
		if p.Size != 1 {
			t.Fatalf("pool %s size %d, want 1 on one host", p.Name, p.Size)
		}
	}
	for _, f := range []string{"keys/ceph.client.admin.keyring", "mon/ceph-node1/keyring", "osd/ceph-0/keyring"} {
		fi, err := os.Stat(filepath.Join(env.Dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", f, err, fi.Mode())
		}
	}

	// An RBD image through go-ceph.
	want := make([]byte, 1<<20)
	_, _ = rand.Read(want)
	writeReadRBD(t, d, env, "volumes", "img1", want)

	// Another role's Ceph user: made once a node has the compute role (the
	// LXD user, caps on the instances pool), removed from the monitors and
	// the cluster database once no node has it.
	computeNode := driver.Node{Name: "node2", Address: "10.0.0.2:7443", IP: "10.0.0.2", Roles: []roles.Role{roles.Compute}, JoinedAt: time.Now()}
	env.Nodes = []driver.Node{env.Local, computeNode}
	lxdUser := func() (recorded, onMonitors bool) {
		_, recorded, err := cephclient.Get(context.Background(), env.DB, cephclient.LXD)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := stateConn(d, env)
		if err != nil {
			t.Fatal(err)
		}
		err = conn.mon(context.Background(), map[string]any{"prefix": "auth get", "entity": "client." + cephclient.LXD}, nil, nil)
		return recorded, err == nil
	}
	converge(t, d, env, "the LXD user made for a compute node", 2*time.Minute, func(api.Layer) bool {
		r, m := lxdUser()
		return r && m
	})
	// Its key is stored sealed; the compute node gets it opened, as the
	// monitors know it.
	rec, _, err := cephclient.Get(context.Background(), env.DB, cephclient.LXD)
	if err != nil || !seal.IsSealed(rec.Key) {
		t.Fatalf("the LXD user's key is not stored sealed: %v", err)
	}
	out, err := d.handleClientKey(context.Background(), env, driver.Request{Caller: "node2", Vars: map[string]string{"name": cephclient.LXD}})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := stateConn(d, env)
	if err != nil {
		t.Fatal(err)
	}
	var onMon struct {
		Key string `json:"key"`
	}
	if err := conn.mon(context.Background(), map[string]any{"prefix": "auth get-key", "entity": "client." + cephclient.LXD, "format": "json"}, nil, &onMon); err != nil {
		t.Fatal(err)
	}
	if r := out.(cephclient.KeyReply); !validKey(r.Key) || r.Key != onMon.Key {
		t.Fatal("the key handed to the compute node is not the monitors' key of client.lxd-remote")
	}
	// A user made moments ago stays (another node may have made it for a
	// compute node this round's view does not show yet) ...
	env.Nodes = []driver.Node{env.Local}
	if _, err := d.Converge(context.Background(), env, func(driver.Step) {}); err != nil {
		t.Fatal(err)
	}
	if r, m := lxdUser(); !r || !m {
		t.Fatalf("a user recorded moments ago was dropped: recorded %v, on the monitors %v", r, m)
	}
	// ... and goes once it is older than the grace.
	env.Now = func() time.Time { return time.Now().Add(clientDropGrace + time.Minute) }
	converge(t, d, env, "the LXD user removed with the last compute node", 2*time.Minute, func(api.Layer) bool {
		r, m := lxdUser()
		return !r && !m
	})
	env.Now = time.Now

	// Add an OSD.
	env.Local.Disks = append(env.Local.Disks, api.DiskChoice{Path: "loop:2GiB"})
	env.Nodes = []driver.Node{env.Local}
	took = converge(t, d, env, "a second OSD up", 3*time.Minute, func(l api.Layer) bool {
		var det api.StorageDetails
		_ = json.Unmarshal(l.Details, &det)
		return len(det.OSDs) == 2 && det.OSDs[1].Up && l.Health == api.HealthOK
	})
	t.Logf("MEASURE OSD add time (file-backed, to up and HEALTH_OK): %s", took.Round(100*time.Millisecond))

	// Remove it again: drained (marked out, data moved), then purged; the
	// entry stays taken so the OSD is not made again.
	if _, err := d.removeDisk(context.Background(), env, driver.Request{Query: map[string][]string{"node": {"node1"}, "path": {"loop:2GiB"}}}); err != nil {
		t.Fatalf("remove the second OSD: %v", err)
	}
	took = converge(t, d, env, "the second OSD drained and removed", 3*time.Minute, func(l api.Layer) bool {
		var det api.StorageDetails
		_ = json.Unmarshal(l.Details, &det)
		return len(det.OSDs) == 1 && l.Health == api.HealthOK
	})
	t.Logf("MEASURE OSD removal (drain + purge): %s", took.Round(100*time.Millisecond))
	if _, err := os.Stat(filepath.Join(env.Dir, "osd", "ceph-1")); !os.IsNotExist(err) {
		t.Fatalf("osd.1's directory left behind: %v", err)
	}
	writeReadRBD(t, d, env, "volumes", "img2", want[:4096])

	// Power cut: every daemon killed, a fresh driver (a restarted cloudd).
	for _, n := range env.Sup.Names() {
		s, _ := env.Sup.Status(n)
		_ = env.Sup.Stop(n, 0)
		_ = s
	}
	d.conns.close()
	d2 := New()
	t.Cleanup(func() { _ = d2.Stop(context.Background()) })
	took = converge(t, d2, env, "HEALTH_OK after restart", 3*time.Minute, healthOK)
	t.Logf("MEASURE restart to HEALTH_OK: %s", took.Round(100*time.Millisecond))
	// The OSDs were killed, so the restarted monitor first believes them
	// up; reads go through once they have booted and peered again.
	var got []byte
	var rerr error
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		if got, rerr = tryReadRBD(New(), env, "volumes", "img1", len(want)); rerr == nil {
			break
		}
		t.Logf("read after restart: %v", rerr)
	}
	if rerr != nil {
		dumpLogs(t, env)
		j, _ := json.MarshalIndent(d2.Status(context.Background(), env), "", "  ")
		t.Logf("status: %s", j)
		cephDiag(t, env)
		t.Fatalf("read the RBD image after the restart: %v", rerr)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("RBD image changed across the restart")
	}
	converge(t, d2, env, "HEALTH_OK after the reads", 2*time.Minute, healthOK)
}

// cephDiag logs what Ceph itself says about the cluster, for a failure.
func cephDiag(t *testing.T, env *driver.Env) {
	t.Helper()
	for _, args := range [][]string{{"ceph", "-s"}, {"ceph", "health", "detail"}, {"ceph", "pg", "dump_stuck"}, {"ceph", "osd", "dump"}, {"ceph", "pg", "ls-by-pool", "volumes"}, {"rados", "-p", "volumes", "ls"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, args[0], append([]string{"-c", filepath.Join(env.Dir, "ceph.conf")}, args[1:]...)...).CombinedOutput()
		cancel()
		t.Logf("%v: %v\n%s", args, err, out)
	}
}

func writeReadRBD(t *testing.T, d *Driver, env *driver.Env, pool, name string, data []byte) {
	t.Helper()
	conn, err := stateConn(d, env)
	if err != nil {
		t.Fatal(err)
	}
	ioctx, err := conn.conn.OpenIOContext(pool)
	if err != nil {
		t.Fatal(err)
	}
	defer ioctx.Destroy()
	if err := rbd.CreateImage(ioctx, name, uint64(len(data))*4, rbd.NewRbdImageOptions()); err != nil {
		dumpLogs(t, env)
		cephDiag(t, env)
		t.Fatalf("create image: %v", err)
	}
	img, err := rbd.OpenImage(ioctx, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt(data, 0); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := img.Flush(); err != nil {
		t.Fatal(err)
	}
	img.Close()
	if got := readRBD(t, d, env, pool, name, len(data)); !bytes.Equal(got, data) {
		t.Fatal("read back differs")
	}
}

func readRBD(t *testing.T, d *Driver, env *driver.Env, pool, name string, n int) []byte {
	t.Helper()
	got, err := tryReadRBD(d, env, pool, name, n)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func tryReadRBD(d *Driver, env *driver.Env, pool, name string, n int) ([]byte, error) {
	conn, err := stateConn(d, env)
	if err != nil {
		return nil, err
	}
	ioctx, err := conn.conn.OpenIOContext(pool)
	if err != nil {
		return nil, fmt.Errorf("open pool %s: %w", pool, err)
	}
	defer ioctx.Destroy()
	img, err := rbd.OpenImageReadOnly(ioctx, name, rbd.NoSnapshot)
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", name, err)
	}
	defer img.Close()
	got := make([]byte, n)
	if _, err := img.ReadAt(got, 0); err != nil {
		return nil, fmt.Errorf("read image %s: %w", name, err)
	}
	return got, nil
}

// stateConn is d's connection to the Ceph cluster the database records.
func stateConn(d *Driver, env *driver.Env) (*cephConn, error) {
	st, err := readState(context.Background(), env.DB)
	if err != nil {
		return nil, err
	}
	if err := openHere(env, &st); err != nil {
		return nil, err
	}
	return d.conn(context.Background(), st)
}
