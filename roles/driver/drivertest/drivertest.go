// Package drivertest holds fakes of the driver interface's edges for the
// role drivers' unit tests. Nothing outside tests imports it.
package drivertest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	_ "github.com/mattn/go-sqlite3" // the database/sql driver of DB
)

// DB is the cluster database of the unit tests (driver.DB): SQLite in a
// file of the test's temporary directory, over one connection, closed when
// the test ends.
type DB struct{ db *sql.DB }

// NewDB opens an empty DB for t.
func NewDB(t testing.TB) DB {
	t.Helper()
	db, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "cluster.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return DB{db: db}
}

// Transaction implements driver.DB: f's error rolls back.
func (d DB) Transaction(ctx context.Context, f func(context.Context, *sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// Peers answers other members' cluster API by node and path, as
// driver.Peers does (the answer goes through JSON); it takes no POST.
type Peers func(node, path string) (any, error)

// Get implements driver.Peers.
func (p Peers) Get(ctx context.Context, node, path string, out any) error {
	r, err := p(node, path)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// Post implements driver.Peers: no test using Peers expects one.
func (p Peers) Post(ctx context.Context, node, path string, in, out any) error {
	return fmt.Errorf("no POST %s on %s in this test", path, node)
}
