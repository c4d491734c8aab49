// Package harness makes throw-away multi-node clusters for integration tests:
// each node is a network namespace on a private bridge, with its own address
// and state directory, running the real cloudd. It can kill (SIGKILL),
// restart, partition and heal nodes, and it cleans up every process,
// namespace and route it created, even when a test fails. Names and subnets
// are unique per run (reserved atomically, so concurrent runs never share
// one), every wait has a deadline, and a failed test's log ends with each
// node's status and the tail of its cloudd log (Dump).
package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binaries are the built cloudctl and cloudd.
type Binaries struct {
	Cloudctl string
	Cloudd   string
}

var buildOnce struct {
	sync.Once
	bins Binaries
	err  error
}

// repoRoot finds the module root from this file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Build compiles cloudctl and cloudd once per test binary, with the project's tags.
func Build(t testing.TB) Binaries {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cloudctl-bin-")
		if err != nil {
			buildOnce.err = err
			return
		}
		for name, pkg := range map[string]string{"cloudctl": "./cmd/cloudctl", "cloudd": "./cmd/cloudd"} {
			out := filepath.Join(dir, name)
			cmd := exec.Command("go", "build", "-tags", "pacific libsqlite3", "-o", out, pkg)
			cmd.Dir = repoRoot()
			cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
			if b, err := cmd.CombinedOutput(); err != nil {
				buildOnce.err = fmt.Errorf("build %s: %v\n%s", name, err, b)
				return
			}
		}
		buildOnce.bins = Binaries{Cloudctl: filepath.Join(dir, "cloudctl"), Cloudd: filepath.Join(dir, "cloudd")}
	})
	if buildOnce.err != nil {
		t.Fatalf("%v", buildOnce.err)
	}
	return buildOnce.bins
}

// Main runs the tests of a package that uses the harness and then removes
// the binaries Build made. Call it from TestMain: os.Exit(harness.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if buildOnce.bins.Cloudd != "" {
		_ = os.RemoveAll(filepath.Dir(buildOnce.bins.Cloudd))
	}
	return code
}

// Require skips the test unless it can make namespaces (root, ip, not -short).
func Require(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("integration test: needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("integration test: needs iproute2 (`ip`)")
	}
}

// Cluster is a set of namespaced nodes on one bridge.
type Cluster struct {
	t      testing.TB
	Bins   Binaries
	id     string // short unique prefix for namespace and link names
	Subnet string // e.g. "10.251.7"
	brNS   string
	Nodes  []*Node
	dir    string
	opts   Options
}

// Node is one machine of the test cloud.
type Node struct {
	c *Cluster
	// Index is the node's number (node1 is 1).
	Index    int
	Name     string
	NS       string
	IP       string
	StateDir string
	LogPath  string
	link     string // the node's end of its veth, inside NS
	hostEnd  string // the bridge's end of its veth, in the bridge's namespace

	mu   sync.Mutex
	proc *exec.Cmd
	done chan struct{}
}

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Options change how New builds the cluster.
type Options struct {
	// DaemonArgs are extra cloudd arguments for every node (e.g. --manifest FILE).
	DaemonArgs []string
	// NodeArgs are extra cloudd arguments for one node, by number (1-based).
	NodeArgs map[int][]string
}

// New creates n nodes (named node1..nodeN) with cloudd running on each.
func New(t testing.TB, n int) *Cluster {
	t.Helper()
	return NewWithOptions(t, n, Options{})
}

// NewWithOptions is New with options.
func NewWithOptions(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	Require(t)
	bins := Build(t)
	c := &Cluster{t: t, Bins: bins, dir: t.TempDir(), opts: opts}
	t.Cleanup(c.cleanup)
	// Role services run as unprivileged users (mariadbd as mysql): let them
	// traverse to their directories below the test's temporary directory.
	for _, d := range []string{c.dir, filepath.Dir(c.dir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	ctx := context.Background()
	// A random id names the namespaces and links; creating the bridge's
	// namespace fails if the name is taken, so the id is reserved.
	for attempt := 0; ; attempt++ {
		id := randomID()
		err := run(ctx, "ip", "netns", "add", id+"-br")
		if err == nil {
			c.id, c.brNS = id, id+"-br"
			break
		}
		if attempt == 20 {
			t.Fatalf("harness: no free namespace name: %v", err)
		}
	}
	// The subnet is reserved by its unreachable route in the root
	// namespace: adding it fails if another run holds that subnet. The
	// route also makes any stray root-namespace packet to the subnet fail
	// at once instead of leaving through the real gateway.
	first := mrand.IntN(250)
	for i := 0; ; i++ {
		subnet := fmt.Sprintf("10.251.%d", (first+i)%250+1)
		if err := run(ctx, "ip", "route", "add", "unreachable", subnet+".0/24"); err == nil {
			c.Subnet = subnet
			break
		} else if i == 249 {
			t.Fatalf("harness: no free 10.251.x.0/24 subnet: %v", err)
		}
	}
	must := func(err error) {
		if err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	// The bridge lives in its own namespace, so the root namespace never
	// holds an address on the test subnet.
	must(run(ctx, "ip", "-n", c.brNS, "link", "add", "br0", "type", "bridge"))
	must(run(ctx, "ip", "-n", c.brNS, "link", "set", "br0", "up"))
	for i := 1; i <= n; i++ {
		c.AddNode(t)
	}
	return c
}

// AddNode creates one more namespace and starts cloudd in it.
func (c *Cluster) AddNode(t testing.TB) *Node {
	t.Helper()
	i := len(c.Nodes) + 1
	nd := &Node{
		c:        c,
		Index:    i,
		Name:     fmt.Sprintf("node%d", i),
		NS:       fmt.Sprintf("%s-n%d", c.id, i),
		IP:       fmt.Sprintf("%s.%d", c.Subnet, i),
		StateDir: filepath.Join(c.dir, fmt.Sprintf("node%d", i)),
		LogPath:  filepath.Join(c.dir, fmt.Sprintf("node%d.log", i)),
		link:     "eth0",
		hostEnd:  fmt.Sprintf("%sv%d", c.id, i),
	}
	c.Nodes = append(c.Nodes, nd)
	ctx := context.Background()
	hostEnd := nd.hostEnd
	steps := [][]string{
		{"netns", "add", nd.NS},
		{"-n", nd.NS, "link", "set", "lo", "up"},
		{"link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", nd.NS},
		{"link", "set", hostEnd, "netns", c.brNS},
		{"-n", c.brNS, "link", "set", hostEnd, "master", "br0"},
		{"-n", c.brNS, "link", "set", hostEnd, "up"},
		{"-n", nd.NS, "addr", "add", nd.IP + "/24", "dev", "eth0"},
		{"-n", nd.NS, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := run(ctx, "ip", s...); err != nil {
			t.Fatalf("harness: node %s: %v", nd.Name, err)
		}
	}
	if err := os.MkdirAll(nd.StateDir, 0o700); err != nil {
		t.Fatalf("harness: %v", err)
	}
	nd.Start(t)
	return nd
}

// randomID is a short name prefix: "t" and 8 hex digits, so that the
// longest link name ("<id>v<n>") stays within the 15-byte limit.
func randomID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// Node returns node i (1-based).
func (c *Cluster) Node(i int) *Node { return c.Nodes[i-1] }

// Start starts cloudd in the node's namespace and waits for its socket.
func (nd *Node) Start(t testing.TB) {
	t.Helper()
	nd.mu.Lock()
	if nd.proc != nil {
		nd.mu.Unlock()
		t.Fatalf("harness: %s is already running", nd.Name)
	}
	logf, err := os.OpenFile(nd.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		nd.mu.Unlock()
		t.Fatalf("harness: %v", err)
	}
	args := append([]string{"netns", "exec", nd.NS, nd.c.Bins.Cloudd, "--state-dir", nd.StateDir}, nd.c.opts.DaemonArgs...)
	args = append(args, nd.c.opts.NodeArgs[nd.Index]...)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		nd.mu.Unlock()
		logf.Close()
		t.Fatalf("harness: start cloudd on %s: %v", nd.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	nd.proc, nd.done = cmd, done
	nd.mu.Unlock()

	const wait = time.Minute
	deadline := time.Now().Add(wait)
	sock := filepath.Join(nd.StateDir, "control.socket")
	var last Result
	for {
		if _, err := os.Stat(sock); err == nil {
			if last = nd.run(10*time.Second, "version"); last.Code == 0 {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("harness: cloudd on %s exited at start; log:\n%s", nd.Name, nd.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("harness: cloudd on %s did not answer on its socket within %s (last `cloudctl version`: exit %d: %s); log:\n%s",
				nd.Name, wait, last.Code, strings.TrimSpace(last.Stderr), nd.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Running reports whether this node's cloudd process is alive.
func (nd *Node) Running() bool {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	return nd.proc != nil
}

// Kill is a power cut for the node's cloudd: SIGKILL to cloudd's process
// group and to the process groups of the children it supervises (each leads
// its own group, see supervisor.ExecRunner), and it waits until they are gone.
// Processes of the node that cloudd did not start are left alone.
func (nd *Node) Kill(t testing.TB) {
	t.Helper()
	nd.mu.Lock()
	cmd, done := nd.proc, nd.done
	nd.proc = nil
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	pid := cmd.Process.Pid
	// Freeze cloudd's group first, so it starts nothing while its children
	// are listed; SIGKILL works on stopped processes.
	_ = syscall.Kill(-pid, syscall.SIGSTOP)
	var groups []int
	for _, p := range procs() {
		if p.ppid == pid && p.pgid == p.pid {
			groups = append(groups, p.pid)
			_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		}
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("harness: %s: cloudd (pid %d) did not die within 30s of SIGKILL", nd.Name, pid)
	}
	groups = append(groups, pid)
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := liveInGroups(groups)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("harness: %s: processes still alive 30s after SIGKILL: %v", nd.Name, left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A killed daemon leaves its socket file; a real reboot would clear it.
	_ = os.Remove(filepath.Join(nd.StateDir, "control.socket"))
}

// KillContainer SIGKILLs an LXD container of this node as a power cut
// would: its liblxc monitor ("[lxc monitor] LXDPATH NAME", whose LXD path
// lies under the node's state directory) and every process below it (the
// container's init is the monitor's child). Containers outlive a Kill of
// their node: the monitors are not cloudd's or LXD's children. It returns
// how many processes it killed, and waits until they are gone.
func (nd *Node) KillContainer(t testing.TB, name string) int {
	t.Helper()
	all := procs()
	children := map[int][]int{}
	for _, p := range all {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var victims []int
	for _, p := range all {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/cmdline")
		if err != nil {
			continue
		}
		f := strings.Fields(strings.ReplaceAll(string(b), "\x00", " "))
		if len(f) < 4 || f[0] != "[lxc" || f[1] != "monitor]" || f[len(f)-1] != name || !strings.HasPrefix(f[2], nd.StateDir) {
			continue
		}
		stack := []int{p.pid}
		for len(stack) > 0 {
			pid := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			victims = append(victims, pid)
			stack = append(stack, children[pid]...)
		}
	}
	// The deepest first: the container's processes, then its monitor.
	for i := len(victims) - 1; i >= 0; i-- {
		_ = syscall.Kill(victims[i], syscall.SIGKILL)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range victims {
		for {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			if err != nil || strings.Contains(string(b), ") Z ") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("harness: %s: container %s's process %d still alive 30s after SIGKILL", nd.Name, name, pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return len(victims)
}

// procInfo is one line of /proc/PID/stat.
type procInfo struct {
	pid, ppid, pgid int
	state           string
}

// procs lists every process (zombies included, state "Z").
func procs() []procInfo {
	ents, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b)[i+1:])
		if len(f) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgid, _ := strconv.Atoi(f[2])
		out = append(out, procInfo{pid: pid, ppid: ppid, pgid: pgid, state: f[0]})
	}
	return out
}

// liveInGroups lists the processes of the given groups that have not exited
// (zombies have: here PID 1 reaps orphans late).
func liveInGroups(groups []int) []int {
	in := map[int]bool{}
	for _, g := range groups {
		in[g] = true
	}
	var left []int
	for _, p := range procs() {
		if in[p.pgid] && p.state != "Z" && p.state != "X" {
			left = append(left, p.pid)
		}
	}
	return left
}

// killNamespace SIGKILLs every process left in the node's network namespace
// (the namespace is this test's own, so all of them are) and waits for them.
func (nd *Node) killNamespace() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.Command("ip", "netns", "pids", nd.NS).Output()
		if err != nil {
			return nil // the namespace is gone
		}
		var left []int
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
				left = append(left, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still in namespace %s 30s after SIGKILL: %v", nd.NS, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Restart starts cloudd again after Kill.
func (nd *Node) Restart(t testing.TB) {
	t.Helper()
	nd.Kill(t)
	nd.Start(t)
}

// SetPathMTU makes the path between the node and the others carry frames of
// at most mtu bytes while the node's own interface keeps its MTU: the
// bridge's end of the node's link gets that MTU, and the kernel drops
// larger frames there, both ways, without an ICMP answer (a tunnel with a
// smaller MTU that sends no "fragmentation needed"). Segmentation offload
// is honoured as on a real link: a TCP segment that fits passes. 0
// restores 1500.
func (nd *Node) SetPathMTU(mtu int) error {
	if mtu == 0 {
		mtu = 1500
	}
	return run(context.Background(), "ip", "-n", nd.c.brNS, "link", "set", nd.hostEnd, "mtu", strconv.Itoa(mtu))
}

// Partition cuts the node off the network (its link goes down).
func (nd *Node) Partition(t testing.TB) {
	t.Helper()
	if err := run(context.Background(), "ip", "-n", nd.NS, "link", "set", nd.link, "down"); err != nil {
		t.Fatalf("harness: %v", err)
	}
}

// Heal reconnects a partitioned node.
func (nd *Node) Heal(t testing.TB) {
	t.Helper()
	if err := run(context.Background(), "ip", "-n", nd.NS, "link", "set", nd.link, "up"); err != nil {
		t.Fatalf("harness: %v", err)
	}
}

// Result is what one CLI invocation printed.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// CLIQuiet runs cloudctl inside the node's namespace against its daemon.
func (nd *Node) CLIQuiet(args ...string) (string, string, int) {
	r := nd.Run(args...)
	return r.Stdout, r.Stderr, r.Code
}

// Run runs cloudctl inside the node's namespace against its daemon (giving
// up after 3 minutes).
func (nd *Node) Run(args ...string) Result {
	return nd.run(3*time.Minute, args...)
}

// RunFor is Run with a time limit of its own, for commands that wait
// longer than Run allows (a removal that moves instances first).
func (nd *Node) RunFor(timeout time.Duration, args ...string) Result {
	return nd.run(timeout, args...)
}

// Command is cloudctl with args in the node's namespace, against its
// daemon, not started: for a test that feeds its input or kills the node
// while it runs.
func (nd *Node) Command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", nd.NS, nd.c.Bins.Cloudctl, "--state-dir", nd.StateDir}, args...)
	return exec.CommandContext(ctx, "ip", full...)
}

func (nd *Node) run(timeout time.Duration, args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := nd.Command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if ctx.Err() != nil {
		code = -1
		fmt.Fprintf(&errb, "\n(harness: cloudctl %s gave up after %s)", strings.Join(args, " "), timeout)
	} else if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		errb.WriteString(err.Error())
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// MustRun runs cloudctl and fails the test on a non-zero exit.
func (nd *Node) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	r := nd.Run(args...)
	if r.Code != 0 {
		t.Fatalf("%s: cloudctl %s: exit %d\nstdout: %s\nstderr: %s", nd.Name, strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// Output runs a command inside the node's namespace and returns its stdout
// (stderr is returned inside the error).
func (nd *Node) Output(ctx context.Context, name string, args ...string) ([]byte, error) {
	full := append([]string{"netns", "exec", nd.NS, name}, args...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// Dir is the cluster's scratch directory (removed after the test).
func (c *Cluster) Dir() string { return c.dir }

// Exec runs any command inside the node's namespace.
func (nd *Node) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	full := append([]string{"netns", "exec", nd.NS, name}, args...)
	return exec.CommandContext(ctx, "ip", full...).CombinedOutput()
}

// Log returns the tail of the node's daemon log (its last 8000 bytes).
func (nd *Node) Log() string {
	b, _ := os.ReadFile(nd.LogPath)
	const max = 8000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// LogTail returns the last n lines of the node's daemon log.
func (nd *Node) LogTail(n int) string {
	b, err := os.ReadFile(nd.LogPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Dump logs what each node shows now: `cloudctl status` (if its cloudd
// runs) and the last 40 lines of its cloudd log. The cluster calls it when
// a test has failed, before tearing down, so a CI log explains the failure.
func (c *Cluster) Dump(t testing.TB) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "==== cluster %s (subnet %s.0/24) at %s ====\n", c.id, c.Subnet, time.Now().UTC().Format("15:04:05.000"))
	for _, nd := range c.Nodes {
		fmt.Fprintf(&b, "---- %s (%s, namespace %s) ----\n", nd.Name, nd.IP, nd.NS)
		if nd.Running() {
			r := nd.run(20*time.Second, "status")
			fmt.Fprintf(&b, "$ cloudctl status  (exit %d)\n%s", r.Code, r.Stdout)
			if r.Stderr != "" {
				fmt.Fprintf(&b, "stderr: %s\n", strings.TrimSpace(r.Stderr))
			}
		} else {
			b.WriteString("cloudd is not running (killed or never started)\n")
		}
		fmt.Fprintf(&b, "$ tail -40 %s\n%s\n", nd.LogPath, nd.LogTail(40))
		for _, f := range roleLogs(nd.StateDir, 8) {
			if tail := tailLines(f, 15); !strings.ContainsRune(tail, 0) { // skip binary files named *.log
				fmt.Fprintf(&b, "$ tail -15 %s\n%s\n", f, tail)
			}
		}
	}
	t.Logf("%s", b.String())
}

// roleLogs lists the most recently written log files of the node's role
// processes (mariadbd.out, ceph and LXD logs: *.log, *.out, *.err below its
// state directory), at most max of them.
func roleLogs(stateDir string, max int) []string {
	type logFile struct {
		path string
		mod  time.Time
	}
	var found []logFile
	_ = filepath.WalkDir(stateDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		switch filepath.Ext(path) {
		case ".log", ".out", ".err":
			if info, err := d.Info(); err == nil && info.Mode().IsRegular() && info.Size() > 0 {
				found = append(found, logFile{path, info.ModTime()})
			}
		}
		return nil
	})
	sort.Slice(found, func(i, j int) bool { return found[i].mod.After(found[j].mod) })
	var out []string
	for i := 0; i < len(found) && len(out) < max; i++ {
		if strings.Contains(found[i].path, ".db/") || strings.Contains(found[i].path, "/data/") {
			continue // database files (RocksDB, InnoDB) that end in .log
		}
		out = append(out, found[i].path)
	}
	return out
}

// tailLines returns the last n lines of a file (reading at most its last 64 KiB).
func tailLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	const window = 64 << 10
	if info, err := f.Stat(); err == nil && info.Size() > window {
		_, _ = f.Seek(info.Size()-window, 0)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// MinWait is the shortest deadline Eventually applies. A deadline bounds a
// hung test; it is not a speed expectation, and a 2-core CI machine running
// several daemons per node can be ten times slower than a quiet one.
const MinWait = 2 * time.Minute

// Eventually retries f until it returns nil or the timeout (at least
// MinWait) passes; then it fails the test with f's last error (and, through
// the cluster's cleanup, each node's status and log tail). It returns how
// long the condition took, for the log; never assert on it.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	timeout = max(timeout, MinWait)
	start := time.Now()
	var last error
	tries := 0
	for {
		tries++
		if last = f(); last == nil {
			return time.Since(start)
		}
		if time.Since(start) >= timeout {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s (%d tries); last seen: %v", what, timeout, tries, last)
	return 0
}

func (c *Cluster) cleanup() {
	if c.t.Failed() {
		c.Dump(c.t)
	}
	for _, nd := range c.Nodes {
		nd.Kill(c.t)
	}
	ctx := context.Background()
	for _, nd := range c.Nodes {
		if err := nd.killNamespace(); err != nil {
			c.t.Errorf("harness: %v", err)
		}
		_ = run(ctx, "ip", "netns", "del", nd.NS)
	}
	if c.brNS != "" {
		_ = run(ctx, "ip", "netns", "del", c.brNS)
	}
	if c.Subnet != "" {
		_ = run(ctx, "ip", "route", "del", "unreachable", c.Subnet+".0/24")
	}
}

// Pid is the process id of the node's running cloudd, or 0.
func (nd *Node) Pid() int {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.proc == nil || nd.proc.Process == nil {
		return 0
	}
	return nd.proc.Process.Pid
}
