package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// schemaV1 holds the cluster-wide Ceph facts: the fsid and the secrets
// (storage_config), the monitors that form the monmap (storage_monitors)
// and every OSD with the node and plan entry it came from (storage_osds).
func schemaV1(ctx context.Context, tx *sql.Tx) error {
	const stmt = `
CREATE TABLE storage_config (
  key    TEXT NOT NULL PRIMARY KEY,
  value  TEXT NOT NULL
);
CREATE TABLE storage_monitors (
  node        TEXT     NOT NULL PRIMARY KEY,
  addr        TEXT     NOT NULL,
  created_at  DATETIME NOT NULL
);
CREATE TABLE storage_osds (
  id           INTEGER  NOT NULL PRIMARY KEY,
  node         TEXT     NOT NULL,
  path         TEXT     NOT NULL,
  slot         INTEGER  NOT NULL DEFAULT 0,
  uuid         TEXT     NOT NULL,
  file_backed  INTEGER  NOT NULL DEFAULT 0,
  size_bytes   INTEGER  NOT NULL DEFAULT 0,
  state        TEXT     NOT NULL,
  created_at   DATETIME NOT NULL,
  UNIQUE(node, path, slot)
);
`
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("create storage tables: %w", err)
	}
	return nil
}

// schemaV2 keeps the disks added after joining (`cloudctl storage disk
// add`), beside the ones the node's plan named.
func schemaV2(ctx context.Context, tx *sql.Tx) error {
	const stmt = `
CREATE TABLE storage_disks (
  id          INTEGER  PRIMARY KEY AUTOINCREMENT NOT NULL,
  node        TEXT     NOT NULL,
  path        TEXT     NOT NULL,
  wipe        INTEGER  NOT NULL DEFAULT 0,
  state       TEXT     NOT NULL DEFAULT 'wanted',
  created_at  DATETIME NOT NULL
);
`
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("create the storage disk table: %w", err)
	}
	return nil
}

// Keys of storage_config (and keySealID). The keys are stored sealed
// (seal.go).
const (
	keyFSID     = "fsid"
	keyMonKey   = "mon_key"
	keyAdminKey = "admin_key"
)

// OSD row states: a row is written before the OSD is made, so that an
// interrupted creation is found and cleaned up.
const (
	osdCreating = "creating"
	osdReady    = "ready"
	// osdDraining: the node is being removed and its OSDs drain (Guard).
	osdDraining = "draining"
	// osdRemoving: `storage disk remove` marked the OSD out; its node
	// purges it once every placement group is active+clean again.
	osdRemoving = "removing"
	// osdRemoved keeps the plan entry taken, so the OSD is not made again.
	osdRemoved = "removed"
)

// secrets are the cluster-wide Ceph facts: the fsid, and the mon. and
// client.admin keys.
type secrets struct {
	FSID, MonKey, AdminKey string
}

func (s secrets) ok() bool { return s.FSID != "" && s.MonKey != "" && s.AdminKey != "" }

// created reports whether the Ceph cluster's secrets exist.
func (s state) created() bool { return s.stored.ok() }

type monitorRow struct {
	Node    string
	Addr    string
	Created time.Time
}

type osdRow struct {
	ID         int
	Node       string
	Path       string
	Slot       int
	UUID       string
	FileBacked bool
	SizeBytes  int64
	State      string
}

// diskRow is a disk added after joining.
type diskRow struct {
	ID   int
	Node string
	Path string
	Wipe bool
}

// state is the storage tables as one read sees them.
type state struct {
	// Secrets holds the fsid, and the keys once opened (open, openHere):
	// in memory only.
	Secrets secrets
	// stored are the secrets as stored: the keys sealed (or in the clear,
	// from a version before sealing).
	stored secrets
	// SealID names the storage seal key the keys are sealed with; "" until
	// one is recorded.
	SealID   string
	Monitors []monitorRow
	OSDs     []osdRow
	Disks    []diskRow
}

// disksOf are node's OSD disks: its plan's, then those added later.
func (s state) disksOf(n driver.Node) []api.DiskChoice {
	out := append([]api.DiskChoice(nil), n.Disks...)
	for _, d := range s.Disks {
		if d.Node == n.Name {
			out = append(out, api.DiskChoice{Path: d.Path, Wipe: d.Wipe})
		}
	}
	return out
}

func (s state) monitor(node string) (monitorRow, bool) {
	for _, m := range s.Monitors {
		if m.Node == node {
			return m, true
		}
	}
	return monitorRow{}, false
}

// osdsOf are node's OSDs, the removed ones left out.
func (s state) osdsOf(node string) []osdRow {
	var out []osdRow
	for _, o := range s.OSDs {
		if o.Node == node && o.State != osdRemoved {
			out = append(out, o)
		}
	}
	return out
}

// hostsWithOSDs are the member nodes with at least one ready OSD.
func (s state) hostsWithOSDs(env *driver.Env) []string {
	var out []string
	for _, o := range s.OSDs {
		if o.State != osdReady && o.State != osdDraining {
			continue
		}
		if _, member := env.Node(o.Node); member && !contains(out, o.Node) {
			out = append(out, o.Node)
		}
	}
	return out
}

func readState(ctx context.Context, db driver.DB) (state, error) {
	var st state
	err := db.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		st = state{}
		rows, err := tx.QueryContext(ctx, `SELECT key, value FROM storage_config`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var k, v string
			if err := rows.Scan(&k, &v); err != nil {
				rows.Close()
				return err
			}
			switch k {
			case keyFSID:
				st.Secrets.FSID, st.stored.FSID = v, v
			case keyMonKey:
				st.stored.MonKey = v
			case keyAdminKey:
				st.stored.AdminKey = v
			case keySealID:
				st.SealID = v
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.QueryContext(ctx, `SELECT node, addr, created_at FROM storage_monitors ORDER BY created_at, node`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var m monitorRow
			if err := rows.Scan(&m.Node, &m.Addr, &m.Created); err != nil {
				rows.Close()
				return err
			}
			st.Monitors = append(st.Monitors, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.QueryContext(ctx, `SELECT id, node, path, wipe FROM storage_disks ORDER BY id`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var d diskRow
			if err := rows.Scan(&d.ID, &d.Node, &d.Path, &d.Wipe); err != nil {
				rows.Close()
				return err
			}
			st.Disks = append(st.Disks, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.QueryContext(ctx, `SELECT id, node, path, slot, uuid, file_backed, size_bytes, state FROM storage_osds ORDER BY id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var o osdRow
			if err := rows.Scan(&o.ID, &o.Node, &o.Path, &o.Slot, &o.UUID, &o.FileBacked, &o.SizeBytes, &o.State); err != nil {
				return err
			}
			st.OSDs = append(st.OSDs, o)
		}
		return rows.Err()
	})
	if err != nil {
		return state{}, fmt.Errorf("read the storage tables: %w", err)
	}
	return st, nil
}

func recordMonitor(ctx context.Context, db driver.DB, node, addr string, now time.Time) error {
	err := db.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO storage_monitors (node, addr, created_at) VALUES (?, ?, ?)
ON CONFLICT(node) DO UPDATE SET addr = excluded.addr`, node, addr, now.UTC())
		return err
	})
	if err != nil {
		return fmt.Errorf("record the monitor of %s: %w", node, err)
	}
	return nil
}

func deleteMonitor(ctx context.Context, db driver.DB, node string) error {
	err := db.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM storage_monitors WHERE node = ?`, node)
		return err
	})
	if err != nil {
		return fmt.Errorf("forget the monitor of %s: %w", node, err)
	}
	return nil
}

func recordOSD(ctx context.Context, db driver.DB, o osdRow, now time.Time) error {
	err := db.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO storage_osds (id, node, path, slot, uuid, file_backed, size_bytes, state, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, o.ID, o.Node, o.Path, o.Slot, o.UUID, o.FileBacked, o.SizeBytes, o.State, now.UTC())
		return err
	})
	if err != nil {
		return fmt.Errorf("record osd.%d of %s: %w", o.ID, o.Node, err)
	}
	return nil
}

func setOSDState(ctx context.Context, db driver.DB, id int, st string) error {
	err := db.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE storage_osds SET state = ? WHERE id = ?`, st, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("mark osd.%d %s: %w", id, st, err)
	}
	return nil
}

func deleteOSD(ctx context.Context, db driver.DB, id int) error {
	err := db.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM storage_osds WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return errNoRow
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNoRow) {
		return fmt.Errorf("forget osd.%d: %w", id, err)
	}
	return nil
}

var errNoRow = errors.New("no such row")

func addDisk(ctx context.Context, db driver.DB, node, path string, wipe bool, now time.Time) error {
	err := db.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO storage_disks (node, path, wipe, created_at) VALUES (?, ?, ?, ?)`, node, path, wipe, now.UTC())
		return err
	})
	if err != nil {
		return fmt.Errorf("record disk %s of %s: %w", path, node, err)
	}
	return nil
}
