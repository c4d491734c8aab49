package endpoint

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/supervisor"

	"github.com/cloudctl/cloudctl/internal/atomicfile"
)

// Supervised process names.
const (
	keepalivedName = "keepalived"
	haproxyName    = "haproxy"
)

// System is what the driver does to the machine besides supervising
// processes; HostSystem is the real one, unit tests pass a fake.
type System interface {
	// InterfaceFor finds the interface holding ip and that address's network.
	InterfaceFor(ip netip.Addr) (string, netip.Prefix, error)
	// HasAddress reports whether an interface of this node holds ip.
	HasAddress(ip netip.Addr) bool
	// EnableNonlocalBind sets net.ipv4.ip_nonlocal_bind in cloudd's network
	// namespace, so HAProxy binds the floating address on every candidate.
	EnableNonlocalBind() error
	// DeleteAddress removes a floating address left on iface.
	DeleteAddress(ctx context.Context, iface string, p netip.Prefix) error
	Signal(pid int, sig syscall.Signal) error
	// Check runs a configuration check (haproxy -c, keepalived -t).
	Check(ctx context.Context, name string, args ...string) error
	// Dial connects to a backend and hangs up.
	Dial(ctx context.Context, addr string) error
	// HasUser reports whether a system user exists (HAProxy's workers drop to it).
	HasUser(name string) bool
}

// HostSystem is the real System.
type HostSystem struct{}

// InterfaceFor implements System.
func (HostSystem) InterfaceFor(ip netip.Addr) (string, netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", netip.Prefix{}, fmt.Errorf("list interfaces: %w", err)
	}
	for _, ifc := range ifs {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			p, err := netip.ParsePrefix(ipn.String())
			if err == nil && p.Addr().Unmap() == ip {
				return ifc.Name, p.Masked(), nil
			}
		}
	}
	return "", netip.Prefix{}, fmt.Errorf("no interface of this machine has the address %s", ip)
}

// HasAddress implements System.
func (HostSystem) HasAddress(ip netip.Addr) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok {
			if x, ok := netip.AddrFromSlice(ipn.IP); ok && x.Unmap() == ip {
				return true
			}
		}
	}
	return false
}

// nonlocalBind is per network namespace; cloudd runs in the node's.
const nonlocalBind = "/proc/sys/net/ipv4/ip_nonlocal_bind"

// EnableNonlocalBind implements System.
func (HostSystem) EnableNonlocalBind() error {
	if b, err := os.ReadFile(nonlocalBind); err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(nonlocalBind, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("set net.ipv4.ip_nonlocal_bind (HAProxy binds the floating address on every control node): %w", err)
	}
	return nil
}

// DeleteAddress implements System.
func (HostSystem) DeleteAddress(ctx context.Context, iface string, p netip.Prefix) error {
	out, err := exec.CommandContext(ctx, "ip", "addr", "del", p.String(), "dev", iface).CombinedOutput()
	if err != nil {
		return fmt.Errorf("remove %s from %s: %w: %s", p, iface, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Signal implements System.
func (HostSystem) Signal(pid int, sig syscall.Signal) error {
	if pid <= 1 {
		return fmt.Errorf("no process to signal")
	}
	return syscall.Kill(pid, sig)
}

// Check implements System.
func (HostSystem) Check(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(name), err, lastLines(string(out), 5))
	}
	return nil
}

// Dial implements System.
func (HostSystem) Dial(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		// "connect: connection refused" reads better than the whole OpError.
		if u := errors.Unwrap(err); u != nil {
			return u
		}
		return err
	}
	return c.Close()
}

// HasUser implements System.
func (HostSystem) HasUser(name string) bool {
	_, err := user.Lookup(name)
	return err == nil
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, " | ")
}

// Driver is the floating endpoint's driver.
type Driver struct {
	sys System

	mu  sync.Mutex
	sup *supervisor.Supervisor
	log *slog.Logger
	dir string
	// applied are the configurations the running processes have read.
	applied struct{ keepalived, haproxy string }
	hin     healthInput
	loop    *healthLoop
	verdict Verdict
	// dbGrace is DBGrace (tests shorten it); dbFailingSince is when the
	// health loop's reads of the cluster database began to fail (zero: they
	// answer).
	dbGrace        time.Duration
	dbFailingSince time.Time
	// skipped is the last reason frontends were left out (logged on change).
	skipped string
}

// New returns the driver on the real machine.
func New() *Driver { return NewWithSystem(HostSystem{}) }

// NewWithSystem returns a driver on sys (tests pass a fake).
func NewWithSystem(sys System) *Driver {
	return &Driver{sys: sys, log: slog.New(slog.NewTextHandler(io.Discard, nil)), dbGrace: DBGrace}
}

var _ driver.Driver = (*Driver)(nil)

// Name implements driver.Driver.
func (d *Driver) Name() string { return api.LayerEndpoint }

// AppliesTo implements driver.Driver: control nodes, when the plan has a
// floating address. A single control node holds it alone (the status layer
// says it is not highly available).
func (d *Driver) AppliesTo(env *driver.Env, n driver.Node) bool { return Applies(env, n) }

// Schema implements driver.Driver: the endpoint keeps no table; the address
// is in the plan and the rest is observed.
func (d *Driver) Schema() []driver.SchemaUpdate { return nil }

// Guard implements driver.Driver: the endpoint holds no data, and the
// address moves to another candidate by itself.
func (d *Driver) Guard(ctx context.Context, env *driver.Env, ch driver.Change) error { return nil }

var _ driver.Frontender = (*Driver)(nil)

// Frontends implements driver.Frontender: cloudd's API on the floating
// address, balanced over the control nodes (it is TLS end to end: HAProxy
// forwards TCP).
func (d *Driver) Frontends(env *driver.Env) []driver.Frontend {
	port := 7443
	if env.Manifest != nil && env.Manifest.Ports.Cloudd > 0 {
		port = env.Manifest.Ports.Cloudd
	}
	f := driver.Frontend{Name: "cloudd", Port: port}
	for _, n := range env.WithRole(roles.Control) {
		if n.Address != "" {
			f.Backends = append(f.Backends, driver.Backend{Node: n.Name, Addr: n.Address})
		}
	}
	if len(f.Backends) == 0 {
		return nil
	}
	return []driver.Frontend{f}
}

// Ports implements driver.Driver.
func (d *Driver) Ports(env *driver.Env, n driver.Node) []driver.Port {
	if !Runs(env, n) {
		return nil
	}
	ps := []driver.Port{{Number: 112, Proto: "vrrp", Purpose: "VRRP adverts of the floating address between control nodes (IP protocol 112)", Peers: true}}
	for _, f := range sortedFrontends(env.Frontends) {
		ps = append(ps, driver.Port{Number: f.Port, Proto: "tcp", Purpose: "floating endpoint: " + f.Name + " (HAProxy on the floating address)"})
	}
	return ps
}

// files are the driver's files under Env.Dir.
type files struct {
	dir, keepalivedConf, keepalivedPid, vrrpPid, keepalivedLog, check, verdict string
	haproxyCfg, haproxyPid, haproxyLog, vip, clientPEM                         string
}

func pathsIn(dir string) files {
	j := func(n string) string { return filepath.Join(dir, n) }
	return files{dir: dir, keepalivedConf: j("keepalived.conf"), keepalivedPid: j("keepalived.pid"), vrrpPid: j("keepalived-vrrp.pid"),
		keepalivedLog: j("keepalived.log"), check: j("check.sh"), verdict: j("health"),
		haproxyCfg: j("haproxy.cfg"), haproxyPid: j("haproxy.pid"), haproxyLog: j("haproxy.log"), vip: j("vip"), clientPEM: j("cluster-client.pem")}
}

func binary(env *driver.Env, component, name, fallback string) string {
	if env.Manifest != nil {
		if p, err := env.Manifest.Binary(component, name); err == nil {
			return p
		}
	}
	return fallback
}

// bind records what Stop and the health loop need of the latest Env.
func (d *Driver) bind(env *driver.Env) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sup, d.dir = env.Sup, env.Dir
	if env.Log != nil {
		d.log = env.Log
	}
}

func (d *Driver) running(name string) bool {
	d.mu.Lock()
	sup := d.sup
	d.mu.Unlock()
	if sup == nil {
		return false
	}
	st, ok := sup.Status(name)
	return ok && st.Running
}

// Again is how soon a round that failed asks to be retried.
const Again = 10 * time.Second

// Converge implements driver.Driver. From any earlier state (nothing
// running, another address, other peers or frontends) it moves this node to
// the state env describes: configuration written only when it changes,
// keepalived reloaded with SIGHUP and HAProxy with SIGUSR2 (master-worker:
// the listeners pass to the new worker), nothing restarted that need not be.
func (d *Driver) Converge(ctx context.Context, env *driver.Env, step func(driver.Step)) (driver.Result, error) {
	if step == nil {
		step = func(driver.Step) {}
	}
	d.bind(env)
	fail := func(name string, err error) (driver.Result, error) {
		step(driver.Step{Name: name, State: "failed", Detail: err.Error()})
		return driver.Result{Again: Again}, fmt.Errorf("%s: %w", name, err)
	}
	des, err := Decide(env, d.sys.InterfaceFor)
	if err != nil {
		return fail("decide the floating endpoint", err)
	}
	if !des.Active {
		if err := d.Stop(ctx); err != nil {
			return fail("stop the floating endpoint", err)
		}
		step(driver.Step{Name: "floating endpoint", State: "done", Detail: des.Reason})
		return driver.Result{}, nil
	}
	for _, why := range des.Skipped {
		step(driver.Step{Name: "check the frontends", State: "failed", Detail: why + "; left out"})
	}
	if skipped := strings.Join(des.Skipped, "; "); skipped != d.skipped {
		if skipped != "" {
			d.log.Warn("endpoint: frontends left out", "why", skipped)
		}
		d.skipped = skipped
	}
	f := pathsIn(env.Dir)
	if strings.ContainsAny(f.dir, "'\"\n") {
		return fail("prepare the floating endpoint", fmt.Errorf("directory %q has a quote or newline in its name", f.dir))
	}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fail("prepare the floating endpoint", err)
	}
	if err := d.sys.EnableNonlocalBind(); err != nil {
		return fail("allow binding the floating address", err)
	}
	if _, err := atomicfile.WriteIfChanged(f.check, []byte(renderCheckScript(f.verdict)), 0o755); err != nil {
		return fail("write the health check", err)
	}
	d.mu.Lock()
	d.hin = healthInput{db: env.DB, probes: LocalBackends(des.Frontends, env.Local.Name), haproxy: len(des.Frontends) > 0, verdict: f.verdict}
	d.mu.Unlock()

	if err := d.convergeKeepalived(ctx, env, des, f); err != nil {
		return fail("run keepalived", err)
	}
	step(driver.Step{Name: "run keepalived", State: "done", Detail: fmt.Sprintf("%s on %s, priority %d, peers %s", des.VIP, des.Interface, des.Self.Priority, strings.Join(des.Peers, ","))})
	if err := d.convergeHAProxy(ctx, env, des, f); err != nil {
		return fail("run haproxy", err)
	}
	if len(des.Frontends) > 0 {
		step(driver.Step{Name: "run haproxy", State: "done", Detail: fmt.Sprintf("%d frontends on %s", len(des.Frontends), des.VIP.Addr())})
	}
	// keepalived's check fails (init_fail) until this loop's verdicts arrive.
	d.startHealth()
	return driver.Result{}, nil
}

// recordedVIP reads the address (and interface) a previous round configured.
func recordedVIP(path string) (netip.Prefix, string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return netip.Prefix{}, "", false
	}
	fs := strings.Fields(string(b))
	if len(fs) != 2 {
		return netip.Prefix{}, "", false
	}
	p, err := netip.ParsePrefix(fs[0])
	if err != nil {
		return netip.Prefix{}, "", false
	}
	return p, fs[1], true
}

// dropStaleVIP removes an address a previous keepalived left behind (it was
// killed, so it could not remove it), unless it is keep or a node's own.
func (d *Driver) dropStaleVIP(ctx context.Context, env *driver.Env, f files, keep netip.Prefix) error {
	p, iface, ok := recordedVIP(f.vip)
	if !ok || p == keep || !d.sys.HasAddress(p.Addr()) {
		return nil
	}
	for _, n := range env.Nodes {
		if n.IP == p.Addr().String() {
			return nil
		}
	}
	d.log.Info("endpoint: removing a floating address left behind", "address", p, "interface", iface)
	return d.sys.DeleteAddress(ctx, iface, p)
}

func (d *Driver) convergeKeepalived(ctx context.Context, env *driver.Env, des Desired, f files) error {
	conf := renderKeepalived(keepalivedInput{Des: des, CheckScript: f.check})
	bin := binary(env, "keepalived", "keepalived", "/usr/sbin/keepalived")
	st, supervised := env.Sup.Status(keepalivedName)
	d.mu.Lock()
	applied := d.applied.keepalived
	d.mu.Unlock()
	if supervised && applied == conf {
		return nil
	}
	if err := d.checkedWrite(ctx, f.keepalivedConf, conf, func(p string) error { return d.sys.Check(ctx, bin, "-t", "-f", p) }); err != nil {
		return err
	}
	if supervised {
		if st.Running {
			if err := d.sys.Signal(st.Pid, syscall.SIGHUP); err != nil {
				return fmt.Errorf("reload keepalived: %w", err)
			}
			d.log.Info("endpoint: keepalived reloaded", "address", des.VIP, "peers", strings.Join(des.Peers, ","))
		}
		// A keepalived the supervisor is restarting reads the new file.
	} else {
		if _, err := supervisor.StopStray(f.keepalivedPid, f.keepalivedConf, 30*time.Second); err != nil {
			return err
		}
		if err := d.dropStaleVIP(ctx, env, f, des.VIP); err != nil {
			return err
		}
		spec := supervisor.Spec{Name: keepalivedName, Path: bin, LogPath: f.keepalivedLog,
			Args: []string{"--dont-fork", "--log-console", "--no-syslog", "--log-detail", "--vrrp", "--use-file=" + f.keepalivedConf, "--pid=" + f.keepalivedPid, "--vrrp_pid=" + f.vrrpPid}}
		if err := env.Sup.Start(spec); err != nil {
			return err
		}
		d.log.Info("endpoint: keepalived started", "address", des.VIP, "interface", des.Interface, "priority", des.Self.Priority, "peers", strings.Join(des.Peers, ","))
	}
	if err := atomicfile.Replace(f.vip, []byte(des.VIP.String()+" "+des.Interface+"\n"), 0o644); err != nil {
		return err
	}
	d.mu.Lock()
	d.applied.keepalived = conf
	d.mu.Unlock()
	return nil
}

func (d *Driver) convergeHAProxy(ctx context.Context, env *driver.Env, des Desired, f files) error {
	if len(des.Frontends) == 0 {
		if err := env.Sup.Stop(haproxyName, 30*time.Second); err != nil {
			return err
		}
		d.mu.Lock()
		d.applied.haproxy = ""
		d.mu.Unlock()
		return nil
	}
	in := haproxyInput{Des: des}
	if d.sys.HasUser("haproxy") {
		in.User, in.Group = "haproxy", "haproxy"
	}
	if print, err := writeClientPEM(env.TLS, f.clientPEM); err != nil {
		// Backends are then checked with a connect: worse, not broken.
		d.log.Warn("endpoint: backends' HTTP checks off (connect checks instead)", "error", err)
	} else if print != "" && !strings.ContainsAny(env.TLS.CAFile, " \t\n#'\"") {
		in.ClientPEM, in.CAFile, in.ClientPrint = f.clientPEM, env.TLS.CAFile, print
	}
	cfg := renderHAProxy(in)
	bin := binary(env, "haproxy", "haproxy", "/usr/sbin/haproxy")
	st, supervised := env.Sup.Status(haproxyName)
	d.mu.Lock()
	applied := d.applied.haproxy
	d.mu.Unlock()
	if supervised && applied == cfg {
		return nil
	}
	if err := d.checkedWrite(ctx, f.haproxyCfg, cfg, func(p string) error { return d.sys.Check(ctx, bin, "-c", "-q", "-f", p) }); err != nil {
		return err
	}
	if supervised {
		if st.Running {
			if err := d.sys.Signal(st.Pid, syscall.SIGUSR2); err != nil {
				return fmt.Errorf("reload haproxy: %w", err)
			}
			d.log.Info("endpoint: haproxy reloaded", "frontends", len(des.Frontends))
		}
	} else {
		if _, err := supervisor.StopStray(f.haproxyPid, f.haproxyCfg, 30*time.Second); err != nil {
			return err
		}
		spec := supervisor.Spec{Name: haproxyName, Path: bin, LogPath: f.haproxyLog,
			Args: []string{"-W", "-db", "-f", f.haproxyCfg, "-p", f.haproxyPid}}
		if err := env.Sup.Start(spec); err != nil {
			return err
		}
		d.log.Info("endpoint: haproxy started", "frontends", len(des.Frontends), "address", des.VIP.Addr())
	}
	d.mu.Lock()
	d.applied.haproxy = cfg
	d.mu.Unlock()
	return nil
}

// checkedWrite puts content in path only if check accepts it, so a running
// process never rereads a configuration it would reject. Unchanged files
// are not rewritten.
func (d *Driver) checkedWrite(ctx context.Context, path, content string, check func(string) error) error {
	if b, err := os.ReadFile(path); err == nil && string(b) == content {
		return nil
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := check(tmp); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("the rendered %s is rejected (kept the previous one): %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Stop implements driver.Driver: keepalived first (it removes the address
// and tells the peers with priority 0, so another node takes over at
// once), then HAProxy and the health loop. It is idempotent.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	sup, dir := d.sup, d.dir
	d.mu.Unlock()
	if sup == nil {
		return nil
	}
	var errs []error
	if _, ok := sup.Status(keepalivedName); ok {
		errs = append(errs, sup.Stop(keepalivedName, 30*time.Second))
	}
	if _, ok := sup.Status(haproxyName); ok {
		errs = append(errs, sup.Stop(haproxyName, 30*time.Second))
	}
	d.stopHealth()
	if dir != "" {
		f := pathsIn(dir)
		// The copy of this member's key is needed only by a running HAProxy.
		if err := os.Remove(f.clientPEM); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		if p, iface, ok := recordedVIP(f.vip); ok {
			if d.sys.HasAddress(p.Addr()) {
				errs = append(errs, d.sys.DeleteAddress(ctx, iface, p))
			}
			_ = os.Remove(f.vip)
		}
	}
	d.mu.Lock()
	d.applied.keepalived, d.applied.haproxy = "", ""
	d.verdict = Verdict{}
	d.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop the floating endpoint: %w", err)
	}
	return nil
}

// writeClientPEM puts this member's cluster certificate and key in one PEM
// file (HAProxy's crt), 0600, and returns a short fingerprint of it; ""
// when env has no certificate files.
func writeClientPEM(t driver.ClusterTLS, path string) (string, error) {
	if t.CertFile == "" || t.KeyFile == "" || t.CAFile == "" {
		return "", nil
	}
	cert, err := os.ReadFile(t.CertFile)
	if err != nil {
		return "", fmt.Errorf("read this member's certificate: %w", err)
	}
	key, err := os.ReadFile(t.KeyFile)
	if err != nil {
		return "", fmt.Errorf("read this member's key: %w", err)
	}
	if _, err := os.Stat(t.CAFile); err != nil {
		return "", fmt.Errorf("read the cluster certificate: %w", err)
	}
	pem := strings.TrimRight(string(cert), "\n") + "\n" + strings.TrimRight(string(key), "\n") + "\n"
	if _, err := atomicfile.WriteIfChanged(path, []byte(pem), 0o600); err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(pem))
	return hex.EncodeToString(sum[:8]), nil
}
