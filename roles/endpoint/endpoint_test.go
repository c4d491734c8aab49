package endpoint

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/internal/golden"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/driver/drivertest"
	"github.com/cloudctl/cloudctl/supervisor"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// ---- fakes ----

// fakeSys records what the driver does to the machine.
type fakeSys struct {
	mu       sync.Mutex
	addrs    map[netip.Addr]bool
	signals  []string
	deleted  []string
	nonlocal int
	checkErr error
	dialErr  map[string]error
}

func newFakeSys() *fakeSys {
	return &fakeSys{addrs: map[netip.Addr]bool{}, dialErr: map[string]error{}}
}

func (f *fakeSys) InterfaceFor(ip netip.Addr) (string, netip.Prefix, error) {
	if ip.String() == "10.9.0.99" {
		return "", netip.Prefix{}, errors.New("no interface of this machine has the address 10.9.0.99")
	}
	return "eth0", netip.MustParsePrefix("10.9.0.0/24"), nil
}
func (f *fakeSys) HasAddress(ip netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addrs[ip]
}
func (f *fakeSys) EnableNonlocalBind() error { f.mu.Lock(); f.nonlocal++; f.mu.Unlock(); return nil }
func (f *fakeSys) DeleteAddress(ctx context.Context, iface string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, p.String()+" "+iface)
	delete(f.addrs, p.Addr())
	return nil
}
func (f *fakeSys) Signal(pid int, sig syscall.Signal) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signals = append(f.signals, fmt.Sprintf("%d:%s", pid, sig))
	return nil
}
func (f *fakeSys) Check(ctx context.Context, name string, args ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checkErr
}
func (f *fakeSys) Dial(ctx context.Context, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dialErr[addr]
}
func (f *fakeSys) HasUser(string) bool { return true }
func (f *fakeSys) takeSignals() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.signals
	f.signals = nil
	return s
}

// fakeRunner starts pretend processes that run until signalled.
type fakeRunner struct {
	mu     sync.Mutex
	next   int
	starts []string
}

type fakeProc struct {
	pid  int
	once sync.Once
	done chan struct{}
}

func (p *fakeProc) Pid() int    { return p.pid }
func (p *fakeProc) Wait() error { <-p.done; return errors.New("signal: terminated") }
func (p *fakeProc) Signal(sig os.Signal) error {
	if sig == syscall.SIGTERM || sig == syscall.SIGKILL {
		p.once.Do(func() { close(p.done) })
	}
	return nil
}

func (r *fakeRunner) Start(spec supervisor.Spec) (supervisor.Process, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	r.starts = append(r.starts, spec.Name)
	return &fakeProc{pid: 1000 + r.next, done: make(chan struct{})}, nil
}

func (r *fakeRunner) takeStarts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.starts
	r.starts = nil
	return s
}

// sqliteDB is a driver.DB for unit tests; fail makes every transaction fail.
type sqliteDB struct {
	db   drivertest.DB
	mu   sync.Mutex
	fail error
}

func (s *sqliteDB) Transaction(ctx context.Context, f func(context.Context, *sql.Tx) error) error {
	s.mu.Lock()
	fail := s.fail
	s.mu.Unlock()
	if fail != nil {
		return fail
	}
	return s.db.Transaction(ctx, f)
}

func newDB(t *testing.T) *sqliteDB { return &sqliteDB{db: drivertest.NewDB(t)} }

func manifest(t *testing.T) *manifests.Manifest {
	t.Helper()
	m, err := manifests.Default()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func node(i int, rs ...roles.Role) driver.Node {
	ip := fmt.Sprintf("10.9.0.%d", i)
	return driver.Node{Name: fmt.Sprintf("node%d", i), IP: ip, Address: ip + ":7443", Roles: rs, JoinedAt: time.Unix(int64(i), 0)}
}

func mysqlFrontend(nodes ...int) driver.Frontend {
	f := driver.Frontend{Name: "mysql", Port: 3306, OneActive: true}
	for _, i := range nodes {
		f.Backends = append(f.Backends, driver.Backend{Node: fmt.Sprintf("node%d", i), Addr: fmt.Sprintf("10.9.0.%d:3306", i)})
	}
	return f
}

func apiFrontend(nodes ...int) driver.Frontend {
	f := driver.Frontend{Name: "cloudd", Port: 7443}
	for _, i := range nodes {
		f.Backends = append(f.Backends, driver.Backend{Node: fmt.Sprintf("node%d", i), Addr: fmt.Sprintf("10.9.0.%d:7443", i)})
	}
	return f
}

// env3 is node1's view of a three-control-node cluster with a floating address.
func env3(t *testing.T, local int) *driver.Env {
	t.Helper()
	c := roles.Control
	nodes := []driver.Node{node(1, c), node(2, c, roles.Compute), node(3, c), node(4, roles.Compute)}
	return &driver.Env{Local: nodes[local-1], Nodes: nodes, Manifest: manifest(t), Plan: api.Plan{FloatingAddress: "10.9.0.100/24"},
		Frontends: []driver.Frontend{mysqlFrontend(1, 2, 3), apiFrontend(1, 2, 3)}, Now: time.Now}
}

// ---- decisions ----

func TestParseAddress(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.100": "10.0.0.100 -1", "10.0.0.100/24": "10.0.0.100 24", " 10.0.0.100/32 ": "10.0.0.100 32"} {
		a, bits, err := ParseAddress(in)
		if err != nil || fmt.Sprintf("%s %d", a, bits) != want {
			t.Errorf("ParseAddress(%q) = %s %d %v, want %s", in, a, bits, err, want)
		}
	}
	for in, want := range map[string]string{"10.0.0": "not an IP address", "10.0.0.1/33": "prefix length", "fd00::1": "only IPv4", "127.0.0.1": "loopback", "0.0.0.0": "unspecified", "10.0.0.1:80": "not an IP address"} {
		if _, _, err := ParseAddress(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseAddress(%q) = %v, want an error with %q", in, err, want)
		}
	}
}

func TestApplies(t *testing.T) {
	env := env3(t, 1)
	for i, want := range []bool{true, true, true, false} {
		if got := Applies(env, env.Nodes[i]); got != want {
			t.Errorf("Applies(%s) = %v, want %v", env.Nodes[i].Name, got, want)
		}
	}
	for i, want := range []bool{true, true, true, false} {
		if got := Runs(env, env.Nodes[i]); got != want {
			t.Errorf("Runs(%s) = %v, want %v", env.Nodes[i].Name, got, want)
		}
	}
	one := *env
	one.Nodes = []driver.Node{node(1, roles.Control), node(2, roles.Compute)}
	if !Applies(&one, one.Nodes[0]) || !Runs(&one, one.Nodes[0]) {
		t.Error("a single control node holds the floating address alone")
	}
	if ps := NewWithSystem(newFakeSys()).Ports(&one, one.Nodes[0]); len(ps) == 0 || ps[0].Proto != "vrrp" {
		t.Errorf("ports on a single control node: %v", ps)
	}
	none := *env
	none.Plan.FloatingAddress = ""
	if Applies(&none, none.Nodes[0]) {
		t.Error("applies without a floating address")
	}
	bad := *env
	bad.Plan.FloatingAddress = "nope"
	if Applies(&bad, bad.Nodes[0]) {
		t.Error("applies with a bad floating address")
	}
}

func TestDecide(t *testing.T) {
	sys := newFakeSys()
	env := env3(t, 2)
	des, err := Decide(env, sys.InterfaceFor)
	if err != nil || !des.Active {
		t.Fatalf("Decide: %+v %v", des, err)
	}
	if des.Self != (Candidate{Name: "node2", IP: "10.9.0.2", Priority: 190}) || strings.Join(des.Peers, ",") != "10.9.0.1,10.9.0.3" ||
		des.VIP.String() != "10.9.0.100/24" || des.Interface != "eth0" || des.RouterID != 51 {
		t.Fatalf("Decide: %+v", des)
	}
	var prios []string
	for _, c := range des.Candidates {
		prios = append(prios, fmt.Sprintf("%s=%d", c.Name, c.Priority))
	}
	if strings.Join(prios, " ") != "node1=200 node2=190 node3=180" {
		t.Fatalf("priorities: %s", prios)
	}
	if des.Frontends[0].Name != "cloudd" || des.Frontends[1].Name != "mysql" {
		t.Fatalf("frontends not sorted by name: %+v", des.Frontends)
	}

	// A bare address takes the prefix of the node's network, or /32 outside it.
	env.Plan.FloatingAddress = "10.9.0.100"
	if des, _ := Decide(env, sys.InterfaceFor); des.VIP.String() != "10.9.0.100/24" {
		t.Errorf("bare address inside the network: %s", des.VIP)
	}
	env.Plan.FloatingAddress = "192.168.7.7"
	if des, _ := Decide(env, sys.InterfaceFor); des.VIP.String() != "192.168.7.7/32" {
		t.Errorf("bare address outside the network: %s", des.VIP)
	}
	// The manifest's router ID.
	env.Manifest.VRRP.RouterID = 77
	if des, _ := Decide(env, sys.InterfaceFor); des.RouterID != 77 {
		t.Errorf("router ID %d, want 77", des.RouterID)
	}

	// Not active: no address, not a control node, one control node.
	e := env3(t, 4)
	if des, err := Decide(e, sys.InterfaceFor); err != nil || des.Active || !strings.Contains(des.Reason, "no control role") {
		t.Errorf("compute node: %+v %v", des, err)
	}
	e = env3(t, 1)
	e.Plan.FloatingAddress = ""
	if des, err := Decide(e, sys.InterfaceFor); err != nil || des.Active || !strings.Contains(des.Reason, "no floating address") {
		t.Errorf("no address: %+v %v", des, err)
	}
	// The only control node holds the address alone, with no peer.
	e = env3(t, 1)
	e.Nodes = []driver.Node{e.Nodes[0], e.Nodes[3]}
	if des, err := Decide(e, sys.InterfaceFor); err != nil || !des.Active || len(des.Peers) != 0 || des.Self.Name != "node1" || des.VIP.String() != "10.9.0.100/24" {
		t.Errorf("one control node: %+v %v", des, err)
	} else if conf := renderKeepalived(keepalivedInput{Des: des, CheckScript: "/x/check.sh"}); !strings.Contains(conf, "  unicast_peer {\n    127.0.0.1 min_ttl 255\n  }") {
		// An empty peer list would make keepalived fall back to multicast.
		t.Errorf("one control node: keepalived.conf has no loopback peer:\n%s", conf)
	}
	// Errors: the address of a node, a node address on no interface.
	e = env3(t, 1)
	e.Plan.FloatingAddress = "10.9.0.3"
	if _, err := Decide(e, sys.InterfaceFor); err == nil || !strings.Contains(err.Error(), "own address of node3") {
		t.Errorf("node address as floating address: %v", err)
	}
	e = env3(t, 1)
	e.Local.IP = "10.9.0.99"
	if _, err := Decide(e, sys.InterfaceFor); err == nil || !strings.Contains(err.Error(), "no interface") {
		t.Errorf("no interface: %v", err)
	}
}

func TestPrioritiesFloor(t *testing.T) {
	env := &driver.Env{}
	for i := 1; i <= 25; i++ {
		env.Nodes = append(env.Nodes, node(i, roles.Control))
	}
	cs := Candidates(env)
	if cs[0].Priority != MaxPriority || cs[24].Priority != MinPriority || cs[18].Priority != MinPriority+10 {
		t.Fatalf("priorities: first %d, 19th %d, last %d", cs[0].Priority, cs[18].Priority, cs[24].Priority)
	}
}

func TestLocalBackends(t *testing.T) {
	fs := []driver.Frontend{mysqlFrontend(1, 2, 3), apiFrontend(2, 3)}
	// Only the one-active frontends (the databases) are judged.
	if got := LocalBackends(fs, "node2"); fmt.Sprint(got) != "[{mysql 10.9.0.2:3306}]" {
		t.Fatalf("LocalBackends: %v", got)
	}
	if got := LocalBackends(fs, "node4"); len(got) != 0 {
		t.Fatalf("node4: %v", got)
	}
}

func TestUsableFrontends(t *testing.T) {
	dupPort := apiFrontend(1)
	dupPort.Port = 3306
	fs := []driver.Frontend{mysqlFrontend(1, 2), dupPort, mysqlFrontend(2), {Name: "x", Port: 1},
		{Name: "y", Port: 70000, Backends: []driver.Backend{{Node: "n", Addr: "1.2.3.4:5"}}},
		{Name: "z", Port: 2, Backends: []driver.Backend{{Node: "n", Addr: "1.2.3.4:5 backup"}}},
		{Port: 3, Backends: []driver.Backend{{Node: "n", Addr: "1.2.3.4:5"}}},
		apiFrontend(1, 2)}
	ok, skipped := usableFrontends(fs)
	if len(ok) != 2 || ok[0].Name != "mysql" || len(ok[0].Backends) != 2 || ok[1].Name != "cloudd" || ok[1].Port != 7443 {
		t.Fatalf("kept %+v", ok)
	}
	want := []string{"port 3306 is taken by frontend \"mysql\"", "another frontend has that name", "no backend", "port 70000 out of range", "bad address", "no name"}
	if len(skipped) != len(want) {
		t.Fatalf("skipped %q", skipped)
	}
	for i, w := range want {
		if !strings.Contains(skipped[i], w) {
			t.Errorf("skipped[%d] = %q, want %q", i, skipped[i], w)
		}
	}
}

func TestFrontender(t *testing.T) {
	d := NewWithSystem(newFakeSys())
	env := env3(t, 1)
	fs := d.Frontends(env)
	if len(fs) != 1 || fs[0].Name != "cloudd" || fs[0].Port != 7443 || fs[0].OneActive || len(fs[0].Backends) != 3 || fs[0].Backends[2].Addr != "10.9.0.3:7443" {
		t.Fatalf("frontends: %+v", fs)
	}
	des, err := Decide(env, newFakeSys().InterfaceFor)
	if err != nil {
		t.Fatal(err)
	}
	if !des.TLSAddrs["10.9.0.3:7443"] || des.TLSAddrs["10.9.0.3:3306"] {
		t.Fatalf("TLS backends: %v", des.TLSAddrs)
	}
}

// ---- rendering ----

func TestRenderGolden(t *testing.T) {
	sys := newFakeSys()
	des, err := Decide(env3(t, 1), sys.InterfaceFor)
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/keepalived.conf.golden", renderKeepalived(keepalivedInput{Des: des, CheckScript: "/var/lib/cloudctl/endpoint/check.sh"}), *update)
	golden.Check(t, "testdata/check.sh.golden", renderCheckScript("/var/lib/cloudctl/endpoint/health"), *update)
	golden.Check(t, "testdata/haproxy.cfg.golden", renderHAProxy(haproxyInput{Des: des, User: "haproxy", Group: "haproxy"}), *update)
}

// The rendered files are accepted by the real programs (when installed).
func TestRenderAcceptedByPrograms(t *testing.T) {
	sys := newFakeSys()
	des, err := Decide(env3(t, 1), sys.InterfaceFor)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	check := filepath.Join(dir, "check.sh")
	if err := os.WriteFile(check, []byte(renderCheckScript(filepath.Join(dir, "health"))), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ bin, file, content string }{
		{"/usr/sbin/keepalived", "keepalived.conf", renderKeepalived(keepalivedInput{Des: des, CheckScript: check})},
		{"/usr/sbin/haproxy", "haproxy.cfg", renderHAProxy(haproxyInput{Des: des})},
	} {
		if _, err := os.Stat(c.bin); err != nil {
			t.Logf("%s not installed; not checked", c.bin)
			continue
		}
		p := filepath.Join(dir, c.file)
		if err := os.WriteFile(p, []byte(c.content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := (HostSystem{}).Check(context.Background(), c.bin, checkArgs(c.bin, p)...); err != nil {
			t.Errorf("%s rejects the rendered %s: %v\n%s", c.bin, c.file, err, c.content)
		}
	}
}

func checkArgs(bin, p string) []string {
	if strings.HasSuffix(bin, "keepalived") {
		return []string{"-t", "-f", p}
	}
	return []string{"-c", "-q", "-f", p}
}

// The check script really passes only on a fresh "ok".
func TestCheckScript(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	verdict := filepath.Join(dir, "health")
	script := filepath.Join(dir, "check.sh")
	if err := os.WriteFile(script, []byte(renderCheckScript(verdict)), 0o755); err != nil {
		t.Fatal(err)
	}
	run := func() error { return exec.Command("/bin/sh", script).Run() }
	if run() == nil {
		t.Error("passes without a verdict file")
	}
	if err := os.WriteFile(verdict, []byte(Verdict{Healthy: true}.Line()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(); err != nil {
		t.Errorf("fails on a fresh ok: %v", err)
	}
	old := time.Now().Add(-time.Duration(VerdictMaxAge+5) * time.Second)
	if err := os.Chtimes(verdict, old, old); err != nil {
		t.Fatal(err)
	}
	if run() == nil {
		t.Error("passes on a stale ok")
	}
	if err := os.WriteFile(verdict, []byte(Verdict{Reasons: []string{"x"}}.Line()), 0o644); err != nil {
		t.Fatal(err)
	}
	if run() == nil {
		t.Error("passes on a fresh fail")
	}
}

// ---- health ----

func TestJudge(t *testing.T) {
	now := time.Unix(100, 0)
	refused := errors.New("connection refused")
	cases := []struct {
		name string
		o    Observation
		ok   bool
		want string
	}{
		{"all good", Observation{HAProxyNeeded: true, HAProxyRunning: true, Backends: []ProbeResult{{Probe: Probe{"mysql", "a:1"}}}}, true, "ok\n"},
		{"no frontends, no haproxy", Observation{}, true, "ok\n"},
		{"database lost", Observation{DB: errors.New("context deadline exceeded"), DBFailingFor: DBGrace}, false, "fail: cluster database: context deadline exceeded (for 10s)\n"},
		{"database lost for less than the grace", Observation{DB: errors.New("context deadline exceeded"), DBFailingFor: DBGrace - time.Millisecond}, true, "ok\n"},
		{"haproxy down", Observation{HAProxyNeeded: true}, false, "fail: haproxy is not running\n"},
		{"mysql down", Observation{HAProxyNeeded: true, HAProxyRunning: true, Backends: []ProbeResult{{Probe: Probe{"cloudd", "a:7443"}}, {Probe: Probe{"mysql", "a:3306"}, Err: refused}}}, false, "fail: mysql backend a:3306: connection refused\n"},
		{"several", Observation{DB: errors.New("x"), DBFailingFor: time.Minute, Backends: []ProbeResult{{Probe: Probe{"mysql", "a:3306"}, Err: refused}}}, false, "fail: cluster database: x (for 1m0s); mysql backend a:3306: connection refused\n"},
		{"database within the grace, mysql down", Observation{DB: errors.New("x"), Backends: []ProbeResult{{Probe: Probe{"mysql", "a:3306"}, Err: refused}}}, false, "fail: mysql backend a:3306: connection refused\n"},
	}
	for _, c := range cases {
		v := Judge(c.o, now, DBGrace)
		if v.Healthy != c.ok || v.Line() != c.want || !v.At.Equal(now) {
			t.Errorf("%s: %+v %q", c.name, v, v.Line())
		}
		// A database failure within the grace is a note, not a reason.
		graced := c.o.DB != nil && c.o.DBFailingFor < DBGrace
		if graced != (len(v.Notes) == 1) || graced && !strings.Contains(v.Notes[0], "has not answered for") {
			t.Errorf("%s: notes %q", c.name, v.Notes)
		}
	}
}

func TestHealthLoopWritesVerdict(t *testing.T) {
	sys := newFakeSys()
	d := NewWithSystem(sys)
	env := testEnv(t, sys)
	db := newDB(t)
	env.DB = db
	if _, err := d.Converge(context.Background(), env, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Stop(context.Background()) })
	verdict := filepath.Join(env.Dir, "health")
	waitFile := func(want string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute) // bounds a hung test; not a speed expectation
		var got []byte
		for time.Now().Before(deadline) {
			if got, _ = os.ReadFile(verdict); strings.HasPrefix(string(got), want) {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("verdict file: %q, want prefix %q", got, want)
	}
	waitFile("ok")
	if v := d.LocalView(env); !v.Healthy || !v.Active || v.Keepalived != "running" || v.HAProxy != "running" {
		t.Fatalf("view: %+v", v)
	}
	sys.mu.Lock()
	sys.dialErr["10.9.0.1:3306"] = errors.New("connection refused")
	sys.mu.Unlock()
	waitFile("fail: mysql backend 10.9.0.1:3306: connection refused")
	sys.mu.Lock()
	delete(sys.dialErr, "10.9.0.1:3306")
	sys.mu.Unlock()
	waitFile("ok")
	// A database that stops answering fails the check only after the
	// grace (a leader election must not make every member give up).
	const grace = 1500 * time.Millisecond
	d.mu.Lock()
	d.dbGrace = grace
	d.mu.Unlock()
	db.mu.Lock()
	db.fail = errors.New("no quorum")
	db.mu.Unlock()
	failed := time.Now()
	waitFile("fail: cluster database: no quorum (for ")
	if took := time.Since(failed); took < grace {
		t.Fatalf("the check failed %s after the database did, before the %s grace", took, grace)
	}
	if v := d.LocalView(env); v.Healthy || len(v.Reasons) != 1 {
		t.Fatalf("view: %+v", v)
	}
	if err := d.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(verdict); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("verdict file left after Stop: %v", err)
	}
}

// ---- convergence ----

func testEnv(t *testing.T, sys *fakeSys) *driver.Env {
	t.Helper()
	env := env3(t, 1)
	env.Dir = filepath.Join(t.TempDir(), "endpoint")
	env.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	env.Sup = supervisor.New(&fakeRunner{}, env.Log)
	env.DB = newDB(t)
	return env
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestConvergeStateMachine(t *testing.T) {
	ctx := context.Background()
	sys := newFakeSys()
	runner := &fakeRunner{}
	env := testEnv(t, sys)
	env.Sup = supervisor.New(runner, env.Log)
	env.DB = newDB(t)
	d := NewWithSystem(sys)
	t.Cleanup(func() { _ = d.Stop(ctx) })
	f := pathsIn(env.Dir)
	converge := func(what string) {
		t.Helper()
		if _, err := d.Converge(ctx, env, nil); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	pid := func(name string) int { st, _ := env.Sup.Status(name); return st.Pid }
	expect := func(what string, starts, signals []string) {
		t.Helper()
		if got := runner.takeStarts(); strings.Join(got, ",") != strings.Join(starts, ",") {
			t.Errorf("%s: started %v, want %v", what, got, starts)
		}
		if got := sys.takeSignals(); strings.Join(got, ",") != strings.Join(signals, ",") {
			t.Errorf("%s: signals %v, want %v", what, got, signals)
		}
	}

	// From nothing: both start, the address is recorded, nonlocal bind set.
	converge("first round")
	expect("first round", []string{keepalivedName, haproxyName}, nil)
	if sys.nonlocal == 0 {
		t.Error("ip_nonlocal_bind not set")
	}
	if got := readFile(t, f.vip); got != "10.9.0.100/24 eth0\n" {
		t.Errorf("recorded address %q", got)
	}
	if !strings.Contains(readFile(t, f.keepalivedConf), "check_unicast_src\n  unicast_peer {\n    10.9.0.2 min_ttl 255\n    10.9.0.3 min_ttl 255\n  }") {
		t.Errorf("keepalived.conf:\n%s", readFile(t, f.keepalivedConf))
	}
	kaPid, hpPid := pid(keepalivedName), pid(haproxyName)
	kaInfo, _ := os.Stat(f.keepalivedConf)

	// Nothing changed: nothing restarted, signalled or rewritten.
	converge("settled round")
	expect("settled round", nil, nil)
	if info, _ := os.Stat(f.keepalivedConf); !info.ModTime().Equal(kaInfo.ModTime()) {
		t.Error("keepalived.conf rewritten without a change")
	}

	// A fourth control node: keepalived reloads (peers), HAProxy too (backends).
	env.Nodes[3].Roles = []roles.Role{roles.Control, roles.Compute}
	env.Frontends = []driver.Frontend{mysqlFrontend(1, 2, 3, 4), apiFrontend(1, 2, 3, 4)}
	converge("new peer")
	expect("new peer", nil, []string{fmt.Sprintf("%d:hangup", kaPid), fmt.Sprintf("%d:user defined signal 2", hpPid)})
	if !strings.Contains(readFile(t, f.keepalivedConf), "    10.9.0.4 min_ttl 255\n") {
		t.Error("new peer missing from keepalived.conf")
	}

	// Only the frontends change: HAProxy reloads, keepalived does not.
	env.Frontends = []driver.Frontend{mysqlFrontend(2, 1, 3, 4), apiFrontend(1, 2, 3, 4)}
	converge("frontend order")
	expect("frontend order", nil, []string{fmt.Sprintf("%d:user defined signal 2", hpPid)})

	// The address changes: keepalived reloads with it (it moves the address itself).
	env.Plan.FloatingAddress = "10.9.0.101"
	converge("new address")
	expect("new address", nil, []string{fmt.Sprintf("%d:hangup", kaPid), fmt.Sprintf("%d:user defined signal 2", hpPid)})
	if got := readFile(t, f.vip); got != "10.9.0.101/24 eth0\n" {
		t.Errorf("recorded address %q", got)
	}
	if !strings.Contains(readFile(t, f.haproxyCfg), "bind 10.9.0.101:3306") {
		t.Error("haproxy.cfg does not bind the new address")
	}

	// A configuration the program rejects is not installed and nothing is signalled.
	sys.mu.Lock()
	sys.checkErr = errors.New("parse error")
	sys.mu.Unlock()
	env.Plan.FloatingAddress = "10.9.0.102/24"
	if _, err := d.Converge(ctx, env, nil); err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("rejected configuration: %v", err)
	}
	expect("rejected configuration", nil, nil)
	if strings.Contains(readFile(t, f.keepalivedConf), "10.9.0.102") {
		t.Error("a rejected keepalived.conf was installed")
	}
	sys.mu.Lock()
	sys.checkErr = nil
	sys.mu.Unlock()
	env.Plan.FloatingAddress = "10.9.0.101"

	// No frontends any more: HAProxy stops, keepalived stays.
	env.Frontends = nil
	converge("no frontends")
	expect("no frontends", nil, nil)
	if _, ok := env.Sup.Status(haproxyName); ok {
		t.Error("haproxy still supervised without frontends")
	}
	if pid(keepalivedName) != kaPid {
		t.Error("keepalived restarted")
	}

	// The address is removed: everything stops; the address this node held is removed.
	sys.mu.Lock()
	sys.addrs[netip.MustParseAddr("10.9.0.101")] = true
	sys.mu.Unlock()
	env.Plan.FloatingAddress = ""
	converge("address removed")
	expect("address removed", nil, nil)
	if n := env.Sup.Names(); len(n) != 0 {
		t.Errorf("still supervised: %v", n)
	}
	if _, err := os.Stat(f.vip); !errors.Is(err, os.ErrNotExist) {
		t.Error("recorded address left")
	}
	// keepalived removes its address when it stops; the fake does not, so the driver did.
	if strings.Join(sys.deleted, ",") != "10.9.0.101/24 eth0" {
		t.Errorf("deleted %v", sys.deleted)
	}

	// Added again: both start.
	env.Plan.FloatingAddress = "10.9.0.100/24"
	env.Frontends = []driver.Frontend{mysqlFrontend(1, 2, 3)}
	converge("address added again")
	expect("address added again", []string{keepalivedName, haproxyName}, nil)
}

// A keepalived killed with its cloudd leaves the address behind; when the
// address changed meanwhile, the next start removes the old one.
func TestStaleAddressRemovedAtStart(t *testing.T) {
	ctx := context.Background()
	sys := newFakeSys()
	env := testEnv(t, sys)
	d := NewWithSystem(sys)
	t.Cleanup(func() { _ = d.Stop(ctx) })
	if err := os.MkdirAll(env.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(env.Dir, "vip"), []byte("10.9.0.50/24 eth0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sys.addrs[netip.MustParseAddr("10.9.0.50")] = true
	if _, err := d.Converge(ctx, env, nil); err != nil {
		t.Fatal(err)
	}
	if strings.Join(sys.deleted, ",") != "10.9.0.50/24 eth0" {
		t.Fatalf("deleted %v", sys.deleted)
	}
}

func TestPortsAndGuard(t *testing.T) {
	d := NewWithSystem(newFakeSys())
	env := env3(t, 1)
	ps := d.Ports(env, env.Nodes[0])
	var got []string
	for _, p := range ps {
		got = append(got, fmt.Sprintf("%d/%s", p.Number, p.Proto))
	}
	if strings.Join(got, " ") != "112/vrrp 7443/tcp 3306/tcp" {
		t.Fatalf("ports: %v", got)
	}
	if ps := d.Ports(env, env.Nodes[3]); ps != nil {
		t.Fatalf("compute node ports: %v", ps)
	}
	if err := d.Guard(context.Background(), env, driver.Change{Kind: driver.RemoveNode, Node: "node1"}); err != nil {
		t.Fatal(err)
	}
	if d.Name() != api.LayerEndpoint || d.Schema() != nil || len(d.Endpoints()) != 1 {
		t.Fatal("name, schema or endpoints")
	}
}

// ---- status ----

func view(node string, holds, healthy bool, reasons ...string) *NodeView {
	return &NodeView{Node: node, Active: true, Holds: holds, Healthy: healthy, Reasons: reasons, Keepalived: "running", HAProxy: "running"}
}

func noted(v *NodeView, notes ...string) *NodeView {
	v.Notes = notes
	return v
}

func TestSummarize(t *testing.T) {
	c := func(n string, v *NodeView) CandidateStatus {
		cs := CandidateStatus{Candidate: Candidate{Name: n}, View: v, Reachable: v != nil}
		if v == nil {
			cs.Error = "connection refused"
		}
		return cs
	}
	cases := []struct {
		name                     string
		sts                      []CandidateStatus
		ha, health, reason, mems string
	}{
		{"healthy", []CandidateStatus{c("a", view("a", true, true)), c("b", view("b", false, true)), c("c", view("c", false, true))},
			api.HAYes, api.HealthOK, "", "a=holder b=standby c=standby"},
		{"one unhealthy", []CandidateStatus{c("a", view("a", true, true)), c("b", view("b", false, true)), c("c", view("c", false, false, "mysql down"))},
			api.HAYes, api.HealthWarning, "unhealthy: c", "a=holder b=standby c=unhealthy"},
		{"one left", []CandidateStatus{c("a", view("a", true, true)), c("b", nil), c("c", view("c", false, false, "mysql down"))},
			api.HADegraded, api.HealthWarning, "1 of 3 candidates healthy: no node to take the address over (unhealthy: c; unreachable: b)", "a=holder b=unreachable c=unhealthy"},
		{"nobody holds", []CandidateStatus{c("a", view("a", false, true)), c("b", view("b", false, true))},
			api.HAYes, api.HealthError, "no node holds the floating address", "a=standby b=standby"},
		{"two hold", []CandidateStatus{c("a", view("a", true, true)), c("b", view("b", true, true))},
			api.HAYes, api.HealthError, "the floating address is on a and b at once", "a=holder b=holder"},
		{"the holder's database is within the grace", []CandidateStatus{c("a", noted(view("a", true, true), "db slow")), c("b", view("b", false, true))},
			api.HAYes, api.HealthWarning, "a: db slow", "a=holder b=standby"},
		{"the only control node holds it", []CandidateStatus{c("a", view("a", true, true))},
			api.HANo, api.HealthOK, "one control node: the floating address is not highly available until a second control node joins", "a=holder"},
		{"the only control node, unhealthy", []CandidateStatus{c("a", view("a", false, false, "mysql down"))},
			api.HANo, api.HealthError, "no node holds the floating address; one control node: the floating address is not highly available until a second control node joins (unhealthy: a)", "a=unhealthy"},
	}
	for _, tc := range cases {
		s := Summarize(tc.sts)
		var mems []string
		for _, m := range s.Members {
			mems = append(mems, m.Node+"="+m.State)
		}
		if s.HA != tc.ha || s.Health != tc.health || s.Reason != tc.reason || strings.Join(mems, " ") != tc.mems {
			t.Errorf("%s: %+v", tc.name, s)
		}
	}
}

// fakePeers answers GET endpoint for other members.
type fakePeers map[string]*NodeView

func (p fakePeers) Get(ctx context.Context, node, path string, out any) error {
	v, ok := p[node]
	if !ok || path != "endpoint" {
		return errors.New("unreachable")
	}
	*(out.(*NodeView)) = *v
	return nil
}

func (p fakePeers) Post(ctx context.Context, node, path string, in, out any) error {
	return fmt.Errorf("no POST %s on %s in this test", path, node)
}

func TestStatusLayer(t *testing.T) {
	ctx := context.Background()
	sys := newFakeSys()
	d := NewWithSystem(sys)

	env := env3(t, 1)
	env.Plan.FloatingAddress = ""
	if l := d.Status(ctx, env); l.HA != api.HANo || !strings.Contains(l.Reason, "no floating address") || l.Name != api.LayerEndpoint || !l.Built {
		t.Errorf("no address: %+v", l)
	}
	// The only control node holds the address alone: not highly available.
	env = env3(t, 1)
	env.Nodes = []driver.Node{env.Nodes[0], env.Nodes[3]}
	sys.addrs[netip.MustParseAddr("10.9.0.100")] = true
	d.verdict = Verdict{Healthy: true, At: time.Now()}
	if l := d.Status(ctx, env); l.HA != api.HANo || l.Health != api.HealthOK || !strings.Contains(l.Reason, "not highly available until a second control node joins") ||
		len(l.Members) != 1 || l.Members[0].State != "holder" || !strings.Contains(string(l.Details), `"holder":"node1"`) {
		t.Errorf("single control node: %+v %s", l, l.Details)
	}
	delete(sys.addrs, netip.MustParseAddr("10.9.0.100"))
	d.verdict = Verdict{}

	env = env3(t, 1)
	env.Peers = fakePeers{"node2": view("node2", true, true), "node3": view("node3", false, true)}
	l := d.Status(ctx, env)
	// node1 runs nothing here (never converged): it has no verdict.
	if l.HA != api.HAYes || l.Health != api.HealthWarning || len(l.Members) != 3 || l.Members[1].State != "holder" || !strings.Contains(string(l.Details), `"holder":"node2"`) {
		t.Errorf("three nodes: %+v %s", l, l.Details)
	}
}
