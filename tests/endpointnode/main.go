// Command endpointnode is a test helper run inside a node's network
// namespace. "run SPEC" runs the floating endpoint driver (roles/endpoint)
// with the real keepalived and HAProxy against the cluster SPEC describes (a
// JSON file the test rewrites to change the plan; it is re-read when it
// changes), until SIGTERM. "serve ADDR NAME" is a stand-in backend: every
// connection is greeted with NAME. "dial ADDR N" opens N connections at once
// and prints each greeting (which backend it reached). "writers DSN N" opens
// N MySQL connections at once, writes a row on each and prints the Galera
// member (wsrep_node_name) each one landed on. It lets the driver be tested in
// namespaces without cloudd's reconcile loop.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/endpoint"
	"github.com/cloudctl/cloudctl/supervisor"
	"github.com/cloudctl/cloudctl/tests/dbtls"
)

// Spec is the cluster as the test describes it to one node.
type Spec struct {
	Local     string            `json:"local"`
	Nodes     []driver.Node     `json:"nodes"`
	Floating  string            `json:"floating"`
	Frontends []driver.Frontend `json:"frontends"`
	Dir       string            `json:"dir"`
	// DBFail makes the cluster database check fail (a member cut off).
	DBFail bool `json:"db_fail"`
}

type db struct {
	sql  *sql.DB
	fail bool
}

func (d *db) Transaction(ctx context.Context, f func(context.Context, *sql.Tx) error) error {
	if d.fail {
		return fmt.Errorf("no quorum (test)")
	}
	tx, err := d.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := f(ctx, tx); err != nil {
		return err
	}
	return tx.Commit()
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: endpointnode run SPEC | serve ADDR NAME")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = run(os.Args[2])
	case "serve":
		err = serve(os.Args[2], os.Args[3])
	case "dial":
		err = dial(os.Args[2], os.Args[3])
	case "writers":
		err = writers(os.Args[2], os.Args[3])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "endpointnode:", err)
		os.Exit(1)
	}
}

func serve(addr, name string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "%s\n", name)
			buf := make([]byte, 64)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
	}
}

func dial(addr, count string) error {
	n, err := strconv.Atoi(count)
	if err != nil {
		return err
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read greeting: %w", err)
		}
		fmt.Print(line)
	}
	return nil
}

func writers(dsn, count string) error {
	n, err := strconv.Atoi(count)
	if err != nil {
		return err
	}
	db, err := dbtls.Open(dsn, 2*time.Second, 5*time.Second)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS endpoint_writers (id BIGINT AUTO_INCREMENT PRIMARY KEY, node VARCHAR(64), at DATETIME(6))"); err != nil {
		return fmt.Errorf("create: %w", err)
	}
	// N connections open at the same time: N concurrent writers.
	conns := make([]*sql.Conn, n)
	for i := range conns {
		if conns[i], err = db.Conn(ctx); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		defer conns[i].Close()
	}
	for i, c := range conns {
		var node string
		if err := c.QueryRowContext(ctx, "SELECT @@wsrep_node_name").Scan(&node); err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		if _, err := c.ExecContext(ctx, "INSERT INTO endpoint_writers (node, at) VALUES (?, NOW(6))", node); err != nil {
			return fmt.Errorf("connection %d: write: %w", i, err)
		}
		fmt.Println(node)
	}
	return nil
}

func readSpec(path string) (Spec, error) {
	var s Spec
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

func run(specPath string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	m, err := manifests.Default()
	if err != nil {
		return err
	}
	s, err := readSpec(specPath)
	if err != nil {
		return err
	}
	sqldb, err := sql.Open("sqlite3", filepath.Join(s.Dir, "..", "cluster.sqlite"))
	if err != nil {
		return err
	}
	defer sqldb.Close()
	sup := supervisor.New(nil, log)
	defer sup.StopAll(30 * time.Second)
	d := endpoint.New()
	defer func() { _ = d.Stop(context.Background()) }()
	var last time.Time
	for {
		info, err := os.Stat(specPath)
		if err == nil && !info.ModTime().Equal(last) {
			last = info.ModTime()
			if s, err = readSpec(specPath); err != nil {
				log.Error("read spec", "error", err)
			}
		}
		env := &driver.Env{Manifest: m, Plan: api.Plan{FloatingAddress: s.Floating}, Nodes: s.Nodes, Dir: s.Dir, Sup: sup, Log: log,
			DB: &db{sql: sqldb, fail: s.DBFail}, Frontends: s.Frontends, Now: time.Now}
		for _, n := range s.Nodes {
			if n.Name == s.Local {
				env.Local = n
			}
		}
		if d.AppliesTo(env, env.Local) {
			if _, err := d.Converge(ctx, env, nil); err != nil {
				log.Error("converge", "error", err)
			}
		} else if err := d.Stop(ctx); err != nil {
			log.Error("stop", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(300 * time.Millisecond):
		}
	}
}
