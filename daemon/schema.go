package daemon

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/canonical/lxd/lxd/db/schema"

	"github.com/cloudctl/cloudctl/roles/driver"
)

// schemaUpdates are cloudd's own tables, then each driver's in the order
// cmd/cloudd lists them, applied by microcluster after its own. Append new
// updates (and new drivers at the end of the list); never edit, remove or
// reorder a released one. The control role's first update was cloudd's third.
func schemaUpdates(drivers []driver.Driver) []schema.Update {
	out := []schema.Update{schemaV1, schemaV2}
	for _, d := range drivers {
		for _, u := range d.Schema() {
			out = append(out, schema.Update(u))
		}
	}
	return out
}

// schemaV2 keeps each node's own plan (disks, and what later drivers need).
func schemaV2(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `ALTER TABLE cloud_nodes ADD COLUMN node_plan TEXT NOT NULL DEFAULT '{}'`); err != nil {
		return fmt.Errorf("add node plan column: %w", err)
	}
	return nil
}

func schemaV1(ctx context.Context, tx *sql.Tx) error {
	const stmt = `
CREATE TABLE cloud_nodes (
  id         INTEGER  PRIMARY KEY AUTOINCREMENT NOT NULL,
  name       TEXT     NOT NULL,
  roles      TEXT     NOT NULL DEFAULT '',
  region     TEXT     NOT NULL DEFAULT '',
  zone       TEXT     NOT NULL DEFAULT '',
  joined_at  DATETIME NOT NULL,
  UNIQUE(name)
);
CREATE TABLE cloud_config (
  key    TEXT NOT NULL PRIMARY KEY,
  value  TEXT NOT NULL
);
CREATE TABLE cloud_join_tokens (
  id             INTEGER  PRIMARY KEY AUTOINCREMENT NOT NULL,
  name           TEXT     NOT NULL,
  secret_sha256  TEXT     NOT NULL,
  state          TEXT     NOT NULL,
  issued_at      DATETIME NOT NULL,
  expires_at     DATETIME NOT NULL,
  used_by        TEXT     NOT NULL DEFAULT '',
  updated_at     DATETIME NOT NULL,
  UNIQUE(name)
);
`
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("create cloudd tables: %w", err)
	}
	return nil
}
