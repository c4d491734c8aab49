// Package dbtls opens the control databases from the test helpers (dbwriter,
// endpointnode) over TLS, the way a service's client does with the answer of
// `cloudctl database credentials`: the DSN's tls=cloudctl names a TLS
// configuration trusting the cluster's CA. The helpers take the CA as a file
// named by a cafile=PATH parameter of the DSN (removed before the driver sees
// the DSN); a DSN without it connects without TLS.
package dbtls

import (
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Open opens dsn with the helpers' timeouts, over TLS when it names a cafile.
func Open(dsn string, timeout, rw time.Duration) (*sql.DB, error) {
	base, query, _ := strings.Cut(dsn, "?")
	vals, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("dsn parameters: %w", err)
	}
	caFile := vals.Get("cafile")
	vals.Del("cafile")
	if caFile != "" {
		vals.Del("tls")
	}
	if len(vals) > 0 {
		base += "?" + vals.Encode()
	}
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = timeout, rw, rw
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", caFile)
		}
		host, _, err := net.SplitHostPort(cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("dsn address: %w", err)
		}
		cfg.TLS = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("connector: %w", err)
	}
	return sql.OpenDB(conn), nil
}
