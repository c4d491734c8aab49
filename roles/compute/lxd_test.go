package compute

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
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	lxd "github.com/canonical/lxd/client"
	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/roles"
)

// rig is a set of network namespaces on a bridge, one test agent in each.
type rig struct {
	t      *testing.T
	id     string
	subnet string
	root   string
	nodes  []*rigNode
	mu     sync.Mutex
	file   string
}

type rigNode struct {
	name, ns, ip string
	roles        []roles.Role
	cmd          *exec.Cmd
	done         chan struct{}
	log          string
	// departed: no longer in the nodes file (it left the cluster).
	departed bool
}

var rigSeq atomic.Int32

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func requireRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("real LXD test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("real LXD test: needs root")
	}
	for _, b := range []string{"ip", "lxd", "dnsmasq"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("real LXD test: needs %s (scripts/deps.sh installs it)", b)
		}
	}
}

func newRig(t *testing.T, n int) *rig {
	requireRoot(t)
	seq := rigSeq.Add(1)
	r := &rig{t: t, id: fmt.Sprintf("cmp%d%d", os.Getpid()%10000, seq), subnet: fmt.Sprintf("10.254.%d", (os.Getpid()+int(seq)*41)%250+1)}
	root, err := os.MkdirTemp("", "compute-rig-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(root, 0o711)
	r.root, r.file = root, filepath.Join(root, "nodes.json")
	t.Cleanup(r.cleanup)
	must := func(err error) {
		if err != nil {
			t.Fatalf("rig: %v", err)
		}
	}
	must(sh("ip", "netns", "add", r.id+"-br"))
	must(sh("ip", "-n", r.id+"-br", "link", "add", "br0", "type", "bridge"))
	must(sh("ip", "-n", r.id+"-br", "link", "set", "br0", "up"))
	// 10.254.x: the harness uses 10.251.x and the bench lab 10.252.x.
	must(sh("ip", "route", "add", "unreachable", r.subnet+".0/24"))
	for i := 1; i <= n; i++ {
		nd := &rigNode{name: fmt.Sprintf("node%d", i), ns: fmt.Sprintf("%s-n%d", r.id, i), ip: fmt.Sprintf("%s.%d", r.subnet, i), roles: []roles.Role{roles.Compute}}
		nd.log = filepath.Join(root, nd.name+".log")
		host := fmt.Sprintf("%sv%d", r.id, i)
		for _, s := range [][]string{
			{"netns", "add", nd.ns},
			{"-n", nd.ns, "link", "set", "lo", "up"},
			{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", nd.ns},
			{"link", "set", host, "netns", r.id + "-br"},
			{"-n", r.id + "-br", "link", "set", host, "master", "br0"},
			{"-n", r.id + "-br", "link", "set", host, "up"},
			{"-n", nd.ns, "addr", "add", nd.ip + "/24", "dev", "eth0"},
			{"-n", nd.ns, "link", "set", "eth0", "up"},
		} {
			must(sh(append([]string{"ip"}, s...)...))
		}
		must(os.MkdirAll(filepath.Join(root, nd.name), 0o711))
		r.nodes = append(r.nodes, nd)
	}
	r.write()
	return r
}

func (r *rig) node(name string) *rigNode {
	for _, n := range r.nodes {
		if n.name == name {
			return n
		}
	}
	r.t.Fatalf("no node %s", name)
	return nil
}

// write publishes the nodes and their roles (the "cluster database").
func (r *rig) write() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ns []agentNode
	for _, n := range r.nodes {
		if !n.departed {
			ns = append(ns, agentNode{Name: n.name, IP: n.ip, Roles: n.roles})
		}
	}
	b, _ := json.Marshal(ns)
	tmp := r.file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, r.file); err != nil {
		r.t.Fatal(err)
	}
}

// computeNodes names the rig's nodes that have the compute role.
func (r *rig) computeNodes() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	keep := map[string]bool{}
	for _, n := range r.nodes {
		for _, ro := range n.roles {
			if ro == roles.Compute {
				keep[n.name] = true
			}
		}
	}
	return keep
}

// leaderAmong waits (2 minutes at most) until c's LXD names one of nodes its
// database leader with ok(why its lead cannot be handed over, nil when it
// can) true, and returns that node.
func (r *rig) leaderAmong(c lxd.InstanceServer, nodes []*rigNode, what string, ok func(blocked error) bool) *rigNode {
	var found *rigNode
	r.eventually(2*time.Minute, what, func() error {
		ms, err := c.GetClusterMembers()
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if l, blocked := leadership(members(ms), n.name, r.computeNodes()); l && ok(blocked) {
				found = n
				return nil
			}
		}
		return fmt.Errorf("members: %+v", ms)
	})
	return found
}

func (r *rig) setRoles(name string, rs []roles.Role) {
	r.node(name).roles = rs
	r.write()
}

// start runs the agent (this test binary) in the node's namespace.
func (r *rig) start(nd *rigNode) {
	cfg, _ := json.Marshal(agentConfig{Name: nd.name, Root: r.root, Nodes: r.file})
	logf, err := os.OpenFile(nd.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", nd.ns, os.Args[0])
	cmd.Env = append(os.Environ(), agentEnv+"="+string(cfg))
	cmd.Stdout, cmd.Stderr = logf, logf
	// The agent (ip execs it in place) dies with the test binary, even
	// when a test timeout ends it before the cleanups run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	nd.cmd, nd.done = cmd, done
}

// kill SIGKILLs the agent's process group (the agent and its LXD).
func (r *rig) kill(nd *rigNode) {
	if nd.cmd == nil {
		return
	}
	_ = syscall.Kill(-nd.cmd.Process.Pid, syscall.SIGKILL)
	<-nd.done
	nd.cmd = nil
}

// depart drops a node from the nodes file, as cloudd drops a member that
// left the cluster.
func (r *rig) depart(name string) {
	r.mu.Lock()
	r.node(name).departed = true
	r.mu.Unlock()
	r.write()
}

// powerCut stops the node's agent and its LXD (which runs in a process group
// of its own; LXD tells its pid) at once, then SIGKILLs them: nothing gets to
// shut down cleanly or hand anything over.
func (r *rig) powerCut(nd *rigNode) {
	srv, _, err := r.lxd(nd).GetServer()
	if err != nil || srv.Environment.ServerPid <= 0 {
		r.t.Fatalf("%s's LXD pid: %v", nd.name, err)
	}
	pid := int(srv.Environment.ServerPid)
	if nd.cmd != nil {
		_ = syscall.Kill(-nd.cmd.Process.Pid, syscall.SIGSTOP)
	}
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	r.kill(nd)
	r.eventually(time.Minute, nd.name+"'s LXD gone", func() error {
		if err := syscall.Kill(pid, 0); err == nil {
			if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(st), ") Z ") {
				return fmt.Errorf("pid %d still there", pid)
			}
		}
		return nil
	})
}

func (r *rig) lxd(nd *rigNode) lxd.InstanceServer {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	r.t.Cleanup(cancel)
	c, err := lxd.ConnectLXDUnixWithContext(ctx, pathsIn(filepath.Join(r.root, nd.name, "compute")).socket(), nil)
	if err != nil {
		r.t.Fatalf("connect to %s's LXD: %v", nd.name, err)
	}
	return c
}

func (r *rig) logTail(nd *rigNode) string {
	b, _ := os.ReadFile(nd.log)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	lb, _ := os.ReadFile(pathsIn(filepath.Join(r.root, nd.name, "compute")).log)
	if len(lb) > 3000 {
		lb = lb[len(lb)-3000:]
	}
	return string(b) + "\n-- lxd.log --\n" + string(lb)
}

func (r *rig) cleanup() {
	failed := r.t.Failed()
	for _, nd := range r.nodes {
		if failed {
			r.t.Logf("---- %s ----\n%s", nd.name, r.logTail(nd))
		}
	}
	// Stop instances through LXD while it runs (containers outlive LXD),
	// for at most 2 minutes: an LXD that does not answer must not hold the
	// suite (it once hung a cleanup until the 60-minute limit); the kills
	// below end everything anyway.
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.stopInstances()
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		r.t.Logf("cleanup: LXD did not stop the instances within 2 minutes; killing them")
	}
	// LXD runs in a process group of its own: killing the agents' groups
	// only sends it a SIGTERM (Pdeathsig), which it may outlive. Its pid
	// comes from its API.
	var lxdPids []int
	for _, nd := range r.nodes {
		if nd.cmd == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if c, err := lxd.ConnectLXDUnixWithContext(ctx, pathsIn(filepath.Join(r.root, nd.name, "compute")).socket(), &lxd.ConnectionArgs{SkipGetServer: true}); err == nil {
			if srv, _, err := c.GetServer(); err == nil && srv.Environment.ServerPid > 0 {
				lxdPids = append(lxdPids, int(srv.Environment.ServerPid))
			}
		}
		cancel()
	}
	for _, nd := range r.nodes {
		r.kill(nd)
	}
	for _, pid := range lxdPids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	killUnder(r.root)
	for _, nd := range r.nodes {
		_ = sh("ip", "netns", "del", nd.ns)
	}
	_ = sh("ip", "netns", "del", r.id+"-br")
	_ = sh("ip", "route", "del", "unreachable", r.subnet+".0/24")
	if !failed || os.Getenv("COMPUTE_KEEP") == "" {
		_ = os.RemoveAll(r.root)
	}
}

// stopInstances stops, through each node's LXD, the instances it hosts.
func (r *rig) stopInstances() {
	for _, nd := range r.nodes {
		if nd.cmd == nil {
			continue
		}
		if c, err := lxd.ConnectLXDUnix(pathsIn(filepath.Join(r.root, nd.name, "compute")).socket(), nil); err == nil {
			if insts, err := c.GetInstances(lxdapi.InstanceTypeAny); err == nil {
				for _, in := range insts {
					if in.Location == nd.name || in.Location == "none" || in.Location == "" {
						if op, err := c.UpdateInstanceState(in.Name, lxdapi.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, ""); err == nil {
							_ = op.Wait()
						}
					}
				}
			}
		}
	}
}

// killUnder SIGKILLs what LXD left behind for this test only: processes
// whose command line names the test's unique directory (lxc monitors,
// dnsmasq), and the containers' init processes below those monitors.
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
				f := strings.Fields(string(st)[i+1:])
				if len(f) > 2 {
					pp, _ := strconv.Atoi(f[1])
					parent[pid] = pp
				}
			}
		}
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && bytes.Contains(cl, []byte(root)) {
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

// busyboxImage builds a unified LXD image: metadata.yaml and a rootfs of
// busybox-static whose init exits cleanly on SIGPWR (LXD's stop signal).
func busyboxImage(t testing.TB) []byte {
	t.Helper()
	bb := "/bin/busybox"
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
		if len(body) > 0 {
			if _, err := tw.Write(body); err != nil {
				t.Fatal(err)
			}
		}
	}
	meta := fmt.Sprintf("architecture: x86_64\ncreation_date: %d\nproperties:\n  description: busybox (cloudctl tests)\n  os: busybox\n", now.Unix())
	add(&tar.Header{Name: "metadata.yaml", Typeflag: tar.TypeReg, Mode: 0o644}, []byte(meta))
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

// importImage imports the busybox image into c under the alias "busybox".
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
	if err := c.CreateImageAlias(lxdapi.ImageAliasesPost{ImageAliasesEntry: lxdapi.ImageAliasesEntry{Name: "busybox", Target: fp}}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("alias image: %v", err)
	}
}

// launch creates and starts a busybox container on target.
func launch(ctx context.Context, c lxd.InstanceServer, target, name string) error {
	if target != "" {
		c = c.UseTarget(target)
	}
	op, err := c.CreateInstance(lxdapi.InstancesPost{Name: name, Type: lxdapi.InstanceTypeContainer, Source: lxdapi.InstanceSource{Type: "image", Alias: "busybox"}})
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if err := op.WaitContext(ctx); err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	op, err = c.UpdateInstanceState(name, lxdapi.InstanceStatePut{Action: "start", Timeout: -1}, "")
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	if err := op.WaitContext(ctx); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	return nil
}

// execIn runs a command in a container and returns its stdout, recorded by
// LXD (no websockets: the recorded output is read back as a log file).
func execIn(ctx context.Context, c lxd.InstanceServer, name string, cmd ...string) (string, error) {
	op, err := c.ExecInstance(name, lxdapi.InstanceExecPost{Command: cmd, RecordOutput: true}, nil)
	if err != nil {
		return "", fmt.Errorf("exec in %s: %w", name, err)
	}
	if err := op.WaitContext(ctx); err != nil {
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

// eventually retries f until it succeeds or the timeout passes, then fails
// the test with the last error and the agents' logs.
func (r *rig) eventually(timeout time.Duration, what string, f func() error) time.Duration {
	r.t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < timeout {
		if last = f(); last == nil {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.t.Fatalf("%s: not true after %s: %v", what, timeout, last)
	return 0
}

func (r *rig) state(ctx context.Context, nd *rigNode) (PeerState, error) {
	var ps PeerState
	err := agentCall(ctx, r.root, nd.name, "GET", "compute/state", nil, &ps)
	return ps, err
}

// members returns the LXD cluster's online members as nd's LXD sees them.
func (r *rig) online(ctx context.Context, nd *rigNode) ([]string, error) {
	ps, err := r.state(ctx, nd)
	if err != nil {
		return nil, err
	}
	if ps.Cluster == nil {
		return nil, fmt.Errorf("%s: not clustered (%s)", nd.name, ps.Error)
	}
	var on []string
	for _, m := range ps.Cluster.Members {
		if m.Status == "Online" {
			on = append(on, m.Name)
		}
	}
	return on, nil
}
