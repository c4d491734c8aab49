package control

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"time"

	"github.com/go-sql-driver/mysql"
)

// CheckResult is what CheckService found.
type CheckResult struct {
	Service  string        `json:"service"`
	Endpoint string        `json:"endpoint"`
	Rows     int64         `json:"rows"`
	Took     time.Duration `json:"took_ns"`
}

// CheckService connects with a service's own credentials to endpoint and
// writes and reads back one row in its database: the proof that the service
// can use it. It connects over TLS, verifying the server's certificate
// against the cluster's control CA (caPEM) and the endpoint's address, as a
// service's client would.
func CheckService(ctx context.Context, service, user, password, endpoint, database, caPEM string) (CheckResult, error) {
	res := CheckResult{Service: service, Endpoint: endpoint}
	host, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		return res, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	tc, err := ClientTLS(caPEM, host)
	if err != nil {
		return res, err
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, password, "tcp", endpoint, database
	cfg.TLS = tc
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 3*time.Second, 10*time.Second, 10*time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return res, fmt.Errorf("connector: %w", err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	start := time.Now()
	stmts := []string{
		"CREATE TABLE IF NOT EXISTS cloudctl_check (id BIGINT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6) NOT NULL)",
		"INSERT INTO cloudctl_check (at) VALUES (NOW(6))",
	}
	for _, q := range stmts {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return res, fmt.Errorf("%s as %s at %s: %w", service, user, endpoint, err)
		}
	}
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM cloudctl_check").Scan(&res.Rows); err != nil {
		return res, fmt.Errorf("%s: read back: %w", service, err)
	}
	res.Took = time.Since(start)
	return res, nil
}
