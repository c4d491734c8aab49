// Package cephclient is the small cross-role record through which the
// storage role hands another role a Ceph user of its own (the compute
// role's LXD `remote` pool): the user's name and key, the OSD pool its caps
// are limited to, the cluster's fsid and the monitors' addresses. The
// storage role creates the user in Ceph and writes the record; a client
// role reads it. Neither imports the other: this package and the cluster
// database are the seam. It links no Ceph library.
//
// The record lives in the cluster database table ceph_clients (created by
// the storage role's schema). Its key is stored sealed under the storage
// seal key (package seal), which only the nodes that run Ceph hold: a
// client role's node does not open it itself but asks a storage node for
// it over the cluster API (FetchKey, KeyPath), which answers only a member
// holding the role the user is for (RoleOf). A key is a secret: it is
// written only to 0600 files by the role that uses it, never on a command
// line or in a log.
package cephclient

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/seal"
)

// LXD is the Ceph user (client.lxd-remote) of the compute role's LXD
// `remote` pool.
const LXD = "lxd-remote"

// KeyPath is the storage role's endpoint that hands a client role's node
// the key of its user: GET /1.0/storage/client-key/{name}.
const KeyPath = "storage/client-key"

// KeyReply is what KeyPath answers: the user's key, opened.
type KeyReply struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// RoleOf is the role the user called name is for: only that role's nodes
// are handed its key. "" for a name no role uses.
func RoleOf(name string) roles.Role {
	if name == LXD {
		return roles.Compute
	}
	return ""
}

// SealRow names the key of the user called name for sealing (a sealed key
// opens only as that user's).
func SealRow(name string) string { return "ceph_client:" + name }

// ValidKey reports whether s is a cephx secret in Ceph's text form: the
// base64 of an AES key record (type 1, length 16).
func ValidKey(s string) bool {
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(b) == 28 && binary.LittleEndian.Uint16(b) == 1 && binary.LittleEndian.Uint16(b[10:]) == 16
}

// Client is one Ceph user handed to another role.
type Client struct {
	// Name is the Ceph user without "client." (LXD's ceph.user.name).
	Name string
	// Purpose is the manifest's pool purpose (storage.pools key, "instances").
	Purpose string
	// Pool is the OSD pool the user's caps are limited to.
	Pool string
	// Key is the cephx secret as stored: sealed under the storage seal
	// key (in the clear only from a version before sealing). FetchKey
	// gets a client role's node the opened key.
	Key  string
	FSID string
	// MonHost is Ceph's mon_host value: every monitor's address vector.
	MonHost   string
	UpdatedAt time.Time
}

// Entity is the user's Ceph entity name ("client.lxd-remote").
func (c Client) Entity() string { return "client." + c.Name }

// Caps are the user's caps: rbd on its pool only (not admin).
func Caps(pool string) map[string]string {
	return map[string]string{
		"mon": "profile rbd",
		"osd": "profile rbd pool=" + pool,
		"mgr": "profile rbd pool=" + pool,
	}
}

// Schema creates the record's table. The storage role appends it to its
// schema updates.
func Schema(ctx context.Context, tx *sql.Tx) error {
	const stmt = `
CREATE TABLE ceph_clients (
  name        TEXT     NOT NULL PRIMARY KEY,
  purpose     TEXT     NOT NULL,
  pool        TEXT     NOT NULL,
  key         TEXT     NOT NULL,
  fsid        TEXT     NOT NULL,
  mon_host    TEXT     NOT NULL,
  updated_at  DATETIME NOT NULL
);
`
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("create the ceph_clients table: %w", err)
	}
	return nil
}

// Put writes (or replaces) c's record.
func Put(ctx context.Context, db driver.DB, c Client) error {
	err := db.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO ceph_clients (name, purpose, pool, key, fsid, mon_host, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(name) DO UPDATE SET purpose = excluded.purpose, pool = excluded.pool, key = excluded.key,
  fsid = excluded.fsid, mon_host = excluded.mon_host, updated_at = excluded.updated_at`,
			c.Name, c.Purpose, c.Pool, c.Key, c.FSID, c.MonHost, c.UpdatedAt.UTC())
		return err
	})
	if err != nil {
		return fmt.Errorf("record the Ceph user %s: %w", c.Entity(), err)
	}
	return nil
}

// Delete removes the record of the user called name (nothing when there is none).
func Delete(ctx context.Context, db driver.DB, name string) error {
	err := db.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM ceph_clients WHERE name = ?`, name)
		return err
	})
	if err != nil && !strings.Contains(err.Error(), "no such table") {
		return fmt.Errorf("delete the record of the Ceph user %s: %w", "client."+name, err)
	}
	return nil
}

// Get reads the record of the user called name. found is false when the
// storage role has not written it (or runs nowhere: no table).
func Get(ctx context.Context, db driver.DB, name string) (c Client, found bool, err error) {
	err = db.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		row := tx.QueryRowContext(ctx, `SELECT name, purpose, pool, key, fsid, mon_host, updated_at FROM ceph_clients WHERE name = ?`, name)
		err := row.Scan(&c.Name, &c.Purpose, &c.Pool, &c.Key, &c.FSID, &c.MonHost, &c.UpdatedAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return err
		}
		found = true
		return nil
	})
	if err != nil {
		if strings.Contains(err.Error(), "no such table") {
			return Client{}, false, nil
		}
		return Client{}, false, fmt.Errorf("read the Ceph user %s: %w", "client."+name, err)
	}
	return c, found, nil
}

// SealKeys replaces in tx every key stored in the clear (by a version
// before sealing) with sealFn(name, key): the storage role's migration, in
// the transaction that records its seal key.
func SealKeys(ctx context.Context, tx *sql.Tx, sealFn func(name, key string) (string, error)) error {
	rows, err := tx.QueryContext(ctx, `SELECT name, key FROM ceph_clients`)
	if err != nil {
		return fmt.Errorf("read the Ceph users handed to other roles: %w", err)
	}
	clear := map[string]string{}
	for rows.Next() {
		var name, key string
		if err := rows.Scan(&name, &key); err != nil {
			rows.Close()
			return fmt.Errorf("read the Ceph users handed to other roles: %w", err)
		}
		if key != "" && !seal.IsSealed(key) {
			clear[name] = key
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the Ceph users handed to other roles: %w", err)
	}
	for name, key := range clear {
		sv, err := sealFn(name, key)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE ceph_clients SET key = ? WHERE name = ?`, sv, name); err != nil {
			return fmt.Errorf("seal the key of the Ceph user %s: %w", "client."+name, err)
		}
	}
	return nil
}

// FetchKey asks the nodes that may run Ceph (storage nodes first, then
// control nodes, which fill in monitors) for the opened key of the user
// called name, over the cluster API: the local node must hold the role the
// user is for. The first valid answer wins.
func FetchKey(ctx context.Context, env *driver.Env, name string) (string, error) {
	if env.Peers == nil {
		return "", fmt.Errorf("the key of client.%s is kept sealed and this node cannot reach the storage nodes to get it", name)
	}
	var tried []string
	seen := map[string]bool{}
	for _, r := range []roles.Role{roles.Storage, roles.Control} {
		for _, n := range env.WithRole(r) {
			if seen[n.Name] {
				continue
			}
			seen[n.Name] = true
			var rep KeyReply
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := env.Peers.Get(pctx, n.Name, KeyPath+"/"+name, &rep)
			cancel()
			switch {
			case err != nil:
				tried = append(tried, fmt.Sprintf("%s: %v", n.Name, err))
			case rep.Name != name || !ValidKey(rep.Key):
				tried = append(tried, n.Name+": not a cephx key of client."+name)
			default:
				return rep.Key, nil
			}
		}
	}
	if len(tried) == 0 {
		return "", fmt.Errorf("the key of client.%s is kept sealed and no member runs Ceph to hand it over", name)
	}
	return "", fmt.Errorf("get the key of client.%s from a storage node: %s", name, strings.Join(tried, "; "))
}

// Conf renders a client-only ceph.conf for c: no secret in it, the key is
// read from keyring (a 0600 file).
func (c Client) Conf(keyring string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by cloudd; changes are overwritten.\n[global]\nfsid = %s\nmon_host = %s\n", c.FSID, c.MonHost)
	b.WriteString("auth_cluster_required = cephx\nauth_service_required = cephx\nauth_client_required = cephx\n")
	fmt.Fprintf(&b, "\n[%s]\nkeyring = %s\n", c.Entity(), keyring)
	return b.String()
}

// Keyring renders c's keyring file (a secret: write it 0600).
func (c Client) Keyring() string {
	return fmt.Sprintf("[%s]\n\tkey = %s\n", c.Entity(), c.Key)
}
