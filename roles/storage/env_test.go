package storage

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/driver/drivertest"
	"github.com/cloudctl/cloudctl/supervisor"
)

// newDB is a unit test's cluster database with the storage role's schema.
func newDB(t testing.TB) drivertest.DB {
	t.Helper()
	s := drivertest.NewDB(t)
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
