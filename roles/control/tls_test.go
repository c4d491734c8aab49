package control

import (
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func TestCAIssuesNodeCertificates(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := NewCA(now)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := ca.encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeCA(enc)
	if err != nil || back != ca {
		t.Fatalf("CA does not survive its encoding: %v", err)
	}
	certPEM, keyPEM, err := ca.Issue("node1", []string{"10.0.0.1", "10.0.0.100"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !certFits(certPEM, keyPEM, ca.CertPEM, []string{"10.0.0.1", "10.0.0.100"}, now) {
		t.Fatal("a fresh certificate does not fit")
	}
	b, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "node1" || len(cert.IPAddresses) != 2 || cert.IsCA {
		t.Fatalf("certificate: %+v", cert)
	}
	// A new address (the floating address moved), another CA, a key that
	// does not match, or the end of its life: the certificate is replaced.
	if certFits(certPEM, keyPEM, ca.CertPEM, []string{"10.0.0.1", "10.0.0.101"}, now) {
		t.Fatal("fits an address it does not name")
	}
	other, _ := NewCA(now)
	if certFits(certPEM, keyPEM, other.CertPEM, []string{"10.0.0.1"}, now) {
		t.Fatal("fits another CA")
	}
	_, otherKey, _ := ca.Issue("node1", []string{"10.0.0.1"}, now)
	if certFits(certPEM, otherKey, ca.CertPEM, []string{"10.0.0.1"}, now) {
		t.Fatal("fits a key that is not its own")
	}
	if certFits(certPEM, keyPEM, ca.CertPEM, []string{"10.0.0.1"}, now.Add(certLifetime-certRenewBefore/2)) {
		t.Fatal("fits close to its expiry")
	}
	if _, err := ClientTLS(ca.CertPEM, "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := ClientTLS("", "10.0.0.1"); err == nil {
		t.Fatal("a client TLS configuration without a CA")
	}
}

func TestConfigTLS(t *testing.T) {
	in := Instance{Name: "mysql", Port: 3306, GaleraPort: 4567, ISTPort: 4568, SSTPort: 4569, BufferPoolMiB: 128}
	tp := tlsFiles("/s/control")
	standalone := renderConfig(configInput{Inst: in, Paths: instancePaths("/s/control", in), NodeName: "n1", IP: "10.0.0.1", TLS: tp})
	for _, want := range []string{"require_secure_transport=ON", "ssl_ca=/s/control/tls/ca.pem", "ssl_cert=/s/control/tls/node.pem", "ssl_key=/s/control/tls/node.key"} {
		if !strings.Contains(standalone, want+"\n") {
			t.Errorf("standalone config lacks %q:\n%s", want, standalone)
		}
	}
	if strings.Contains(standalone, "[sst]") {
		t.Errorf("standalone config has an [sst] section")
	}
	galera := renderConfig(configInput{Inst: in, Paths: instancePaths("/s/control", in), NodeName: "n1", IP: "10.0.0.1", TLS: tp,
		Peers: []Peer{{"n1", "10.0.0.1"}, {"n2", "10.0.0.2"}, {"n3", "10.0.0.3"}}, Provider: "/usr/lib/galera/libgalera_smm.so"})
	for _, want := range []string{"socket.ssl=YES", "socket.ssl_ca=/s/control/tls/ca.pem", "socket.ssl_cert=/s/control/tls/node.pem", "socket.ssl_key=/s/control/tls/node.key",
		"[sst]\ntca=/s/control/tls/ca.pem\ntcert=/s/control/tls/node.pem\ntkey=/s/control/tls/node.key\nssl-mode=VERIFY_CA\n"} {
		if !strings.Contains(galera, want) {
			t.Errorf("galera config lacks %q:\n%s", want, galera)
		}
	}
}

func TestClientHosts(t *testing.T) {
	v := ClusterView{Nodes: []NodeView{{Name: "b", IP: "10.0.0.2"}, {Name: "a", IP: "10.0.0.1"}, {Name: "c"}},
		ClientNetworks: []string{"192.168.5.0/24", " 172.16.0.0/12", "bogus", "fd00::/64"}}
	got := strings.Join(ClientHosts(v), ",")
	want := "10.0.0.1,10.0.0.2,172.16.0.0/255.240.0.0,192.168.5.0/255.255.255.0"
	if got != want {
		t.Fatalf("client hosts %s, want %s", got, want)
	}
	des, err := Decide(ClusterView{}, "a")
	if err != nil || len(des.ClientHosts) != 0 {
		t.Fatalf("empty view: %+v %v", des, err)
	}
}
