package control

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/driver/drivertest"
)

// countingDB is a cluster database in a file that counts transactions.
type countingDB struct {
	db  drivertest.DB
	txs int
}

func (c *countingDB) Transaction(ctx context.Context, f func(context.Context, *sql.Tx) error) error {
	c.txs++
	return c.db.Transaction(ctx, f)
}

func testEnv(t *testing.T) (*driver.Env, *countingDB) {
	t.Helper()
	cdb := &countingDB{db: drivertest.NewDB(t)}
	err := cdb.Transaction(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE cloud_config (key TEXT PRIMARY KEY, value TEXT NOT NULL)`); err != nil {
			return err
		}
		for _, u := range schema() {
			if err := u(ctx, tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifests.Default()
	if err != nil {
		t.Fatal(err)
	}
	n1 := driver.Node{Name: "node1", IP: "10.0.0.1", Roles: []roles.Role{roles.Control}, JoinedAt: time.Unix(1, 0)}
	env := &driver.Env{Local: n1, Nodes: []driver.Node{n1}, Manifest: m, Plan: api.Plan{MySQLTopology: Single},
		DB: cdb, Now: time.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Dir: t.TempDir()}
	cdb.txs = 0
	return env, cdb
}

// Reading never writes; the converge path records secrets once, and a
// settled node writes nothing at all.
func TestReadPathsDoNotWrite(t *testing.T) {
	env, db := testEnv(t)
	v, err := readView(t.Context(), env)
	if err != nil {
		t.Fatal(err)
	}
	if v.AdminPassword != "" || len(v.Credentials) != 0 || v.DBHost != "" {
		t.Fatalf("a read created state: %+v", v)
	}
	d := New()
	l := d.Status(t.Context(), env)
	if l.Name != Name || !l.Built {
		t.Fatalf("layer %+v", l)
	}
	v, _ = readView(t.Context(), env)
	if len(v.Credentials) != 0 {
		t.Fatal("status created credentials")
	}
	k, err := New().secrets(t.Context(), env, &v)
	if err != nil {
		t.Fatal(err)
	}
	if err := ensureState(t.Context(), env, &v, k); err != nil {
		t.Fatal(err)
	}
	if v.AdminPassword == "" || len(v.Credentials) != len(env.Manifest.ControlPlane.Services) || v.DBHost != "node1" {
		t.Fatalf("ensureState recorded %+v", v)
	}
	pw := v.AdminPassword
	before := db.txs
	if err := ensureState(t.Context(), env, &v, k); err != nil {
		t.Fatal(err)
	}
	if db.txs != before {
		t.Fatal("ensureState wrote although nothing was missing")
	}
	v2, _ := readView(t.Context(), env)
	if v2.AdminPassword != "" {
		t.Fatal("readView opened the sealed admin password")
	}
	if err := v2.open(k); err != nil {
		t.Fatal(err)
	}
	if v2.AdminPassword != pw {
		t.Fatal("the admin password changed")
	}
	// A settled standalone instance: nothing to record.
	before = db.txs
	sts := []InstanceStatus{{Instance: "mysql", State: "running", Provisioned: true}}
	if err := record(t.Context(), env, v2, Desired{Host: true}, sts); err != nil {
		t.Fatal(err)
	}
	if db.txs != before {
		t.Fatal("a settled node wrote to the cluster database")
	}
	// Formation is recorded, once.
	sts[0].Formed, sts[0].WsrepStatus = true, "Primary"
	des := Desired{Host: true, Peers: []Peer{{Name: "node1"}, {Name: "node2"}, {Name: "node3"}}}
	if err := record(t.Context(), env, v2, des, sts); err != nil {
		t.Fatal(err)
	}
	v3, _ := readView(t.Context(), env)
	if !v3.Formed["mysql"] || len(v3.Members) != 3 {
		t.Fatalf("formation not recorded: %+v", v3)
	}
}

// The guard keeps the only copy of the databases.
func TestGuardOnlyCopy(t *testing.T) {
	env, _ := testEnv(t)
	v, _ := readView(t.Context(), env)
	d := New()
	k, err := d.secrets(t.Context(), env, &v)
	if err != nil {
		t.Fatal(err)
	}
	if err := ensureState(t.Context(), env, &v, k); err != nil {
		t.Fatal(err)
	}
	err = d.Guard(t.Context(), env, driver.Change{Kind: driver.RemoveRole, Node: "node1", Role: roles.Control})
	var uf driver.Unforceable
	if err == nil || !asUnforceable(err, &uf) {
		t.Fatalf("dropping the control role from the only copy: %v", err)
	}
	if err := d.Guard(t.Context(), env, driver.Change{Kind: driver.RemoveNode, Node: "node1"}); err == nil || asUnforceable(err, &uf) {
		t.Fatalf("removing the node with the only copy should be refused, forceably: %v", err)
	}
	if err := d.Guard(t.Context(), env, driver.Change{Kind: driver.RemoveRole, Node: "node1", Role: roles.Compute}); err != nil {
		t.Fatalf("another role: %v", err)
	}
}

func asUnforceable(err error, uf *driver.Unforceable) bool {
	u, ok := err.(driver.Unforceable)
	if ok {
		*uf = u
	}
	return ok
}
