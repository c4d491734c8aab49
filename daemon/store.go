package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/api"
)

// nodeRow is one row of cloud_nodes.
type nodeRow struct {
	Name     string
	Roles    []string
	Region   string
	Zone     string
	JoinedAt time.Time
	// Plan is the node's own plan (disks...), stored as JSON.
	Plan nodePlan
}

// nodePlan is the per-node part of the plan.
type nodePlan struct {
	Disks []api.DiskChoice `json:"disks,omitempty"`
}

func splitRoles(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

func getNodes(ctx context.Context, tx *sql.Tx) (map[string]nodeRow, error) {
	rows, err := tx.QueryContext(ctx, `SELECT name, roles, region, zone, joined_at, node_plan FROM cloud_nodes`)
	if err != nil {
		return nil, fmt.Errorf("read nodes: %w", err)
	}
	defer rows.Close()
	out := map[string]nodeRow{}
	for rows.Next() {
		var n nodeRow
		var roles, plan string
		if err := rows.Scan(&n.Name, &roles, &n.Region, &n.Zone, &n.JoinedAt, &plan); err != nil {
			return nil, fmt.Errorf("read node: %w", err)
		}
		n.Roles = splitRoles(roles)
		if err := json.Unmarshal([]byte(plan), &n.Plan); err != nil {
			return nil, fmt.Errorf("read plan of node %q: %w", n.Name, err)
		}
		out[n.Name] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read nodes: %w", err)
	}
	return out, nil
}

func getNode(ctx context.Context, tx *sql.Tx, name string) (*nodeRow, error) {
	var n nodeRow
	var roles, plan string
	err := tx.QueryRowContext(ctx, `SELECT name, roles, region, zone, joined_at, node_plan FROM cloud_nodes WHERE name = ?`, name).
		Scan(&n.Name, &roles, &n.Region, &n.Zone, &n.JoinedAt, &plan)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read node %q: %w", name, err)
	}
	n.Roles = splitRoles(roles)
	if err := json.Unmarshal([]byte(plan), &n.Plan); err != nil {
		return nil, fmt.Errorf("read plan of node %q: %w", name, err)
	}
	return &n, nil
}

func upsertNode(ctx context.Context, tx *sql.Tx, n nodeRow) error {
	plan, err := json.Marshal(n.Plan)
	if err != nil {
		return fmt.Errorf("encode plan of node %q: %w", n.Name, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO cloud_nodes (name, roles, region, zone, joined_at, node_plan) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT(name) DO UPDATE SET roles = excluded.roles, region = excluded.region, zone = excluded.zone, node_plan = excluded.node_plan`,
		n.Name, strings.Join(n.Roles, ","), n.Region, n.Zone, n.JoinedAt.UTC(), string(plan))
	if err != nil {
		return fmt.Errorf("record node %q: %w", n.Name, err)
	}
	return nil
}

func setConfig(ctx context.Context, tx *sql.Tx, key, value string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO cloud_config (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("write config %q: %w", key, err)
	}
	return nil
}

func getConfig(ctx context.Context, tx *sql.Tx, key string) (string, error) {
	var v string
	err := tx.QueryRowContext(ctx, `SELECT value FROM cloud_config WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read config %q: %w", key, err)
	}
	return v, nil
}

// tokenRow is one row of cloud_join_tokens.
type tokenRow struct {
	Name         string
	SecretSHA256 string
	State        string
	IssuedAt     time.Time
	ExpiresAt    time.Time
	UsedBy       string
}

func (t tokenRow) api() api.Token {
	return api.Token{Name: t.Name, State: t.State, IssuedAt: t.IssuedAt, ExpiresAt: t.ExpiresAt, UsedBy: t.UsedBy}
}

const tokenColumns = `name, secret_sha256, state, issued_at, expires_at, used_by`

func scanToken(sc interface{ Scan(...any) error }) (tokenRow, error) {
	var t tokenRow
	err := sc.Scan(&t.Name, &t.SecretSHA256, &t.State, &t.IssuedAt, &t.ExpiresAt, &t.UsedBy)
	return t, err
}

func getTokens(ctx context.Context, tx *sql.Tx) ([]tokenRow, error) {
	rows, err := tx.QueryContext(ctx, `SELECT `+tokenColumns+` FROM cloud_join_tokens ORDER BY issued_at`)
	if err != nil {
		return nil, fmt.Errorf("read join tokens: %w", err)
	}
	defer rows.Close()
	var out []tokenRow
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("read join token: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read join tokens: %w", err)
	}
	return out, nil
}

func getToken(ctx context.Context, tx *sql.Tx, name string) (*tokenRow, error) {
	t, err := scanToken(tx.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM cloud_join_tokens WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read join token %q: %w", name, err)
	}
	return &t, nil
}

func putToken(ctx context.Context, tx *sql.Tx, t tokenRow, now time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO cloud_join_tokens (name, secret_sha256, state, issued_at, expires_at, used_by, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(name) DO UPDATE SET secret_sha256 = excluded.secret_sha256, state = excluded.state, issued_at = excluded.issued_at,
  expires_at = excluded.expires_at, used_by = excluded.used_by, updated_at = excluded.updated_at`,
		t.Name, t.SecretSHA256, t.State, t.IssuedAt.UTC(), t.ExpiresAt.UTC(), t.UsedBy, now.UTC())
	if err != nil {
		return fmt.Errorf("record join token %q: %w", t.Name, err)
	}
	return nil
}

func setTokenState(ctx context.Context, tx *sql.Tx, name, state, usedBy string, now time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE cloud_join_tokens SET state = ?, used_by = ?, updated_at = ? WHERE name = ?`, state, usedBy, now.UTC(), name)
	if err != nil {
		return fmt.Errorf("update join token %q: %w", name, err)
	}
	return nil
}

// pruneTokens forgets finished tokens older than keep, so listings stay short
// while a recently used or expired token still gets a precise error.
func pruneTokens(ctx context.Context, tx *sql.Tx, now time.Time, keep time.Duration) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM cloud_join_tokens WHERE state != ? AND updated_at < ?`, api.TokenPending, now.Add(-keep).UTC())
	if err != nil {
		return fmt.Errorf("prune join tokens: %w", err)
	}
	// The redeemer of a token no longer listed (resumable) goes with it.
	_, err = tx.ExecContext(ctx, `DELETE FROM cloud_config WHERE key LIKE 'token-redeemer/%' AND substr(key, 16) NOT IN (SELECT name FROM cloud_join_tokens)`)
	if err != nil {
		return fmt.Errorf("prune join token redeemers: %w", err)
	}
	return nil
}
