package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Bins are the binaries a run uses.
type Bins struct {
	Cloudctl, Cloudd, Microd string
	// Core is cloudd without role drivers (tests/bench/clouddcore).
	Core string
	// Microinit is microctl's init command alone (tests/bench/microinit):
	// the floor of a bootstrap from a command line.
	Microinit string
}

// Lab owns every namespace, route and process of one bench run. Its names
// start with "cb" and the run's pid in base 36, so a later run can tell a
// dead run's leftovers from a live run's and remove them (CleanStale).
type Lab struct {
	Dir  string
	Bins Bins

	prefix string
	mu     sync.Mutex
	seq    int
	open   map[*Cluster]bool
}

// NewLab makes a lab whose scratch files live below dir.
func NewLab(dir string, bins Bins) *Lab {
	return &Lab{Dir: dir, Bins: bins, prefix: "cb" + strconv.FormatInt(int64(os.Getpid()), 36), open: map[*Cluster]bool{}}
}

// Cluster is a set of node namespaces on one bridge (itself in a namespace,
// so the root namespace never holds an address on the subnet).
type Cluster struct {
	lab    *Lab
	ID     string
	Subnet string // "10.252.N"
	brNS   string
	dir    string
	Nodes  []*Node
}

// Node is one namespace and the daemon (cloudd or microd) running in it.
type Node struct {
	c        *Cluster
	Index    int
	Name     string
	NS       string
	IP       string
	StateDir string
	LogPath  string

	mu   sync.Mutex
	argv []string
	cmd  *exec.Cmd
	done chan struct{}
}

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// NewCluster makes n namespaces on a new bridge; no daemon runs yet.
func (l *Lab) NewCluster(ctx context.Context, n int) (*Cluster, error) {
	l.mu.Lock()
	l.seq++
	seq := l.seq
	l.mu.Unlock()
	id := fmt.Sprintf("%sx%d", l.prefix, seq)
	c := &Cluster{lab: l, ID: id, brNS: id + "-br", dir: filepath.Join(l.Dir, id)}
	l.mu.Lock()
	l.open[c] = true
	l.mu.Unlock()
	if err := os.MkdirAll(c.dir, 0o711); err != nil {
		return c, fmt.Errorf("cluster dir: %w", err)
	}
	// The subnet is claimed by adding its unreachable route in the root
	// namespace (a stray root-namespace packet to it fails at once instead
	// of leaving through the real gateway); a taken one is skipped.
	base := (os.Getpid() + seq*37) % 250
	for i := 0; i < 250; i++ {
		s := fmt.Sprintf("10.252.%d", (base+i)%250+1)
		if err := run(ctx, "ip", "route", "add", "unreachable", s+".0/24"); err == nil {
			c.Subnet = s
			break
		}
	}
	if c.Subnet == "" {
		return c, errors.New("no free 10.252.x.0/24 subnet for a bench cluster")
	}
	for _, s := range [][]string{
		{"netns", "add", c.brNS},
		{"-n", c.brNS, "link", "add", "br0", "type", "bridge"},
		{"-n", c.brNS, "link", "set", "br0", "up"},
	} {
		if err := run(ctx, "ip", s...); err != nil {
			return c, fmt.Errorf("bridge of %s: %w", id, err)
		}
	}
	for i := 0; i < n; i++ {
		if _, err := c.AddNode(ctx); err != nil {
			return c, err
		}
	}
	return c, nil
}

// AddNode adds one namespace to the cluster.
func (c *Cluster) AddNode(ctx context.Context) (*Node, error) {
	i := len(c.Nodes) + 1
	nd := &Node{
		c:        c,
		Index:    i,
		Name:     fmt.Sprintf("node%d", i),
		NS:       fmt.Sprintf("%s-n%d", c.ID, i),
		IP:       fmt.Sprintf("%s.%d", c.Subnet, i),
		StateDir: filepath.Join(c.dir, fmt.Sprintf("node%d", i)),
		LogPath:  filepath.Join(c.dir, fmt.Sprintf("node%d.log", i)),
	}
	c.Nodes = append(c.Nodes, nd)
	host := fmt.Sprintf("%sv%d", c.ID, i)
	for _, s := range [][]string{
		{"netns", "add", nd.NS},
		{"-n", nd.NS, "link", "set", "lo", "up"},
		{"link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", nd.NS},
		{"link", "set", host, "netns", c.brNS},
		{"-n", c.brNS, "link", "set", host, "master", "br0"},
		{"-n", c.brNS, "link", "set", host, "up"},
		{"-n", nd.NS, "addr", "add", nd.IP + "/24", "dev", "eth0"},
		{"-n", nd.NS, "link", "set", "eth0", "up"},
	} {
		if err := run(ctx, "ip", s...); err != nil {
			return nd, fmt.Errorf("node %s of %s: %w", nd.Name, c.ID, err)
		}
	}
	if err := os.MkdirAll(nd.StateDir, 0o711); err != nil {
		return nd, fmt.Errorf("state dir: %w", err)
	}
	return nd, nil
}

// Node returns node i (1-based).
func (c *Cluster) Node(i int) *Node { return c.Nodes[i-1] }

// Close kills every process in the cluster's namespaces and removes the
// namespaces, the route and the scratch files. Safe to call twice.
func (c *Cluster) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, nd := range c.Nodes {
		nd.PowerOff(ctx)
	}
	for _, nd := range c.Nodes {
		_ = run(ctx, "ip", "netns", "del", nd.NS)
	}
	_ = run(ctx, "ip", "netns", "del", c.brNS)
	if c.Subnet != "" {
		_ = run(ctx, "ip", "route", "del", "unreachable", c.Subnet+".0/24")
	}
	_ = os.RemoveAll(c.dir)
	c.lab.mu.Lock()
	delete(c.lab.open, c)
	c.lab.mu.Unlock()
}

// Close closes every cluster still open (the run's last cleanup, also on a signal).
func (l *Lab) Close() {
	l.mu.Lock()
	var cs []*Cluster
	for c := range l.open {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// Start starts argv (cloudd or microd, with its arguments) in the node's
// namespace, in its own process group, logging to the node's log.
func (nd *Node) Start(argv ...string) error {
	nd.mu.Lock()
	defer nd.mu.Unlock()
	if nd.cmd != nil {
		return fmt.Errorf("%s: a daemon already runs", nd.Name)
	}
	logf, err := os.OpenFile(nd.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("log of %s: %w", nd.Name, err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", nd.NS}, argv...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s on %s: %w", argv[0], nd.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	nd.cmd, nd.done, nd.argv = cmd, done, argv
	return nil
}

// Restart starts the daemon last started on the node again (after PowerOff).
func (nd *Node) Restart() error {
	nd.mu.Lock()
	argv := nd.argv
	nd.mu.Unlock()
	if len(argv) == 0 {
		return fmt.Errorf("%s: no daemon was started here before", nd.Name)
	}
	return nd.Start(argv...)
}

// Exited reports whether the daemon started by Start has exited.
func (nd *Node) Exited() bool {
	nd.mu.Lock()
	done := nd.done
	nd.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Pids are the processes in the node's namespace (all started by this run:
// the daemon and what it started).
func (nd *Node) Pids(ctx context.Context) []int {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", nd.NS).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// PowerOff SIGKILLs every process in the node's namespace (a power cut of
// that machine) and waits until they are gone.
func (nd *Node) PowerOff(ctx context.Context) {
	nd.mu.Lock()
	cmd, done := nd.cmd, nd.done
	nd.cmd, nd.done = nil, nil
	nd.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		pids := nd.Pids(ctx)
		if len(pids) == 0 {
			break
		}
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if done != nil {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
	}
	// A killed daemon leaves its socket file; a real reboot would clear it.
	_ = os.Remove(filepath.Join(nd.StateDir, "control.socket"))
}

// Log returns the tail of the node's daemon log.
func (nd *Node) Log() string {
	b, _ := os.ReadFile(nd.LogPath)
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// Exec runs a command in the node's namespace and returns its stdout, its
// exit code and how long it took (stderr goes into the error).
func (nd *Node) Exec(ctx context.Context, env []string, name string, args ...string) (string, time.Duration, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", nd.NS, name}, args...)...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	if err != nil {
		return out.String(), took, fmt.Errorf("%s %s on %s: %w: %s", name, strings.Join(args, " "), nd.Name, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), took, nil
}

var staleName = regexp.MustCompile(`^cb([0-9a-z]+)x[0-9]+-`)

// CleanStale removes what a dead bench run left behind: namespaces named
// by this harness whose run's pid is gone (their processes are killed
// first), and, when no other bench run is alive, the 10.252.x unreachable
// routes.
func CleanStale(ctx context.Context, self string) []string {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil
	}
	var cleaned []string
	otherLive := false
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		name := f[0]
		m := staleName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, err := strconv.ParseInt(m[1], 36, 64)
		if err != nil {
			continue
		}
		if alive(int(pid), self) {
			otherLive = true
			continue
		}
		if pidsOut, err := exec.CommandContext(ctx, "ip", "netns", "pids", name).Output(); err == nil {
			for _, p := range strings.Fields(string(pidsOut)) {
				if n, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(n, syscall.SIGKILL)
				}
			}
		}
		if err := run(ctx, "ip", "netns", "del", name); err == nil {
			cleaned = append(cleaned, name)
		}
	}
	// Scratch directories of dead runs (cloudbench-<pid36>-*).
	if dirs, err := filepath.Glob(filepath.Join(os.TempDir(), "cloudbench-*")); err == nil {
		for _, d := range dirs {
			f := strings.SplitN(strings.TrimPrefix(filepath.Base(d), "cloudbench-"), "-", 2)
			pid, err := strconv.ParseInt(f[0], 36, 64)
			if len(f) != 2 || err != nil || alive(int(pid), self) {
				continue
			}
			if os.RemoveAll(d) == nil {
				cleaned = append(cleaned, d)
			}
		}
	}
	if !otherLive {
		routes, _ := exec.CommandContext(ctx, "ip", "route", "show", "type", "unreachable").Output()
		for _, line := range strings.Split(string(routes), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && f[0] == "unreachable" && strings.HasPrefix(f[1], "10.252.") {
				if run(ctx, "ip", "route", "del", "unreachable", f[1]) == nil {
					cleaned = append(cleaned, "route "+f[1])
				}
			}
		}
	}
	return cleaned
}

// alive reports whether pid is a running bench test binary (named like self).
func alive(pid int, self string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return false
	}
	return strings.TrimSpace(string(b)) == self
}
