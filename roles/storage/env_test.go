package storage

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/supervisor"
)

// sqliteDB is the cluster database of the unit tests: SQLite in a file.
type sqliteDB struct{ db *sql.DB }

func (s sqliteDB) Transaction(ctx context.Context, f func(context.Context, *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := f(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func newDB(t testing.TB) sqliteDB {
	t.Helper()
	db, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "cluster.db")+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	s := sqliteDB{db: db}
	for _, u := range New().Schema() {
		if err := s.Transaction(context.Background(), func(ctx context.Context, tx *sql.Tx) error { return u(ctx, tx) }); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func testEnv(t testing.TB, log *slog.Logger, local driver.Node, nodes ...driver.Node) *driver.Env {
	t.Helper()
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if len(nodes) == 0 {
		nodes = []driver.Node{local}
	}
	m, err := manifests.Default()
	if err != nil {
		t.Fatal(err)
	}
	return &driver.Env{Local: local, Nodes: nodes, Manifest: m, Dir: t.TempDir(),
		Sup: supervisor.New(nil, log), Log: log, DB: newDB(t), Now: time.Now}
}
