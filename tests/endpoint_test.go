package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/tests/harness"
)

// epSpec is what tests/endpointnode reads (see its Spec).
type epSpec struct {
	Local     string            `json:"local"`
	Nodes     []driver.Node     `json:"nodes"`
	Floating  string            `json:"floating"`
	Frontends []driver.Frontend `json:"frontends"`
	Dir       string            `json:"dir"`
	DBFail    bool              `json:"db_fail"`
}

// epNode is one namespace running the endpoint driver through endpointnode.
type epNode struct {
	nd   *harness.Node
	dir  string // the node's scratch directory: a unique marker in every command line
	spec string
	run  *exec.Cmd
	// backends are the stand-in backends' processes, by port.
	backends map[int]*exec.Cmd
}

func buildEndpointNode(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "endpointnode")
	cmd := exec.Command("go", "build", "-tags", "pacific libsqlite3", "-o", out, "./endpointnode")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build endpointnode: %v\n%s", err, b)
	}
	return out
}

// startIn starts a command in nd's namespace in its own process group; the
// test stops it (and everything with its marker) at cleanup.
func startIn(t *testing.T, nd *harness.Node, logPath string, name string, args ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", nd.NS, name}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start %s in %s: %v", name, nd.Name, err)
	}
	go func() { _ = cmd.Wait(); logf.Close() }()
	return cmd
}

// killMarked sends sig to every process whose command line contains marker
// (a path unique to this test run, so only processes this test started).
func killMarked(marker string, sig syscall.Signal) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), marker) {
			continue
		}
		if syscall.Kill(pid, sig) == nil {
			n++
		}
	}
	return n
}

func anyMarked(marker string) bool {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), marker) {
			if st, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && strings.Contains(string(st), ") Z ") {
				continue // a zombie waiting for its reaper
			}
			return true
		}
	}
	return false
}

func stopCmd(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, sig)
	}
}

// holders lists the nodes whose namespace has addr on an interface.
func holders(ctx context.Context, nodes []*harness.Node, addr string) ([]string, error) {
	var out []string
	for _, nd := range nodes {
		b, err := nd.Output(ctx, "ip", "-o", "-4", "addr", "show")
		if err != nil {
			return nil, err
		}
		if strings.Contains(string(b), " "+addr+"/") {
			out = append(out, nd.Name)
		}
	}
	return out, nil
}

// dialVia opens n connections to addr from client's namespace and returns
// the backends that greeted them.
func dialVia(ctx context.Context, client *harness.Node, bin, addr string, n int) ([]string, error) {
	out, err := client.Output(ctx, bin, "dial", addr, strconv.Itoa(n))
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// TestEndpointNamespaces runs the floating endpoint driver with the real
// keepalived and HAProxy in three namespaces (a fourth is the client),
// through the endpointnode helper: bring-up, a power cut of the holder, its
// return, a failed backend on the holder, an address change and removal.
func TestEndpointNamespaces(t *testing.T) {
	c := harness.New(t, 4)
	ctx := context.Background()
	bin := buildEndpointNode(t, c.Dir())
	vip, vip2 := c.Subnet+".100", c.Subnet+".101"
	client := c.Node(4)
	cands := c.Nodes[:3]

	var nodes []driver.Node
	for i, nd := range c.Nodes {
		rs := []roles.Role{roles.Control}
		if i == 3 {
			rs = []roles.Role{roles.Compute}
		}
		nodes = append(nodes, driver.Node{Name: nd.Name, IP: nd.IP, Address: nd.IP + ":7443", Roles: rs, JoinedAt: time.Unix(int64(i), 0)})
	}
	mysql := driver.Frontend{Name: "mysql", Port: 3306, OneActive: true}
	apiFE := driver.Frontend{Name: "api", Port: 7001}
	for _, nd := range cands {
		mysql.Backends = append(mysql.Backends, driver.Backend{Node: nd.Name, Addr: nd.IP + ":3306"})
		apiFE.Backends = append(apiFE.Backends, driver.Backend{Node: nd.Name, Addr: nd.IP + ":7001"})
	}
	frontends := []driver.Frontend{mysql, apiFE}

	eps := make([]*epNode, len(cands))
	writeSpec := func(e *epNode, floating string) {
		t.Helper()
		b, _ := json.Marshal(epSpec{Local: e.nd.Name, Nodes: nodes, Floating: floating, Frontends: frontends, Dir: filepath.Join(e.dir, "endpoint")})
		tmp := e.spec + ".tmp"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, e.spec); err != nil {
			t.Fatal(err)
		}
	}
	startBackend := func(e *epNode, port int) {
		e.backends[port] = startIn(t, e.nd, filepath.Join(e.dir, "backend.log"), bin, "serve", fmt.Sprintf("%s:%d", e.nd.IP, port), e.nd.Name)
	}
	startRun := func(e *epNode) {
		e.run = startIn(t, e.nd, filepath.Join(e.dir, "endpointnode.log"), bin, "run", e.spec)
	}
	for i, nd := range cands {
		e := &epNode{nd: nd, dir: filepath.Join(c.Dir(), "ep-"+nd.Name), backends: map[int]*exec.Cmd{}}
		e.spec = filepath.Join(e.dir, "spec.json")
		if err := os.MkdirAll(e.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		eps[i] = e
		t.Cleanup(func() {
			stopCmd(e.run, syscall.SIGTERM)
			deadline := time.Now().Add(30 * time.Second)
			for anyMarked(e.spec) && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			for _, b := range e.backends {
				stopCmd(b, syscall.SIGKILL)
			}
			killMarked(e.dir, syscall.SIGKILL)
			if t.Failed() {
				for _, f := range []string{"endpointnode.log", "endpoint/keepalived.log", "endpoint/haproxy.log", "endpoint/health"} {
					b, _ := os.ReadFile(filepath.Join(e.dir, f))
					if len(b) > 6000 {
						b = b[len(b)-6000:]
					}
					t.Logf("---- %s %s ----\n%s", e.nd.Name, f, b)
				}
			}
		})
		writeSpec(e, vip+"/24")
		startBackend(e, 3306)
		startBackend(e, 7001)
	}
	start := time.Now()
	for _, e := range eps {
		startRun(e)
	}
	everyNS := c.Nodes
	var last []string
	oneHolder := func(addr string, not ...string) func() error {
		return func() error {
			h, err := holders(ctx, everyNS, addr)
			if err != nil {
				return err
			}
			last = h
			if len(h) != 1 {
				return fmt.Errorf("%s held by %v", addr, h)
			}
			for _, n := range not {
				if h[0] == n {
					return fmt.Errorf("%s still held by %s", addr, n)
				}
			}
			return nil
		}
	}
	harness.Eventually(t, 60*time.Second, "one node holds the floating address", oneHolder(vip))
	t.Logf("bring-up: %s held by %s %s after the drivers started", vip, last[0], time.Since(start).Round(time.Millisecond))
	holder := last[0]
	var got []string
	harness.Eventually(t, 30*time.Second, "two connections through the address", func() (err error) {
		got, err = dialVia(ctx, client, bin, vip+":3306", 2)
		return err
	})
	if len(got) != 2 || got[0] != got[1] || got[0] != "node1" {
		t.Fatalf("two connections to the one-active frontend reached %v; want both on node1 (the first backend)", got)
	}

	// Power cut of the holder: every process of that node is frozen, then
	// SIGKILLed (frozen first, so none sees another die and cleans up: no
	// keepalived child gets to remove the address or send priority 0).
	var cut *epNode
	for _, e := range eps {
		if e.nd.Name == holder {
			cut = e
		}
	}
	t0 := time.Now()
	stopCmd(cut.run, syscall.SIGSTOP)
	killMarked(cut.dir, syscall.SIGSTOP)
	killMarked(cut.dir, syscall.SIGKILL)
	stopCmd(cut.run, syscall.SIGKILL)
	for _, b := range cut.backends {
		stopCmd(b, syscall.SIGKILL)
	}
	moved := func() error {
		h, err := holders(ctx, cands, vip)
		if err != nil {
			return err
		}
		for _, n := range h {
			if n != holder {
				return nil
			}
		}
		return fmt.Errorf("held by %v", h)
	}
	harness.Eventually(t, 30*time.Second, "the address moves off the killed holder", moved)
	tMove := time.Since(t0)
	harness.Eventually(t, 30*time.Second, "a connection through the address after the power cut", func() (err error) {
		got, err = dialVia(ctx, client, bin, vip+":3306", 1)
		return err
	})
	tFirst := time.Since(t0)
	t.Logf("power cut of %s: address moved in %s, first connection through it after %s (reached %v)", holder, tMove.Round(time.Millisecond), tFirst.Round(time.Millisecond), got)
	if got[0] == holder {
		t.Fatalf("the connection reached the killed node %s", holder)
	}
	stale, _ := holders(ctx, []*harness.Node{cut.nd}, vip)
	t.Logf("killed holder keeps a stale copy of the address: %v", len(stale) == 1)

	// The old holder returns: exactly one namespace holds the address, and
	// it stays where it is (nopreempt).
	newHolder := ""
	h, _ := holders(ctx, cands, vip)
	for _, n := range h {
		if n != holder {
			newHolder = n
		}
	}
	startBackend(cut, 3306)
	startBackend(cut, 7001)
	startRun(cut)
	harness.Eventually(t, 60*time.Second, "exactly one namespace holds the address after the old holder returned", oneHolder(vip))
	// The returning node's keepalived must have started (it removes stale addresses at start).
	harness.Eventually(t, 30*time.Second, "the returned node's keepalived runs", func() error {
		if _, err := os.Stat(filepath.Join(cut.dir, "endpoint", "keepalived-vrrp.pid")); err != nil {
			return err
		}
		return oneHolder(vip)()
	})
	if last[0] != newHolder {
		t.Fatalf("address moved back to %s after it returned (want it to stay on %s: nopreempt)", last[0], newHolder)
	}

	// The holder's one-active backend fails while its driver lives: the address moves off.
	var sick *epNode
	for _, e := range eps {
		if e.nd.Name == newHolder {
			sick = e
		}
	}
	t0 = time.Now()
	stopCmd(sick.backends[3306], syscall.SIGKILL)
	harness.Eventually(t, 30*time.Second, "the address moves off the node whose backend failed", oneHolder(vip, newHolder))
	tMove = time.Since(t0)
	harness.Eventually(t, 30*time.Second, "a connection through the address after the backend failure", func() (err error) {
		got, err = dialVia(ctx, client, bin, vip+":3306", 2)
		return err
	})
	t.Logf("backend failure on %s: address moved to %s in %s, first connection after %s (reached %v)", newHolder, last[0], tMove.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond), got)
	if got[0] != got[1] || got[0] == newHolder {
		t.Fatalf("connections reached %v after %s's backend failed", got, newHolder)
	}
	startBackend(sick, 3306)

	// The address changes: the new one is held by one node, the old by none.
	for _, e := range eps {
		writeSpec(e, vip2)
	}
	harness.Eventually(t, 60*time.Second, "the new address is held and the old one gone", func() error {
		if err := oneHolder(vip2)(); err != nil {
			return err
		}
		if h, err := holders(ctx, everyNS, vip); err != nil || len(h) != 0 {
			return fmt.Errorf("old address still on %v (%v)", h, err)
		}
		return nil
	})
	harness.Eventually(t, 30*time.Second, "a connection through the new address", func() (err error) {
		got, err = dialVia(ctx, client, bin, vip2+":7001", 1)
		return err
	})

	// The address is removed: nobody holds it and keepalived and HAProxy stop.
	for _, e := range eps {
		writeSpec(e, "")
	}
	harness.Eventually(t, 60*time.Second, "no address and no keepalived or haproxy left", func() error {
		for _, a := range []string{vip, vip2} {
			if h, err := holders(ctx, everyNS, a); err != nil || len(h) != 0 {
				return fmt.Errorf("%s still on %v (%v)", a, h, err)
			}
		}
		for _, e := range eps {
			if anyMarked(filepath.Join(e.dir, "endpoint")) {
				return fmt.Errorf("%s still runs keepalived or haproxy", e.nd.Name)
			}
		}
		return nil
	})
}
