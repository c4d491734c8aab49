package daemon

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/canonical/lxd/lxd/db/schema"
)

// schemaUpdates are cloudd's tables, applied by microcluster after its own.
// Append new updates; never edit a released one.
func schemaUpdates() []schema.Update {
	return []schema.Update{schemaV1, schemaV2, schemaV3}
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
