package control

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The control databases' TLS: one CA per cluster, made once by the first
// control node to converge and kept in the cluster database (control_config,
// key "ca"); every node hosting MariaDB issues itself a certificate for its
// address (and the floating address) from it. MariaDB's clients, Galera
// replication and IST (socket.ssl_*), and rsync SST (stunnel, [sst] section)
// all use that certificate and accept only peers whose certificate the CA
// signed.

const (
	caLifetime   = 20 * 365 * 24 * time.Hour
	certLifetime = 2 * 365 * 24 * time.Hour
	// certRenewBefore is how long before its expiry a node certificate is replaced.
	certRenewBefore = 30 * 24 * time.Hour
)

// ClusterCA is the control databases' certificate authority.
type ClusterCA struct {
	CertPEM string `json:"cert"`
	KeyPEM  string `json:"key"`
}

// NewCA makes a CA valid from now.
func NewCA(now time.Time) (ClusterCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return ClusterCA{}, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return ClusterCA{}, err
	}
	tpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "cloudctl control databases CA", Organization: []string{"cloudctl"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		return ClusterCA{}, fmt.Errorf("make CA certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return ClusterCA{}, fmt.Errorf("encode CA key: %w", err)
	}
	return ClusterCA{
		CertPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		KeyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})),
	}, nil
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("random serial: %w", err)
	}
	return n, nil
}

func (ca ClusterCA) encode() (string, error) {
	b, err := json.Marshal(ca)
	if err != nil {
		return "", fmt.Errorf("encode CA: %w", err)
	}
	return string(b), nil
}

func decodeCA(s string) (ClusterCA, error) {
	var ca ClusterCA
	if s == "" {
		return ca, nil
	}
	if err := json.Unmarshal([]byte(s), &ca); err != nil {
		return ca, fmt.Errorf("the stored control CA is unreadable: %w", err)
	}
	return ca, nil
}

func (ca ClusterCA) parse() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode([]byte(ca.CertPEM))
	kb, _ := pem.Decode([]byte(ca.KeyPEM))
	if cb == nil || kb == nil {
		return nil, nil, errors.New("the control CA has no certificate or key")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse control CA certificate: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse control CA key: %w", err)
	}
	return cert, key, nil
}

// CAPool is a certificate pool holding only the CA.
func CAPool(caPEM string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, errors.New("no CA certificate")
	}
	return pool, nil
}

// Issue makes a node certificate for a MariaDB host: server and client use
// (Galera and SST connect both ways), its addresses as IP SANs.
func (ca ClusterCA) Issue(node string, ips []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	caCert, caKey, err := ca.parse()
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate node key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: node, Organization: []string{"cloudctl"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{node},
	}
	for _, s := range ips {
		if ip := net.ParseIP(s); ip != nil {
			tpl.IPAddresses = append(tpl.IPAddresses, ip)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issue node certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode node key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// certFits reports whether an issued certificate and key still serve: signed
// by this CA, matching key, every address covered, not about to expire.
func certFits(certPEM, keyPEM []byte, caPEM string, ips []string, now time.Time) bool {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return false
	}
	pool, err := CAPool(caPEM)
	if err != nil {
		return false
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return false
	}
	if now.Add(certRenewBefore).After(cert.NotAfter) {
		return false
	}
	for _, s := range ips {
		ip := net.ParseIP(s)
		if ip == nil {
			continue
		}
		if !slices.ContainsFunc(cert.IPAddresses, func(c net.IP) bool { return c.Equal(ip) }) {
			return false
		}
	}
	return true
}

// tlsPaths are the node's TLS files, shared by its instances.
type tlsPaths struct {
	dir, ca, cert, key string
}

func tlsFiles(root string) tlsPaths {
	d := filepath.Join(root, "tls")
	return tlsPaths{dir: d, ca: filepath.Join(d, "ca.pem"), cert: filepath.Join(d, "node.pem"), key: filepath.Join(d, "node.key")}
}

// ensureTLS writes the CA certificate and this node's certificate and key
// (0600, owned by mysql, in a 0700 directory owned by mysql), issuing a new
// certificate when there is none that fits. It returns a fingerprint of the
// files, which changes when they do.
func (d *Engine) ensureTLS(des Desired, now time.Time) (string, error) {
	if des.CA.CertPEM == "" {
		return "", errors.New("the cluster's control CA is not recorded yet")
	}
	tp := tlsFiles(d.Dir)
	if err := os.MkdirAll(tp.dir, 0o700); err != nil {
		return "", fmt.Errorf("create %s: %w", tp.dir, err)
	}
	if err := os.Chmod(tp.dir, 0o700); err != nil {
		return "", fmt.Errorf("chmod %s: %w", tp.dir, err)
	}
	if err := chownMySQL(tp.dir); err != nil {
		return "", err
	}
	certPEM, _ := os.ReadFile(tp.cert)
	keyPEM, _ := os.ReadFile(tp.key)
	caPEM, _ := os.ReadFile(tp.ca)
	if string(caPEM) != des.CA.CertPEM || !certFits(certPEM, keyPEM, des.CA.CertPEM, des.CertIPs, now) {
		c, k, err := des.CA.Issue(d.Node, des.CertIPs, now)
		if err != nil {
			return "", err
		}
		// The key first: a certificate never sits beside a key it does not match for long.
		for _, f := range []struct {
			path string
			data []byte
		}{{tp.key, k}, {tp.cert, c}, {tp.ca, []byte(des.CA.CertPEM)}} {
			if err := writeSecretFile(f.path, f.data); err != nil {
				return "", err
			}
		}
		certPEM, keyPEM, caPEM = c, k, []byte(des.CA.CertPEM)
		d.Log.Info("control: issued this node's database certificate", "addresses", des.CertIPs)
	}
	h := sha256.Sum256(bytes.Join([][]byte{caPEM, certPEM, keyPEM}, nil))
	return hex.EncodeToString(h[:8]), nil
}

// writeSecretFile replaces path atomically with a 0600 file owned by mysql.
func writeSecretFile(path string, data []byte) error {
	tmp := path + ".new"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := chownMySQL(tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

// ClientTLS is the TLS configuration a client of the control databases
// needs: the cluster's CA, and the server's address as its name.
func ClientTLS(caPEM, host string) (*tls.Config, error) {
	pool, err := CAPool(caPEM)
	if err != nil {
		return nil, fmt.Errorf("control CA: %w", err)
	}
	return &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}, nil
}
