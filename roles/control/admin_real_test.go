package control

import (
	"bytes"
	"context"
	"database/sql"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/supervisor"
)

// TestAdminAccountRealMariaDB runs a real standalone mariadbd on loopback
// through the engine: cloudd's admin account is created over the unix socket
// (no init file), no file under the driver's directory holds the admin
// password, TCP clients need TLS with the cluster CA, and when the account
// is missing after a crash (the window a first start can die in) the next
// convergence creates it again.
func TestAdminAccountRealMariaDB(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real mariadbd")
	}
	if _, err := exec.LookPath("mariadbd"); err != nil {
		t.Skip("mariadbd is not installed (scripts/deps.sh)")
	}
	if _, err := user.Lookup("mysql"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and the mysql user")
	}
	tmp := t.TempDir()
	for d := tmp; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	m, err := manifests.Default()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	sup := supervisor.New(nil, log)
	t.Cleanup(func() { sup.StopAll(time.Minute) })
	e := NewEngine(filepath.Join(tmp, "control"), "node1", "127.0.0.1", m, sup, log)
	ca, err := NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	in := Instance{Name: "mysql", Services: []string{"identity"}, Port: port, BufferPoolMiB: 64}
	const adminPW = "admin-pw-7f3a9c1e5b"
	des := Desired{Host: true, Topology: Single, Instances: []Instance{in}, AdminPassword: adminPW, CA: ca, CertIPs: []string{"127.0.0.1"},
		ClientHosts: []string{"127.0.0.1"}, Credentials: map[string]Credential{"identity": {Service: "identity", User: "identity", Password: "svc-pw-0c4d2e"}}}
	converge := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		var last []InstanceStatus
		for ctx.Err() == nil {
			last = e.Converge(ctx, des)
			if len(last) == 1 && last[0].State == "running" && last[0].Provisioned {
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Fatalf("%s: not provisioned in time; last %+v; error log: %s", what, last, tail(instancePaths(e.Dir, in).errlog, 10))
	}
	converge("first start")

	noPasswordFile := func() {
		t.Helper()
		err := filepath.WalkDir(e.Dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !d.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(adminPW)) {
				t.Errorf("%s holds the admin password", p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	noPasswordFile()

	// A service over TCP: refused without TLS, served with the CA.
	dial := func(tlsOn bool) error {
		cfg := mysql.NewConfig()
		cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = "identity", "svc-pw-0c4d2e", "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "identity"
		cfg.Timeout = 5 * time.Second
		if tlsOn {
			if cfg.TLS, err = ClientTLS(ca.CertPEM, "127.0.0.1"); err != nil {
				return err
			}
		}
		conn, err := mysql.NewConnector(cfg)
		if err != nil {
			return err
		}
		db := sql.OpenDB(conn)
		defer db.Close()
		return db.Ping()
	}
	if err := dial(false); err == nil {
		t.Fatal("a service connected without TLS")
	}
	if err := dial(true); err != nil {
		t.Fatalf("a service with TLS and the CA: %v", err)
	}

	// The crash window: the server is up but cloudd's account is missing
	// (a first start that died before it was made), and the server dies.
	root, err := rootSocket(instancePaths(e.Dir, in).sock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Exec("DROP USER '" + AdminUser + "'@'localhost'"); err != nil {
		t.Fatal(err)
	}
	root.Close()
	if err := sup.Stop(svcName(in), time.Minute); err != nil {
		t.Fatal(err)
	}
	e.StopAll()
	converge("restart without the admin account")
	noPasswordFile()
}

func rootSocket(sock string) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", sock
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
