package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles/control"
	"github.com/cloudctl/cloudctl/tests/harness"
)

// TestControlTLS: the control databases refuse clients without TLS, service
// accounts from hosts that are not members, and a rogue mariadbd that knows
// the group name and the members' addresses but holds no certificate of the
// cluster's CA (one with a certificate from another CA, one without TLS): it
// never joins and receives no data.
func TestControlTLS(t *testing.T) {
	c := harness.New(t, 4)
	n1, n2, n3, outsider := c.Node(1), c.Node(2), c.Node(3), c.Node(4)
	t.Cleanup(func() {
		if t.Failed() {
			dumpMariaDBLogs(t, c.Nodes[:3])
		}
	})
	bootstrap(t, n1, "control")
	waitInstances(t, n1, 90*time.Second, standaloneUp)
	join(t, n1, n2, "control")
	start := time.Now()
	join(t, n1, n3, "control")
	for _, nd := range c.Nodes[:3] {
		waitInstances(t, nd, 4*time.Minute, galeraSize(3))
	}
	t.Logf("Galera over TLS: third control join → size 3 everywhere in %s", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	w := dbwriter(t)
	// node2 and node3 received their data by state transfer: over stunnel
	// (the rsync SST's TLS), and replication runs over ssl://.
	for _, nd := range []*harness.Node{n2, n3} {
		b, err := os.ReadFile(filepath.Join(nd.StateDir, "control", "mysql", "error.log"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Using stunnel for SSL encryption", "ssl://"} {
			if !bytes.Contains(b, []byte(want)) {
				t.Fatalf("%s's MariaDB log does not say %q: its state transfer or replication was not encrypted", nd.Name, want)
			}
		}
	}

	good := dsnOn(t, n1, n1)
	if out, err := n2.Exec(ctx, w, "try", good); err != nil {
		t.Fatalf("a member with TLS and the cluster CA was refused: %v: %s", err, out)
	}
	plain, _, _ := strings.Cut(good, "?")
	// The right password without TLS: the account requires SSL (REQUIRE
	// SSL answers "Access denied"), and the server any TCP client
	// (require_secure_transport answers "insecure transport").
	out, err := n2.Exec(ctx, w, "try", plain)
	if err == nil || !(strings.Contains(string(out), "insecure transport") || strings.Contains(string(out), "Access denied")) {
		t.Fatalf("a client without TLS: want refused, got %v: %s", err, out)
	}
	out, err = outsider.Exec(ctx, w, "try", good)
	if err == nil || !(strings.Contains(string(out), "not allowed to connect") || strings.Contains(string(out), "Access denied")) {
		t.Fatalf("a service account from a host that is not a member: want refused, got %v: %s", err, out)
	}
	t.Logf("refused: a client without TLS, a TLS client from %s (not a member)", outsider.IP)

	var addrs []string
	for _, nd := range c.Nodes[:3] {
		addrs = append(addrs, nd.IP+":4567")
	}
	// "member-ca": the certificate and key of node3, which the cluster's
	// CA signed, used from an address that is not a member's (what a node
	// removed from the cluster keeps): Galera's allowlist refuses it.
	for _, mode := range []string{"foreign-ca", "no-tls", "member-ca"} {
		t.Run("rogue "+mode, func(t *testing.T) {
			r := startRogue(t, outsider, mode, addrs, filepath.Join(n3.StateDir, "control", "tls"))
			harness.Eventually(t, 3*time.Minute, "the rogue mariadbd gives up", func() error {
				if r.running() {
					return fmt.Errorf("rogue still running; its log: %s", r.logTail(3))
				}
				return nil
			})
			log := r.log()
			for _, bad := range []string{"Synchronized with group", "SST complete", "State transfer required"} {
				if strings.Contains(log, bad) {
					t.Fatalf("the rogue mariadbd got in (%q in its log):\n%s", bad, r.logTail(30))
				}
			}
			if _, err := os.Stat(filepath.Join(r.data, "identity")); err == nil {
				t.Fatalf("the rogue mariadbd received the identity database")
			}
			if mode == "member-ca" {
				// Refused by the allowlist, not for another reason: a
				// member says so.
				said := ""
				for _, nd := range c.Nodes[:3] {
					b, _ := os.ReadFile(filepath.Join(nd.StateDir, "control", "mysql", "error.log"))
					for _, line := range strings.Split(string(b), "\n") {
						if strings.Contains(line, outsider.IP) && strings.Contains(line, "allowlist") {
							said = nd.Name + ": " + line
						}
					}
				}
				if said == "" {
					t.Fatalf("no member logged refusing %s by its allowlist", outsider.IP)
				}
				t.Logf("refused by the allowlist: %s", said)
			}
			t.Logf("rogue (%s) refused: %s", mode, r.logTail(2))
			for _, nd := range c.Nodes[:3] {
				waitInstances(t, nd, time.Minute, galeraSize(3))
			}
		})
	}
	t.Run("no password on a command line, in an environment, a log or status", func(t *testing.T) {
		var dbs api.Databases
		if err := json.Unmarshal([]byte(n1.MustRun(t, "database", "list", "--format", "json")), &dbs); err != nil {
			t.Fatal(err)
		}
		secrets := map[string]string{}
		for _, s := range dbs.Services {
			var cr api.DBCredentials
			if err := json.Unmarshal([]byte(n1.MustRun(t, "database", "credentials", s.Service, "--format", "json")), &cr); err != nil {
				t.Fatal(err)
			}
			if len(cr.Password) < 16 {
				t.Fatalf("the password of %s is %d characters: too short to look for", s.Service, len(cr.Password))
			}
			secrets[s.Service] = cr.Password
		}
		if len(secrets) == 0 {
			t.Fatal("no service credentials to look for")
		}
		// Every process on the machine: its arguments and environment
		// (the nodes' cloudd, mariadbd, the SST helpers they ran).
		places := map[string][]byte{}
		procs, _ := filepath.Glob("/proc/[0-9]*")
		for _, p := range procs {
			for _, f := range []string{"cmdline", "environ"} {
				if b, err := os.ReadFile(filepath.Join(p, f)); err == nil {
					places[p+"/"+f] = b
				}
			}
		}
		for _, nd := range c.Nodes[:3] {
			places[nd.LogPath] = []byte(nd.Log())
			logs, _ := filepath.Glob(filepath.Join(nd.StateDir, "control", "*", "*.log"))
			outs, _ := filepath.Glob(filepath.Join(nd.StateDir, "control", "*", "*.out"))
			for _, l := range append(logs, outs...) {
				b, _ := os.ReadFile(l)
				places[l] = b
			}
			places[nd.Name+": cloudctl status --format json"] = []byte(nd.MustRun(t, "status", "--format", "json"))
			places[nd.Name+": cloudctl database list --format json"] = []byte(nd.MustRun(t, "database", "list", "--format", "json"))
		}
		for where, b := range places {
			for svc, pw := range secrets {
				if bytes.Contains(b, []byte(pw)) {
					t.Errorf("the password of %s is in %s", svc, where)
				}
			}
		}
		t.Logf("%d service passwords looked for in %d places (every process's arguments and environment, cloudd's and MariaDB's logs, status): none found", len(secrets), len(places))
	})
}

type rogue struct {
	dir, data, errlog string
	cmd               *exec.Cmd
	done              chan struct{}
}

func (r *rogue) running() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

func (r *rogue) log() string {
	b, _ := os.ReadFile(r.errlog)
	return string(b)
}

func (r *rogue) logTail(n int) string {
	ls := strings.Split(strings.TrimSpace(r.log()), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// startRogue starts a mariadbd in nd's namespace that claims to be a member
// of the cluster's "mysql" Galera group: mode "foreign-ca" uses TLS with a
// certificate of a CA of its own, "member-ca" a member's certificate and key
// and the cluster's CA (copied from memberTLS), "no-tls" none.
func startRogue(t *testing.T, nd *harness.Node, mode string, addrs []string, memberTLS string) *rogue {
	t.Helper()
	dir, err := os.MkdirTemp("", "cloudctl-rogue-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	u, err := user.Lookup("mysql")
	if err != nil {
		t.Skip("no mysql user")
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	r := &rogue{dir: dir, data: filepath.Join(dir, "data"), errlog: filepath.Join(dir, "error.log"), done: make(chan struct{})}
	opts := fmt.Sprintf("gmcast.listen_addr=tcp://%s:4567;ist.recv_addr=%s:4568;pc.wait_prim_timeout=PT15S", nd.IP, nd.IP)
	var sst string
	if mode == "foreign-ca" || mode == "member-ca" {
		files := map[string][]byte{}
		if mode == "member-ca" {
			for _, name := range []string{"ca.pem", "node.pem", "node.key"} {
				b, err := os.ReadFile(filepath.Join(memberTLS, name))
				if err != nil {
					t.Fatal(err)
				}
				files[name] = b
			}
		} else {
			ca, err := control.NewCA(time.Now())
			if err != nil {
				t.Fatal(err)
			}
			cert, key, err := ca.Issue("node1", []string{nd.IP}, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			files["ca.pem"], files["node.pem"], files["node.key"] = []byte(ca.CertPEM), cert, key
		}
		for name, data := range files {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
		opts += fmt.Sprintf(";socket.ssl=YES;socket.ssl_ca=%[1]s/ca.pem;socket.ssl_cert=%[1]s/node.pem;socket.ssl_key=%[1]s/node.key", dir)
		sst = fmt.Sprintf("[sst]\ntca=%[1]s/ca.pem\ntcert=%[1]s/node.pem\ntkey=%[1]s/node.key\n", dir)
	}
	cnf := filepath.Join(dir, "my.cnf")
	body := fmt.Sprintf(`[mysqld]
user=mysql
datadir=%[1]s/data
socket=%[1]s/mysqld.sock
pid-file=%[1]s/mysqld.pid
log-error=%[2]s
port=3306
bind-address=%[3]s
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
innodb_buffer_pool_size=64M
wsrep_on=ON
wsrep_provider=/usr/lib/galera/libgalera_smm.so
wsrep_cluster_name=cloudctl-mysql
wsrep_cluster_address=gcomm://%[4]s
wsrep_node_name=node1
wsrep_node_address=%[3]s:4567
wsrep_provider_options="%[5]s"
wsrep_sst_method=rsync
wsrep_sst_receive_address=%[3]s:4569
%[6]s`, dir, r.errlog, nd.IP, strings.Join(addrs, ","), opts, sst)
	if err := os.WriteFile(cnf, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mariadb-install-db", "--defaults-file="+cnf, "--auth-root-authentication-method=socket", "--skip-test-db").CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db for the rogue: %v: %s", err, out)
	}
	cmd := exec.Command("ip", "netns", "exec", nd.NS, "mariadbd", "--defaults-file="+cnf)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the rogue mariadbd: %v", err)
	}
	r.cmd = cmd
	go func() { _ = cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		if r.running() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-r.done
		}
	})
	return r
}

// dumpMariaDBLogs prints the tail of every MariaDB error log of the nodes.
func dumpMariaDBLogs(t *testing.T, nodes []*harness.Node) {
	for _, nd := range nodes {
		logs, _ := filepath.Glob(filepath.Join(nd.StateDir, "control", "*", "error.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			ls := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(ls) > 40 {
				ls = ls[len(ls)-40:]
			}
			t.Logf("==== %s %s ====\n%s", nd.Name, l, strings.Join(ls, "\n"))
		}
	}
}

// TestUntrustedEndpoint: a thousand wrong token checks from one namespace
// are slowed (refused with 429 while the source backs off), the daemon's
// memory stays bounded, an oversized body is refused, and a wrong secret
// learns nothing: not the cluster's name.
func TestUntrustedEndpoint(t *testing.T) {
	c := harness.New(t, 2)
	n1, attacker := c.Node(1), c.Node(2)
	bootstrap(t, n1, "compute")
	bin := buildHelper(t, "tokenflood")
	ctx := context.Background()
	addr := n1.IP + ":7443"

	out, err := attacker.Output(ctx, bin, "once", addr, "0")
	if err != nil || !strings.HasPrefix(string(out), "200 ") || !strings.Contains(string(out), `"reason":"unknown"`) || strings.Contains(string(out), `"cluster":"cloud"`) {
		t.Fatalf("a wrong secret: want 200, reason unknown and no cluster name, got %v %s", err, out)
	}
	out, err = attacker.Output(ctx, bin, "big", addr, "100000")
	if err != nil || strings.TrimSpace(string(out)) != "413" {
		t.Fatalf("a 100 kB body: want 413, got %v %s", err, out)
	}
	// A forged heartbeat (microcluster serves the endpoint before trust and
	// would take the member list in it as its trust store) is refused, the
	// forger's certificate is not let in, and the trust store is untouched;
	// nor is a client let in that sends node1's certificate second in its
	// chain (microcluster trusts any certificate of a chain; only the first
	// is proven).
	out, err = attacker.Output(ctx, bin, "forgebeat", addr, filepath.Join(n1.StateDir, "server.crt"))
	want := "heartbeat 403\nmembers 403\nchained /cluster/1.0/cluster 403\nchained /1.0/tokens 403"
	if err != nil || strings.TrimSpace(string(out)) != want {
		t.Fatalf("a forged heartbeat, then a member's certificate sent second: want all refused:\n%s\ngot %v:\n%s", want, err, out)
	}
	trust, err := os.ReadDir(filepath.Join(n1.StateDir, "truststore"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range trust {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != n1.Name+".yaml" {
		t.Fatalf("the trust store changed after a forged heartbeat: %v", names)
	}
	if !strings.Contains(n1.Log(), "refused a request from "+attacker.IP) {
		t.Fatalf("the refusals are not in cloudd's log:\n%s", n1.LogTail(20))
	}

	before := rssKiB(t, n1)
	// microcluster's own join endpoint: the same guard holds it (the
	// source's backoff then carries over to the token flood below).
	out, err = attacker.Output(ctx, bin, "joinflood", addr, "1000")
	if err != nil {
		t.Fatalf("join flood: %v %s", err, out)
	}
	joins := statusCounts(string(out))
	t.Logf("1000 joins with a wrong secret: %v", joins)
	if joins["429"] < 900 || joins["200"] > 0 {
		t.Fatalf("joins with a wrong secret were not slowed (or one was let in): %v", joins)
	}
	out, err = attacker.Output(ctx, bin, "flood", addr, "1000")
	if err != nil {
		t.Fatalf("flood: %v %s", err, out)
	}
	counts := statusCounts(string(out))
	after := rssKiB(t, n1)
	t.Logf("1000 wrong secrets: %v; cloudd RSS %d → %d KiB over both floods", counts, before, after)
	if counts["429"] < 900 || counts["200"] > 100 {
		t.Fatalf("wrong secrets were not slowed: %v", counts)
	}
	if after-before > 64*1024 {
		t.Fatalf("cloudd grew by %d KiB under the flood", after-before)
	}
	if strings.Contains(n1.Log(), "panic") {
		t.Fatalf("cloudd panicked: %s", n1.LogTail(20))
	}
}

// statusCounts reads tokenflood's "STATUS COUNT" lines.
func statusCounts(out string) map[string]int {
	counts := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if code, n, ok := strings.Cut(l, " "); ok {
			counts[code], _ = strconv.Atoi(n)
		}
	}
	return counts
}

func rssKiB(t *testing.T, nd *harness.Node) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", nd.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// buildHelper builds a test helper command (tests/NAME) once per test.
func buildHelper(t *testing.T, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	if b, err := exec.Command("go", "build", "-o", out, "./"+name).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v: %s", name, err, b)
	}
	return out
}
