// Package harness makes throw-away multi-node clusters for integration tests:
// each node is a network namespace on a private bridge, with its own address
// and state directory, running the real cloudd. It can kill (SIGKILL),
// restart, partition and heal nodes, and it cleans up every process,
// namespace and route it created, even when a test fails.
package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
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

var clusterSeq atomic.Int32

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
	seq := clusterSeq.Add(1)
	id := fmt.Sprintf("c%d%d", os.Getpid()%10000, seq)
	subnet := fmt.Sprintf("10.251.%d", (os.Getpid()+int(seq)*37)%250+1)
	c := &Cluster{t: t, Bins: bins, id: id, Subnet: subnet, brNS: id + "-br", dir: t.TempDir(), opts: opts}
	t.Cleanup(c.cleanup)
	// Role services run as unprivileged users (mariadbd as mysql): let them
	// traverse to their directories below the test's temporary directory.
	for _, d := range []string{c.dir, filepath.Dir(c.dir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	ctx := context.Background()
	must := func(err error) {
		if err != nil {
			t.Fatalf("harness: %v", err)
		}
	}
	// The bridge lives in its own namespace, so the root namespace never
	// holds an address on the test subnet; an unreachable route there makes
	// any stray root-namespace packet to it fail at once instead of leaving
	// through the real gateway.
	must(run(ctx, "ip", "netns", "add", c.brNS))
	must(run(ctx, "ip", "-n", c.brNS, "link", "add", "br0", "type", "bridge"))
	must(run(ctx, "ip", "-n", c.brNS, "link", "set", "br0", "up"))
	must(run(ctx, "ip", "route", "add", "unreachable", subnet+".0/24"))
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
	}
	c.Nodes = append(c.Nodes, nd)
	ctx := context.Background()
	hostEnd := fmt.Sprintf("%sv%d", c.id, i)
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

	deadline := time.Now().Add(20 * time.Second)
	sock := filepath.Join(nd.StateDir, "control.socket")
	for {
		if _, err := os.Stat(sock); err == nil {
			if _, _, code := nd.CLIQuiet("version"); code == 0 {
				return
			}
		}
		select {
		case <-done:
			t.Fatalf("harness: cloudd on %s exited at start; log:\n%s", nd.Name, nd.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("harness: cloudd on %s did not open its socket in 20s; log:\n%s", nd.Name, nd.Log())
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

// Kill sends SIGKILL to the node's cloudd (a power cut for that node) and waits for it.
func (nd *Node) Kill(t testing.TB) {
	t.Helper()
	nd.mu.Lock()
	cmd, done := nd.proc, nd.done
	nd.proc = nil
	nd.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("harness: %s did not die after SIGKILL", nd.Name)
	}
	// A killed daemon leaves its socket file; a real reboot would clear it.
	_ = os.Remove(filepath.Join(nd.StateDir, "control.socket"))
}

// Restart starts cloudd again after Kill.
func (nd *Node) Restart(t testing.TB) {
	t.Helper()
	nd.Kill(t)
	nd.Start(t)
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

// Run runs cloudctl inside the node's namespace against its daemon.
func (nd *Node) Run(args ...string) Result {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	full := append([]string{"netns", "exec", nd.NS, nd.c.Bins.Cloudctl, "--state-dir", nd.StateDir}, args...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
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

// Log returns the node's daemon log.
func (nd *Node) Log() string {
	b, _ := os.ReadFile(nd.LogPath)
	const max = 8000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// Eventually retries f until it returns nil or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() error) time.Duration {
	t.Helper()
	start := time.Now()
	var last error
	for time.Since(start) < timeout {
		if last = f(); last == nil {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: not true after %s: %v", what, timeout, last)
	return 0
}

func (c *Cluster) cleanup() {
	failed := c.t.Failed()
	for _, nd := range c.Nodes {
		if failed {
			c.t.Logf("---- %s daemon log (tail) ----\n%s", nd.Name, nd.Log())
		}
		nd.Kill(c.t)
	}
	ctx := context.Background()
	for _, nd := range c.Nodes {
		_ = run(ctx, "ip", "netns", "del", nd.NS)
	}
	_ = run(ctx, "ip", "netns", "del", c.brNS)
	_ = run(ctx, "ip", "route", "del", "unreachable", c.Subnet+".0/24")
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
