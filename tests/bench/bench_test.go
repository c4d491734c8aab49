package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/canonical/microcluster/microcluster"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
)

// env knobs: CLOUDCTL_BENCH=1 runs; CLOUDBENCH_ONLY=cli,boot,join,cloud,rest,fail
// limits the phases; CLOUDBENCH_JOIN_N / CLOUDBENCH_JOIN_REPS size the join
// series; CLOUDBENCH_OUT is the docs directory (default the repository's).
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// bench is one run: the lab, the report, and what the phases share.
type bench struct {
	t      *testing.T
	ctx    context.Context
	lab    *Lab
	rep    *Report
	root   string
	cp     roles.Role   // a role without a driver: nodes with it run cloudd only
	driven []roles.Role // roles whose driver cloudd lists
	other  []string     // drivers listed that are not roles (e.g. the endpoint)
	start  time.Time
	// kept are 1-node clusters from the bootstrap phase, measured at rest.
	kept map[string]*Cluster
	logf func(format string, args ...any)
}

// step logs progress with the run's elapsed time.
func (b *bench) step(format string, args ...any) {
	if b.logf != nil {
		b.logf("[%s] %s", time.Since(b.start).Round(time.Second), fmt.Sprintf(format, args...))
	}
}

func TestBench(t *testing.T) {
	if os.Getenv("CLOUDCTL_BENCH") != "1" {
		t.Skip("benchmark harness: run with `make bench` (CLOUDCTL_BENCH=1)")
	}
	if os.Geteuid() != 0 {
		t.Skip("benchmark harness: needs root for network namespaces")
	}
	root := repoRoot()
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	defer cancel()
	self, _ := os.ReadFile("/proc/self/comm")
	if cleaned := CleanStale(ctx, strings.TrimSpace(string(self))); len(cleaned) > 0 {
		t.Logf("removed leftovers of an earlier run: %s", strings.Join(cleaned, ", "))
	}
	dir, err := os.MkdirTemp("", "cloudbench-"+strconv.FormatInt(int64(os.Getpid()), 36)+"-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	bins, err := build(ctx, root, dir)
	if err != nil {
		t.Fatal(err)
	}
	lab := NewLab(dir, bins)
	defer lab.Close()
	// An interrupted run still removes its namespaces and processes.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		if _, ok := <-sig; ok {
			lab.Close()
			os.RemoveAll(dir)
			os.Exit(130)
		}
	}()

	b := &bench{t: t, ctx: ctx, lab: lab, rep: &Report{}, root: root, start: time.Now(), kept: map[string]*Cluster{}}
	b.driven, b.other, err = registeredDrivers(filepath.Join(root, "cmd", "cloudd", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	// Control plane only: clouddcore (cloudd with no role drivers) whose
	// nodes record the compute role, which then runs nothing.
	b.cp = roles.Compute
	b.header()
	only := os.Getenv("CLOUDBENCH_ONLY")
	b.logf = t.Logf
	phase := func(name string, f func() error) {
		if only != "" && !strings.Contains(","+only+",", ","+name+",") {
			return
		}
		t0 := time.Now()
		if err := f(); err != nil {
			b.rep.Gap("phase %s stopped: %v", name, err)
			t.Logf("phase %s: %v", name, err)
		}
		t.Logf("phase %s took %s", name, time.Since(t0).Round(time.Second))
	}
	phase("cli", b.phaseCLI)
	phase("boot", b.phaseBootstrap)
	phase("join", b.phaseJoin)
	phase("cloud", b.phaseCloud)
	phase("rest", b.phaseRestFailPower)
	phase("fail", b.phaseFailoverBare)
	for _, c := range b.kept {
		c.Close()
	}
	b.rep.Header = append(b.rep.Header, "", fmt.Sprintf("Whole run: %s.", time.Since(b.start).Round(time.Second)))
	out := os.Getenv("CLOUDBENCH_OUT")
	if out == "" {
		out = filepath.Join(root, "docs")
	}
	if err := os.WriteFile(filepath.Join(out, "benchmarks.md"), []byte(b.rep.Markdown()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", filepath.Join(out, "benchmarks.md"))
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// build compiles cloudctl and cloudd with the project's tags, and
// microcluster's example daemon from the module cache (never committed).
func build(ctx context.Context, root, dir string) (Bins, error) {
	bins := Bins{Cloudctl: filepath.Join(dir, "cloudctl"), Cloudd: filepath.Join(dir, "cloudd"), Microd: filepath.Join(dir, "microd"), Core: filepath.Join(dir, "clouddcore"), Microinit: filepath.Join(dir, "microinit")}
	version, _ := exec.CommandContext(ctx, "git", "-C", root, "describe", "--tags", "--always", "--dirty").Output()
	ld := "-X github.com/cloudctl/cloudctl/api.Version=" + strings.TrimSpace(string(version))
	for _, s := range [][]string{
		{"build", "-tags", "pacific libsqlite3", "-ldflags", ld, "-o", bins.Cloudctl, "./cmd/cloudctl"},
		{"build", "-tags", "pacific libsqlite3", "-ldflags", ld, "-o", bins.Cloudd, "./cmd/cloudd"},
		{"build", "-tags", "pacific libsqlite3", "-ldflags", ld, "-o", bins.Core, "./tests/bench/clouddcore"},
		{"build", "-tags", "libsqlite3", "-o", bins.Microd, "github.com/canonical/microcluster/example/cmd/microd"},
		{"build", "-tags", "libsqlite3", "-o", bins.Microinit, "./tests/bench/microinit"},
	} {
		cmd := exec.CommandContext(ctx, "go", s...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			return bins, fmt.Errorf("go %s: %w: %s", strings.Join(s, " "), err, out)
		}
	}
	return bins, nil
}

// registeredDrivers reads cmd/cloudd/main.go's drivers() list: the roles
// whose driver cloudd runs, and other drivers (by package name).
func registeredDrivers(mainGo string) ([]roles.Role, []string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, mainGo, nil, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("read the driver list: %w", err)
	}
	imports := map[string]string{}
	for _, im := range f.Imports {
		p, _ := strconv.Unquote(im.Path.Value)
		name := filepath.Base(p)
		if im.Name != nil {
			name = im.Name.Name
		}
		imports[name] = p
	}
	var rs []roles.Role
	var other []string
	found := false
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Name.Name != "drivers" {
			continue
		}
		found = true
		ast.Inspect(fn, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			id, ok := sel.X.(*ast.Ident)
			if !ok {
				return true
			}
			p := imports[id.Name]
			if !strings.Contains(p, "/roles/") {
				return true
			}
			name := filepath.Base(p)
			if roles.Valid(roles.Role(name)) {
				rs = append(rs, roles.Role(name))
			} else {
				other = append(other, name)
			}
			return true
		})
	}
	if !found {
		return nil, nil, fmt.Errorf("no drivers() function in %s", mainGo)
	}
	return rs, other, nil
}

func hasRole(rs []roles.Role, r roles.Role) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

func (b *bench) header() {
	commit, _ := exec.CommandContext(b.ctx, "git", "-C", b.root, "rev-parse", "--short=12", "HEAD").Output()
	subject, _ := exec.CommandContext(b.ctx, "git", "-C", b.root, "log", "-1", "--format=%s").Output()
	dirty, _ := exec.CommandContext(b.ctx, "git", "-C", b.root, "status", "--porcelain", "--untracked-files=no").Output()
	state := "clean tree"
	if len(strings.TrimSpace(string(dirty))) > 0 {
		state = fmt.Sprintf("%d tracked files modified", len(strings.Split(strings.TrimSpace(string(dirty)), "\n")))
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	mem := "?"
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kib, _ := strconv.Atoi(f[1])
				mem = fmt.Sprintf("%.1f GiB", float64(kib)/1024/1024)
			}
		}
	}
	cpu := "?"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	var drv []string
	for _, r := range b.driven {
		drv = append(drv, string(r))
	}
	drv = append(drv, b.other...)
	cp := fmt.Sprintf("`clouddcore` (tests/bench/clouddcore: the daemon package with an empty driver list, so nothing but cloudd runs) on nodes given the `%s` role; the real cloudd with each role is measured beside it", b.cp)
	b.rep.Header = []string{
		"Written by `make bench` (tests/bench, `CLOUDCTL_BENCH=1 go test ./tests/bench -run TestBench`); do not edit by hand.",
		"Every node is a network namespace on one host running the real daemons, as in the integration tests.",
		"Each figure is the median over repeated runs with its spread (min–max below 10 runs, p10–p90 from 10),",
		"beside a floor measured in the same run on the same machine, and their ratio. Timings are never asserted.",
		"",
		fmt.Sprintf("- Machine: %d CPUs (%s), %s RAM, kernel %s, load average at start %s", runtime.NumCPU(), cpu, mem, strings.TrimSpace(string(kernel)), strings.Join(strings.Fields(string(load))[:3], " ")),
		fmt.Sprintf("- Commit: %s (%s), %s; run at %s", strings.TrimSpace(string(commit)), strings.TrimSpace(string(subject)), state, b.start.UTC().Format("2006-01-02 15:04 UTC")),
		fmt.Sprintf("- Drivers cloudd lists (cmd/cloudd/main.go): %s. Control plane only: %s.", strings.Join(drv, ", "), cp),
		"- Floor for cloudd: microcluster's own example daemon (`microd`, same microcluster version, no extensions), built from the module cache at bench time. It is driven through microcluster's Go API over its unix socket from the harness (so those figures carry no CLI start, and cloudctl's carry `ip netns exec` + CLI start, ~10–20 ms), and for the bootstrap also from a command line in the namespace (`microinit`, microctl's init command), which carries the same as cloudctl's.",
	}
}

// ---------------------------------------------------------------- helpers

func (b *bench) cli(ctx context.Context, nd *Node, args ...string) (string, time.Duration, error) {
	return nd.Exec(ctx, nil, b.lab.Bins.Cloudctl, append([]string{"--state-dir", nd.StateDir}, args...)...)
}

// startCloudd starts cloudd and waits until its API answers.
func (b *bench) startCloudd(nd *Node) error {
	if err := nd.Start(b.lab.Bins.Cloudd, "--state-dir", nd.StateDir); err != nil {
		return err
	}
	return b.waitCloudd(nd)
}

// startCore starts cloudd without role drivers and waits until its API answers.
func (b *bench) startCore(nd *Node) error {
	if err := nd.Start(b.lab.Bins.Core, "--state-dir", nd.StateDir); err != nil {
		return err
	}
	return b.waitCloudd(nd)
}

// restartCloudd starts the node's daemon again after PowerOff and waits for its API.
func (b *bench) restartCloudd(nd *Node) error {
	if err := nd.Restart(); err != nil {
		return err
	}
	return b.waitCloudd(nd)
}

func (b *bench) waitCloudd(nd *Node) error {
	_, err := waitFor(b.ctx, 30*time.Second, "cloudd on "+nd.Name+" answers", func() error {
		if nd.Exited() {
			return errStop{fmt.Errorf("cloudd on %s exited; log:\n%s", nd.Name, nd.Log())}
		}
		if _, err := os.Stat(filepath.Join(nd.StateDir, "control.socket")); err != nil {
			return err
		}
		c, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		_, _, err := b.cli(c, nd, "version")
		return err
	})
	return err
}

func (b *bench) startMicrod(nd *Node) error {
	if err := nd.Start(b.lab.Bins.Microd, "--state-dir", nd.StateDir); err != nil {
		return err
	}
	m, err := microcluster.App(microcluster.Args{StateDir: nd.StateDir})
	if err != nil {
		return fmt.Errorf("microd client on %s: %w", nd.Name, err)
	}
	c, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := m.Ready(c); err != nil {
		return fmt.Errorf("microd on %s not ready: %w; log:\n%s", nd.Name, err, nd.Log())
	}
	return nil
}

func microApp(nd *Node) (*microcluster.MicroCluster, error) {
	m, err := microcluster.App(microcluster.Args{StateDir: nd.StateDir})
	if err != nil {
		return nil, fmt.Errorf("microd client on %s: %w", nd.Name, err)
	}
	return m, nil
}

// startAll starts a daemon on every node, a few at a time.
func startAll(nodes []*Node, start func(*Node) error) error {
	sem := make(chan struct{}, 4)
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, nd := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = start(nd)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// errStop ends a waitFor at once.
type errStop struct{ error }

// waitFor polls f every 100 ms until it returns nil, and returns how long
// that took; on timeout the error says what was last seen.
func waitFor(ctx context.Context, timeout time.Duration, what string, f func() error) (time.Duration, error) {
	start := time.Now()
	var last error
	for {
		last = f()
		if last == nil {
			return time.Since(start), nil
		}
		var stop errStop
		if errors.As(last, &stop) {
			return time.Since(start), fmt.Errorf("%s: %w", what, stop.error)
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("%s: not after %s; last seen: %v", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (b *bench) status(nd *Node) (api.Status, error) {
	c, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	out, _, err := b.cli(c, nd, "status", "--format", "json")
	var st api.Status
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return st, fmt.Errorf("status json: %w", err)
	}
	return st, nil
}

func layerOf(r roles.Role) string {
	switch r {
	case roles.Control:
		return api.LayerControl
	case roles.Storage:
		return api.LayerStorage
	case roles.Compute:
		return api.LayerCompute
	}
	return string(r)
}

// layerReady: the role's layer exists, is built, has no error and every
// member is in a serving state (a single node's layer may still warn that
// it is not replicated).
func layerReady(st api.Status, layer string) error {
	l := st.Layer(layer)
	switch {
	case l == nil:
		return fmt.Errorf("no %s layer yet", layer)
	case !l.Built:
		return errStop{fmt.Errorf("%s layer: no driver in this cloudd", layer)}
	case l.Health == api.HealthError || len(l.Members) == 0:
		return fmt.Errorf("%s layer health %s: %+v", layer, l.Health, l.Members)
	}
	for _, m := range l.Members {
		switch m.State {
		case "running", "online", "up", "voter", "ok", "active":
		default:
			return fmt.Errorf("%s layer: %s is %s (%s)", layer, m.Node, m.State, m.Detail)
		}
	}
	return nil
}

func layerHA(st api.Status, layer string) error {
	l := st.Layer(layer)
	if l == nil {
		return fmt.Errorf("no %s layer", layer)
	}
	if l.HA != api.HAYes {
		return fmt.Errorf("%s HA %s: %s", layer, l.HA, l.Reason)
	}
	return nil
}

// haLayers are the built layers whose HA verdict is yes.
func haLayers(st api.Status) map[string]bool {
	out := map[string]bool{}
	for _, l := range st.Layers {
		if l.Built && l.HA == api.HAYes {
			out[l.Name] = true
		}
	}
	return out
}

// haBack is nil when every layer of want is HA again in st.
func haBack(st api.Status, want map[string]bool) error {
	got := haLayers(st)
	var missing []string
	for _, k := range sortedKeys(want) {
		if !got[k] {
			l := st.Layer(k)
			if l == nil {
				missing = append(missing, k+": absent")
				continue
			}
			missing = append(missing, fmt.Sprintf("%s: HA %s (%s)", k, l.HA, l.Reason))
		}
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}

// anyStatus is the status from the first node that answers.
func (b *bench) anyStatus(c *Cluster) (api.Status, error) {
	var st api.Status
	var err error
	for _, nd := range c.Nodes {
		if nd.Exited() {
			continue
		}
		if st, err = b.status(nd); err == nil {
			return st, nil
		}
	}
	if err == nil {
		err = errors.New("no node runs")
	}
	return st, err
}

// waitHA waits (untimed) until every layer of want is HA.
func (b *bench) waitHA(c *Cluster, want map[string]bool) error {
	_, err := waitFor(b.ctx, 5*time.Minute, "layers HA before the next measurement", func() error {
		st, err := b.anyStatus(c)
		if err != nil {
			return err
		}
		return haBack(st, want)
	})
	return err
}

func voters(st api.Status) int {
	n := 0
	for _, m := range st.Members {
		if m.DqliteRole == "voter" {
			n++
		}
	}
	return n
}

// bootstrapCloudd bootstraps nd with roles and returns the CLI's wall time.
func (b *bench) bootstrapCloudd(nd *Node, rs string) (time.Duration, error) {
	c, cancel := context.WithTimeout(b.ctx, 3*time.Minute)
	defer cancel()
	_, took, err := b.cli(c, nd, append([]string{"bootstrap", "--name", nd.Name, "--address", nd.IP, "--role", rs}, roleArgs(rs)...)...)
	if err != nil {
		return took, err
	}
	return took, b.addDisk(nd, rs)
}

// addDisk gives a storage node one file-backed OSD (a namespace has no
// spare disk); nothing for other roles.
func (b *bench) addDisk(nd *Node, rs string) error {
	if !strings.Contains(rs, string(roles.Storage)) {
		return nil
	}
	c, cancel := context.WithTimeout(b.ctx, 3*time.Minute)
	defer cancel()
	_, _, err := b.cli(c, nd, "storage", "disk", "add", nd.Name, "loop:2GiB")
	return err
}

// roleArgs are the extra flags a role needs here: storage takes no disk
// at bootstrap or join (addDisk gives it a file-backed one afterwards).
func roleArgs(rs string) []string {
	if strings.Contains(rs, string(roles.Storage)) {
		return []string{"--disk", "none"}
	}
	return nil
}

// joinCloudd makes a token on via (untimed) and times the join on nd.
func (b *bench) joinCloudd(via, nd *Node, rs string) (time.Duration, error) {
	c, cancel := context.WithTimeout(b.ctx, 3*time.Minute)
	defer cancel()
	tok, _, err := b.cli(c, via, "cluster", "add", nd.Name, "--quiet")
	if err != nil {
		return 0, err
	}
	_, took, err := b.cli(c, nd, append([]string{"cluster", "join", strings.TrimSpace(tok), "--role", rs, "--address", nd.IP}, roleArgs(rs)...)...)
	if err != nil {
		return took, err
	}
	return took, b.addDisk(nd, rs)
}

func (b *bench) bootstrapMicrod(nd *Node) (time.Duration, error) {
	m, err := microApp(nd)
	if err != nil {
		return 0, err
	}
	c, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	if err := m.NewCluster(c, nd.Name, nd.IP+":7443", nil); err != nil {
		return 0, fmt.Errorf("microd bootstrap on %s: %w", nd.Name, err)
	}
	return time.Since(t0), nil
}

// bootstrapMicroCLI bootstraps microd on nd from a command line in its
// namespace, as `microctl init NAME ADDRESS --bootstrap` does, and returns
// that process's wall time: the floor of `cloudctl bootstrap`'s, with the
// same namespace entry and process start.
func (b *bench) bootstrapMicroCLI(nd *Node) (time.Duration, error) {
	c, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	_, took, err := nd.Exec(c, nil, b.lab.Bins.Microinit, "--state-dir", nd.StateDir, "init", nd.Name, nd.IP+":7443", "--bootstrap")
	return took, err
}

func (b *bench) joinMicrod(via, nd *Node) (time.Duration, error) {
	mv, err := microApp(via)
	if err != nil {
		return 0, err
	}
	m, err := microApp(nd)
	if err != nil {
		return 0, err
	}
	c, cancel := context.WithTimeout(b.ctx, 2*time.Minute)
	defer cancel()
	tok, err := mv.NewJoinToken(c, nd.Name)
	if err != nil {
		return 0, fmt.Errorf("microd token for %s: %w", nd.Name, err)
	}
	t0 := time.Now()
	if err := m.JoinCluster(c, nd.Name, nd.IP+":7443", tok, nil); err != nil {
		return 0, fmt.Errorf("microd join of %s: %w", nd.Name, err)
	}
	return time.Since(t0), nil
}

// microVoters counts voters in nd's local view of the dqlite configuration.
func microVoters(nd *Node) int {
	m, err := microApp(nd)
	if err != nil {
		return 0
	}
	ms, err := m.GetDqliteClusterMembers()
	if err != nil {
		return 0
	}
	n := 0
	for _, x := range ms {
		if x.Role == "voter" {
			n++
		}
	}
	return n
}

// microWrite is one write to microd's cluster database (a join token record).
func (b *bench) microWrite(nd *Node, name string) error {
	m, err := microApp(nd)
	if err != nil {
		return err
	}
	c, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	_, err = m.NewJoinToken(c, name)
	return err
}

// cloudWrite is one write through the cluster API (a join token record).
func (b *bench) cloudWrite(nd *Node, name string) error {
	c, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	defer cancel()
	_, _, err := b.cli(c, nd, "cluster", "add", name, "--quiet")
	return err
}

// leader is the node status names as the dqlite leader.
func (b *bench) leader(c *Cluster) (*Node, error) {
	for _, nd := range c.Nodes {
		st, err := b.status(nd)
		if err != nil {
			continue
		}
		for _, m := range st.Members {
			if m.Leader {
				for _, x := range c.Nodes {
					if x.Name == m.Name {
						return x, nil
					}
				}
			}
		}
	}
	return nil, errors.New("no member reports a dqlite leader")
}

// formCloudd bootstraps node1 and joins the rest with role rs, then waits
// for 3 voters (when ≥3 nodes) and every given layer HA.
func (b *bench) formCloudd(c *Cluster, start func(*Node) error, rs string, layers ...string) error {
	if err := startAll(c.Nodes, start); err != nil {
		return err
	}
	if _, err := b.bootstrapCloudd(c.Node(1), rs); err != nil {
		return err
	}
	for _, nd := range c.Nodes[1:] {
		if _, err := b.joinCloudd(c.Node(1), nd, rs); err != nil {
			return err
		}
	}
	_, err := waitFor(b.ctx, 4*time.Minute, "cluster formed", func() error {
		st, err := b.status(c.Node(1))
		if err != nil {
			return err
		}
		if len(c.Nodes) >= 3 && voters(st) < 3 {
			return fmt.Errorf("%d voters", voters(st))
		}
		for _, l := range layers {
			if err := layerHA(st, l); err != nil {
				return err
			}
		}
		return nil
	})
	return err
}

func (b *bench) formMicrod(c *Cluster) error {
	if err := startAll(c.Nodes, b.startMicrod); err != nil {
		return err
	}
	if _, err := b.bootstrapMicrod(c.Node(1)); err != nil {
		return err
	}
	for _, nd := range c.Nodes[1:] {
		if _, err := b.joinMicrod(c.Node(1), nd); err != nil {
			return err
		}
	}
	if len(c.Nodes) >= 3 {
		_, err := waitFor(b.ctx, time.Minute, "microd voters", func() error {
			if n := microVoters(c.Node(1)); n < 3 {
				return fmt.Errorf("%d voters", n)
			}
			return nil
		})
		return err
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
