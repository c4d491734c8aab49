package endpoint

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/roles/driver"
)

// withChecks gives every backend of f an HTTP check on its member's cloudd.
func withChecks(f driver.Frontend, path string) driver.Frontend {
	out := f
	out.Backends = nil
	for _, be := range f.Backends {
		host := be.Addr[:strings.LastIndex(be.Addr, ":")]
		be.Check = &driver.HTTPCheck{Addr: host + ":7443", Path: path}
		out.Backends = append(out.Backends, be)
	}
	return out
}

// selfSigned writes a certificate like microcluster's (self-signed, not a
// CA) and its key, PEM.
func selfSigned(t *testing.T, dir, name string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// A frontend whose backends all carry the same HTTP check is checked on the
// members' cloudd over mutual TLS (the member's certificate as client, the
// cluster certificate verified), and real HAProxy accepts the file; a
// frontend with a backend lacking the check, or without the certificate
// files, falls back to connects.
func TestRenderHTTPCheck(t *testing.T) {
	env := env3(t, 1)
	env.Frontends = []driver.Frontend{withChecks(mysqlFrontend(1, 2, 3), "/1.0/control/instances/mysql/writable"), apiFrontend(1, 2, 3)}
	des, err := Decide(env, newFakeSys().InterfaceFor)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := selfSigned(t, dir, "server")
	ca, _ := selfSigned(t, dir, "cluster")
	pemFile := filepath.Join(dir, "cluster-client.pem")
	print, err := writeClientPEM(driver.ClusterTLS{CertFile: cert, KeyFile: key, CAFile: ca}, pemFile)
	if err != nil || print == "" {
		t.Fatalf("client PEM: %q %v", print, err)
	}
	if st, err := os.Stat(pemFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("client PEM mode: %v %v", st, err)
	}
	cfg := renderHAProxy(haproxyInput{Des: des, ClientPEM: pemFile, CAFile: ca, ClientPrint: print})
	for _, want := range []string{
		"backend mysql\n  server node1 10.9.0.1:3306 track check.mysql.node1/node1\n  server node2 10.9.0.2:3306 track check.mysql.node2/node2 backup\n  server node3 10.9.0.3:3306 track check.mysql.node3/node3 backup\n",
		"backend check.mysql.node2\n  option httpchk\n  http-check send meth GET uri /1.0/control/instances/mysql/writable ver HTTP/1.1 hdr Host 10.9.0.2:7443\n  http-check expect status 200\n  timeout check 2s\n" +
			"  server node2 10.9.0.2:7443 check check-ssl verify required ca-file " + ca + " crt " + pemFile + "\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("haproxy.cfg lacks %q:\n%s", want, cfg)
		}
	}
	if !strings.Contains(cfg, "# client certificate "+print+"\n") {
		t.Errorf("a renewed certificate would not reload HAProxy:\n%s", cfg)
	}
	// The API frontend keeps its own check.
	if !strings.Contains(cfg, "server node1 10.9.0.1:7443 check check-ssl verify none") {
		t.Errorf("cloudd's frontend lost its check:\n%s", cfg)
	}
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		p := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := (HostSystem{}).Check(context.Background(), "/usr/sbin/haproxy", "-c", "-q", "-f", p); err != nil {
			t.Errorf("haproxy rejects the rendered file: %v\n%s", err, cfg)
		}
	}

	// Without certificate files: connects.
	if c := renderHAProxy(haproxyInput{Des: des}); strings.Contains(c, "track") || !strings.Contains(c, "server node1 10.9.0.1:3306 check\n") {
		t.Errorf("HTTP check without a client certificate:\n%s", c)
	}
	// One backend without the check (or with another path): connects.
	mixed := withChecks(mysqlFrontend(1, 2, 3), "/1.0/control/instances/mysql/writable")
	if !httpChecks(mixed) {
		t.Error("a frontend whose backends all carry a check is not checked over HTTP")
	}
	mixed.Backends[2].Check = nil
	if httpChecks(mixed) {
		t.Error("a frontend with a backend lacking the check got an HTTP check")
	}
	mixed.Backends[2].Check = &driver.HTTPCheck{Addr: "10.9.0.3:7443", Path: "/1.0/x y"}
	if httpChecks(mixed) {
		t.Error("a check path with a space was rendered")
	}
	mixed.Backends[2].Check = &driver.HTTPCheck{Addr: "10.9.0.3", Path: "/1.0/x"}
	if httpChecks(mixed) {
		t.Error("a check address without a port was rendered")
	}
	// No certificate files: no PEM, no error.
	if p, err := writeClientPEM(driver.ClusterTLS{}, filepath.Join(dir, "none.pem")); p != "" || err != nil {
		t.Errorf("no TLS files: %q %v", p, err)
	}
	if _, err := writeClientPEM(driver.ClusterTLS{CertFile: filepath.Join(dir, "missing"), KeyFile: key, CAFile: ca}, filepath.Join(dir, "x.pem")); err == nil {
		t.Error("a missing certificate file is not reported")
	}
}

// Converge copies this member's certificate and key for HAProxy (0600),
// checks the databases over HTTP, reloads HAProxy when the certificate
// changes, and Stop removes the copy.
func TestConvergeHTTPCheck(t *testing.T) {
	ctx := context.Background()
	sys := newFakeSys()
	env := testEnv(t, sys)
	env.Frontends = []driver.Frontend{withChecks(mysqlFrontend(1, 2, 3), "/1.0/control/instances/mysql/writable"), apiFrontend(1, 2, 3)}
	tlsDir := t.TempDir()
	cert, key := selfSigned(t, tlsDir, "server")
	ca, _ := selfSigned(t, tlsDir, "cluster")
	env.TLS = driver.ClusterTLS{CertFile: cert, KeyFile: key, CAFile: ca}
	d := NewWithSystem(sys)
	t.Cleanup(func() { _ = d.Stop(ctx) })
	if _, err := d.Converge(ctx, env, nil); err != nil {
		t.Fatal(err)
	}
	f := pathsIn(env.Dir)
	if st, err := os.Stat(f.clientPEM); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("client PEM: %v %v", st, err)
	}
	cfg := readFile(t, f.haproxyCfg)
	if !strings.Contains(cfg, "track check.mysql.node1/node1") || !strings.Contains(cfg, "crt "+f.clientPEM) {
		t.Fatalf("haproxy.cfg without the writable checks:\n%s", cfg)
	}
	sys.takeSignals()
	// A renewed certificate reaches HAProxy (a reload).
	cert2, key2 := selfSigned(t, t.TempDir(), "server")
	env.TLS.CertFile, env.TLS.KeyFile = cert2, key2
	if _, err := d.Converge(ctx, env, nil); err != nil {
		t.Fatal(err)
	}
	st, _ := env.Sup.Status(haproxyName)
	if got := sys.takeSignals(); len(got) != 1 || got[0] != fmt.Sprintf("%d:%s", st.Pid, syscall.SIGUSR2) {
		t.Errorf("renewed certificate: signals %v, want one HAProxy reload (%d)", got, st.Pid)
	}
	if err := d.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.clientPEM); !os.IsNotExist(err) {
		t.Fatalf("the copy of the key is left after Stop: %v", err)
	}
}
