package control

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/cloudctl/cloudctl/roles/driver"
)

// schema is the control role's part of the cluster database. The first
// update is the one cloudd shipped before roles became drivers (tables
// cloud_db_*); the second names them after the role and moves the role's
// settings out of the daemon's config table. Members' instance states are
// asked live (GET /1.0/control/local), so the status table goes.
func schema() []driver.SchemaUpdate {
	return []driver.SchemaUpdate{schemaTables, schemaOwnNames}
}

func schemaTables(ctx context.Context, tx *sql.Tx) error {
	const stmt = `
CREATE TABLE cloud_db_credentials (
  service     TEXT NOT NULL PRIMARY KEY,
  username    TEXT NOT NULL,
  password    TEXT NOT NULL,
  created_at  DATETIME NOT NULL
);
CREATE TABLE cloud_db_instances (
  name     TEXT NOT NULL PRIMARY KEY,
  formed   INTEGER NOT NULL DEFAULT 0,
  members  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE cloud_db_status (
  node          TEXT NOT NULL,
  instance      TEXT NOT NULL,
  state         TEXT NOT NULL,
  wsrep_status  TEXT NOT NULL,
  size          INTEGER NOT NULL,
  comment       TEXT NOT NULL,
  provisioned   INTEGER NOT NULL,
  updated_at    DATETIME NOT NULL,
  PRIMARY KEY (node, instance)
);
CREATE TABLE cloud_db_recovery (
  instance     TEXT NOT NULL,
  node         TEXT NOT NULL,
  uuid         TEXT NOT NULL,
  seqno        INTEGER NOT NULL,
  reported_at  DATETIME NOT NULL,
  PRIMARY KEY (instance, node)
);
`
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("create control tables: %w", err)
	}
	return nil
}

func schemaOwnNames(ctx context.Context, tx *sql.Tx) error {
	const stmt = `
ALTER TABLE cloud_db_credentials RENAME TO control_credentials;
ALTER TABLE cloud_db_instances RENAME TO control_instances;
DROP TABLE cloud_db_status;
ALTER TABLE cloud_db_recovery RENAME TO control_recovery;
CREATE TABLE control_config (
  key    TEXT NOT NULL PRIMARY KEY,
  value  TEXT NOT NULL
);
INSERT INTO control_config (key, value)
  SELECT key, value FROM cloud_config WHERE key IN ('mysql_admin_password', 'db_host');
DELETE FROM cloud_config WHERE key IN ('mysql_admin_password', 'db_host');
`
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("rename control tables: %w", err)
	}
	return nil
}
