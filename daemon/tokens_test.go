package daemon

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/canonical/microcluster/cluster"
	_ "github.com/mattn/go-sqlite3"

	"github.com/cloudctl/cloudctl/api"
)

// tokenDB is a SQLite database (dqlite speaks SQLite) with microcluster's two
// tables the token code reads, cloudd's own tables and the join binding, and
// microcluster's statements prepared against it.
func tokenDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", filepath.Join(t.TempDir(), "cluster.db"))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	ctx := context.Background()
	// The columns of the pinned microcluster's statements.
	if _, err := db.ExecContext(ctx, `
CREATE TABLE internal_token_records (
  id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, name TEXT NOT NULL, secret TEXT NOT NULL, UNIQUE(name), UNIQUE(secret));
CREATE TABLE internal_cluster_members (
  id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, name TEXT NOT NULL, address TEXT NOT NULL, certificate TEXT NOT NULL,
  schema_internal INTEGER NOT NULL DEFAULT 0, schema_external INTEGER NOT NULL DEFAULT 0, api_extensions TEXT NOT NULL DEFAULT '[]',
  heartbeat DATETIME NOT NULL DEFAULT 0, role TEXT NOT NULL DEFAULT 'voter', UNIQUE(name), UNIQUE(certificate));`); err != nil {
		t.Fatal(err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []func(context.Context, *sql.Tx) error{schemaV1, schemaV2, ensureJoinBinding} {
		if err := u(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	// Statements on tables this database lacks fail to prepare and are
	// skipped; the token code uses none of them.
	if err := cluster.PrepareStmts(db, "cloudctl-test", true); err != nil {
		t.Fatal(err)
	}
	return db
}

func inTx(t *testing.T, db *sql.DB, f func(ctx context.Context, tx *sql.Tx) error) error {
	t.Helper()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f(ctx, tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func mustTx(t *testing.T, db *sql.DB, f func(ctx context.Context, tx *sql.Tx) error) {
	t.Helper()
	if err := inTx(t, db, f); err != nil {
		t.Fatal(err)
	}
}

func exec(q string, args ...any) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
}

// The first member, as a bootstrap leaves it.
const addFirst = `INSERT INTO internal_cluster_members (name, address, certificate) VALUES ('node1', '10.0.0.1:7443', 'c1')`

// A join as microcluster's endpoint does it: the member inserted under the
// joiner's name, the secret's record deleted by its own name, one
// transaction.
func join(member, secretName string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO internal_cluster_members (name, address, certificate) VALUES (?, ?, ?)`,
			member, "10.0.0.9:7443", "cert-"+member); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM internal_token_records WHERE name = ?`, secretName)
		return err
	}
}

// TestJoinBinding: the triggers refuse a join under a name the secret was not
// made for, change nothing when they do, and let the right name join.
func TestJoinBinding(t *testing.T) {
	db := tokenDB(t)
	mustTx(t, db, exec(addFirst))
	mustTx(t, db, exec(`INSERT INTO internal_token_records (name, secret) VALUES ('node2', 's2')`))

	err := inTx(t, db, join("node3", "node2"))
	if err == nil || !strings.Contains(err.Error(), "issued for another node name") {
		t.Fatalf("a secret for node2 used by node3: got %v, want the binding's refusal", err)
	}
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		for _, name := range []string{"node2", "node3"} {
			if ok, err := cluster.InternalClusterMemberExists(ctx, tx, name); err != nil || ok {
				t.Errorf("member %s after the refused join: %v, %v", name, ok, err)
			}
		}
		if ok, err := internalTokenExists(ctx, tx, "node2"); err != nil || !ok {
			t.Errorf("node2's secret after the refused join: %v, %v; want it kept", ok, err)
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM cloud_join_pending`).Scan(&n); err != nil || n != 0 {
			t.Errorf("cloud_join_pending after the refused join: %d rows, %v", n, err)
		}
		return nil
	})

	// A member whose name has no secret at all.
	if err := inTx(t, db, exec(`INSERT INTO internal_cluster_members (name, address, certificate) VALUES ('node4', 'a', 'c4')`)); err == nil {
		t.Fatal("a member with no secret of its name was inserted")
	}

	mustTx(t, db, join("node2", "node2"))
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		if ok, err := cluster.InternalClusterMemberExists(ctx, tx, "node2"); err != nil || !ok {
			t.Errorf("node2 after its own join: %v, %v", ok, err)
		}
		if ok, err := internalTokenExists(ctx, tx, "node2"); err != nil || ok {
			t.Errorf("node2's secret after its join: %v, %v; want it spent", ok, err)
		}
		return nil
	})

	// Between joins the note table is empty, so deleting a secret (the
	// sweep withdrawing it) is allowed.
	mustTx(t, db, exec(`INSERT INTO internal_token_records (name, secret) VALUES ('node5', 's5')`))
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error { return deleteInternalToken(ctx, tx, "node5") })
}

// TestTokenGiveBack: a redeemed token whose join never came is pending again
// (or expired, once its time ran out) when its secret is withdrawn; a token
// its node joined with, or one spent under another name, stays used; the
// check tells a redeemed-but-unfinished token's retry time only while the
// give-back is still ahead of its expiry.
func TestTokenGiveBack(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	sum := api.SecretSHA256("secret-of-")

	put := func(name, usedBy string, expires time.Time, redeemed time.Time) func(context.Context, *sql.Tx) error {
		return func(ctx context.Context, tx *sql.Tx) error {
			row := tokenRow{Name: name, SecretSHA256: sum + name, State: api.TokenUsed, IssuedAt: t0, ExpiresAt: expires, UsedBy: usedBy}
			return putToken(ctx, tx, row, redeemed)
		}
	}
	get := func(t *testing.T, db *sql.DB, name string) tokenRow {
		t.Helper()
		var r *tokenRow
		mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			r, err = getToken(ctx, tx, name)
			return err
		})
		if r == nil {
			t.Fatalf("token %s is gone", name)
		}
		return *r
	}
	judge := func(t *testing.T, db *sql.DB, name string, now time.Time) api.TokenCheckResult {
		t.Helper()
		var res api.TokenCheckResult
		mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			res, err = judgeToken(ctx, tx, name, sum+name, "", now)
			return err
		})
		return res
	}
	back := func(t *testing.T, db *sql.DB, name string, now time.Time) bool {
		t.Helper()
		var pending bool
		r := get(t, db, name)
		mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			pending, err = giveBack(ctx, tx, r, now)
			return err
		})
		return pending
	}

	t.Run("an unfinished join: retry time, then pending again", func(t *testing.T) {
		db := tokenDB(t)
		mustTx(t, db, exec(addFirst))
		redeemed := t0.Add(time.Minute)
		mustTx(t, db, put("node2", "node2", t0.Add(time.Hour), redeemed))
		mustTx(t, db, exec(`INSERT INTO internal_token_records (name, secret) VALUES ('node2', 'mc2')`))

		res := judge(t, db, "node2", redeemed.Add(time.Second))
		want := redeemed.Add(redeemWindow + giveBackSlack)
		if res.Valid || res.Reason != "used" || !res.RetryAt.Equal(want) {
			t.Fatalf("check while the join is unfinished: %+v; want used, retry at %s", res, want)
		}

		// The sweep withdraws the secret, then gives the token back.
		now := redeemed.Add(redeemWindow)
		mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error { return deleteInternalToken(ctx, tx, "node2") })
		if res := judge(t, db, "node2", now); !res.RetryAt.IsZero() {
			t.Errorf("retry time with no live secret: %+v", res)
		}
		if !back(t, db, "node2", now) {
			t.Fatal("giveBack did not return the token")
		}
		r := get(t, db, "node2")
		if r.State != api.TokenPending || r.UsedBy != "" {
			t.Fatalf("after the give-back: state %q used by %q; want pending, nobody", r.State, r.UsedBy)
		}
		if res := judge(t, db, "node2", now); !res.Valid {
			t.Fatalf("the given-back token does not check: %+v", res)
		}
	})

	t.Run("expired meanwhile: expired, no retry time", func(t *testing.T) {
		db := tokenDB(t)
		mustTx(t, db, exec(addFirst))
		redeemed := t0.Add(time.Minute)
		expires := redeemed.Add(redeemWindow) // before the give-back
		mustTx(t, db, put("node2", "node2", expires, redeemed))
		mustTx(t, db, exec(`INSERT INTO internal_token_records (name, secret) VALUES ('node2', 'mc2')`))
		if res := judge(t, db, "node2", redeemed); res.Reason != "used" || !res.RetryAt.IsZero() {
			t.Fatalf("check of a token that expires before its give-back: %+v; want used, no retry time", res)
		}
		if back(t, db, "node2", expires.Add(time.Second)) {
			t.Fatal("an expired token was made pending")
		}
		if r := get(t, db, "node2"); r.State != api.TokenExpired {
			t.Fatalf("state %q; want expired", r.State)
		}
	})

	t.Run("the node joined: stays used", func(t *testing.T) {
		db := tokenDB(t)
		mustTx(t, db, exec(addFirst))
		mustTx(t, db, put("node2", "node2", t0.Add(time.Hour), t0))
		mustTx(t, db, exec(`INSERT INTO internal_token_records (name, secret) VALUES ('node2', 'mc2')`))
		mustTx(t, db, join("node2", "node2"))
		if res := judge(t, db, "node2", t0); res.Reason != "used" || res.UsedBy != "node2" || !res.RetryAt.IsZero() {
			t.Fatalf("check after the join: %+v; want used by node2, no retry time", res)
		}
		if back(t, db, "node2", t0.Add(redeemWindow)) {
			t.Fatal("a token its node joined with was given back")
		}
		if r := get(t, db, "node2"); r.State != api.TokenUsed || r.UsedBy != "node2" {
			t.Fatalf("state %q used by %q; want used by node2", r.State, r.UsedBy)
		}
	})

	t.Run("spent under another name: stays used", func(t *testing.T) {
		db := tokenDB(t)
		mustTx(t, db, exec(addFirst))
		// A token recorded as used by a member of another name (a sweep that
		// saw an old-style join): nothing to give back.
		mustTx(t, db, put("node2", "node7", t0.Add(time.Hour), t0))
		if back(t, db, "node2", t0.Add(redeemWindow)) {
			t.Fatal("a token used by another name was given back")
		}
		if r := get(t, db, "node2"); r.State != api.TokenUsed {
			t.Fatalf("state %q; want used", r.State)
		}
	})
}

// halfJoinedDB is a cluster database where node1 (in role node1Role) was
// joined by node2 with a token of its own name, redeemed at t0 (secret
// SHA-256 sum), and microcluster's join left node2 pending with the secret
// spent: a join that died midway.
func halfJoinedDB(t *testing.T, t0 time.Time, sum, node1Role string) *sql.DB {
	t.Helper()
	db := tokenDB(t)
	mustTx(t, db, exec(`INSERT INTO internal_cluster_members (name, address, certificate, role) VALUES ('node1', '10.0.0.1:7443', 'c1', ?)`, node1Role))
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		return putToken(ctx, tx, tokenRow{Name: "node2", SecretSHA256: sum, State: api.TokenUsed, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour), UsedBy: "node2"}, t0)
	})
	mustTx(t, db, exec(`INSERT INTO internal_token_records (name, secret) VALUES ('node2', 'mc2')`))
	// microcluster's join: the member pending, the secret spent.
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO internal_cluster_members (name, address, certificate, role) VALUES ('node2', '10.0.0.2:7443', 'c2', 'PENDING')`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM internal_token_records WHERE name = 'node2'`)
		return err
	})
	return db
}

// listHalfJoins is halfJoins at now, in its own transaction.
func listHalfJoins(t *testing.T, db *sql.DB, now time.Time) (due []halfJoin, waiting int) {
	t.Helper()
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		due, waiting, err = halfJoins(ctx, tx, now)
		return err
	})
	return due, waiting
}

// TestTokenResumed: the node that redeemed a token (the certificate it
// presented) may redeem it again while its join has not reached the
// cluster; any other holder of the token, and the same node once the
// member exists, once its one-join secret was spent (a member that joined
// and was removed by force, its node keeping its certificate) or once the
// token expired, gets the answer of a used token.
func TestTokenResumed(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	sum := api.SecretSHA256("secret-of-node2")
	redeemed := t0.Add(time.Minute)
	expires := t0.Add(time.Hour)
	db := tokenDB(t)
	mustTx(t, db, exec(addFirst))
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		row := tokenRow{Name: "node2", SecretSHA256: sum, State: api.TokenUsed, IssuedAt: t0, ExpiresAt: expires, UsedBy: "node2"}
		if err := putToken(ctx, tx, row, redeemed); err != nil {
			return err
		}
		return setConfig(ctx, tx, redeemerKey("node2"), "fp-of-node2")
	})
	mustTx(t, db, exec(`INSERT INTO internal_token_records (name, secret) VALUES ('node2', 'mc2')`))
	judge := func(joiner string, now time.Time) api.TokenCheckResult {
		t.Helper()
		var res api.TokenCheckResult
		mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			res, err = judgeToken(ctx, tx, "node2", sum, joiner, now)
			return err
		})
		return res
	}
	now := redeemed.Add(5 * time.Second)
	if res := judge("fp-of-node2", now); !res.Valid || !res.Resumed || res.Reason != "ok" {
		t.Fatalf("the redeeming node: %+v; want valid, resumed", res)
	}
	for _, other := range []string{"", "fp-of-another"} {
		if res := judge(other, now); res.Valid || res.Resumed || res.Reason != "used" || res.RetryAt.IsZero() {
			t.Fatalf("joiner %q: %+v; want used, with a retry time", other, res)
		}
	}
	if res := judge("fp-of-node2", expires); res.Valid || res.Resumed {
		t.Fatalf("the redeeming node after the expiry: %+v; want refused", res)
	}
	mustTx(t, db, exec(`INSERT INTO internal_cluster_members (name, address, certificate, role) VALUES ('node2', '10.0.0.2:7443', 'c2', 'pending')`))
	if res := judge("fp-of-node2", now); res.Valid || res.Resumed || res.Reason != "used" {
		t.Fatalf("the redeeming node once its member exists: %+v; want used", res)
	}
	// The join went through (the secret spent with the member's insertion)
	// and the member was removed by force later: spent for good.
	mustTx(t, db, exec(`DELETE FROM internal_token_records WHERE name = 'node2'`))
	mustTx(t, db, exec(`DELETE FROM internal_cluster_members WHERE name = 'node2'`))
	if res := judge("fp-of-node2", now); res.Valid || res.Resumed || res.Reason != "used" {
		t.Fatalf("the redeeming node after its member was removed: %+v; want used", res)
	}
	// Pruned with its token.
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		return pruneTokens(ctx, tx, redeemed.Add(tokenHistory+time.Minute), tokenHistory)
	})
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		if by, err := getConfig(ctx, tx, redeemerKey("node2")); err != nil || by != "" {
			return fmt.Errorf("redeemer left after the token was pruned: %q, %v", by, err)
		}
		return nil
	})
}

// TestHalfJoins: a member left pending by a join that died, its token spent
// under its own name, is waited for, then listed for release; the check of
// its token says when it comes back; once the member is removed the token
// is pending again. The first member (pending, no token) and a member
// that joined are never listed.
func TestHalfJoins(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	sum := api.SecretSHA256("secret-of-node2")
	// The first member is pending too until the first heartbeat.
	db := halfJoinedDB(t, t0, sum, "PENDING")
	list := func(now time.Time) ([]halfJoin, int) { return listHalfJoins(t, db, now) }
	judge := func(now time.Time) api.TokenCheckResult {
		t.Helper()
		var res api.TokenCheckResult
		mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
			var err error
			res, err = judgeToken(ctx, tx, "node2", sum, "", now)
			return err
		})
		return res
	}

	// Recorded by its postJoin: a member whose role the next heartbeat
	// sets, never a join that died.
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		return upsertNode(ctx, tx, nodeRow{Name: "node2", Roles: []string{"control"}, JoinedAt: t0})
	})
	if due, waiting := list(t0.Add(time.Hour)); len(due) != 0 || waiting != 0 {
		t.Fatalf("with node2 recorded: due %v, waiting %d; want none", due, waiting)
	}
	if res := judge(t0.Add(10 * time.Second)); res.Reason != "used" || !res.RetryAt.IsZero() {
		t.Fatalf("check of the token of a recorded member: %+v; want used, no retry time", res)
	}
	mustTx(t, db, exec(`DELETE FROM cloud_nodes WHERE name = 'node2'`))

	if due, waiting := list(t0.Add(10 * time.Second)); len(due) != 0 || waiting != 1 {
		t.Fatalf("10 s after the redemption: due %v, waiting %d; want none due, one waiting", due, waiting)
	}
	want := t0.Add(halfJoinGrace + giveBackSlack)
	if res := judge(t0.Add(10 * time.Second)); res.Valid || res.Reason != "used" || res.UsedBy != "node2" || !res.RetryAt.Equal(want) {
		t.Fatalf("check of the spent token: %+v; want used by node2, back at %s", res, want)
	}
	due, waiting := list(t0.Add(halfJoinGrace))
	if waiting != 0 || len(due) != 1 || due[0] != (halfJoin{Name: "node2", Address: "10.0.0.2:7443"}) {
		t.Fatalf("after the grace: due %v, waiting %d; want node2 due", due, waiting)
	}

	// Released: the member goes, the token comes back.
	mustTx(t, db, exec(`DELETE FROM internal_cluster_members WHERE name = 'node2'`))
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		r, err := getToken(ctx, tx, "node2")
		if err != nil {
			return err
		}
		back, err := giveBack(ctx, tx, *r, t0.Add(halfJoinGrace))
		if err == nil && !back {
			t.Error("the token of the released member was not given back")
		}
		return err
	})
	if res := judge(t0.Add(halfJoinGrace)); !res.Valid {
		t.Fatalf("the given-back token does not check: %+v", res)
	}

	// A member the heartbeat has given its role is never listed.
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		return putToken(ctx, tx, tokenRow{Name: "node3", SecretSHA256: sum + "3", State: api.TokenUsed, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour), UsedBy: "node3"}, t0)
	})
	mustTx(t, db, exec(`INSERT INTO internal_token_records (name, secret) VALUES ('node3', 'mc3')`))
	mustTx(t, db, join("node3", "node3"))
	if due, waiting := list(t0.Add(time.Hour)); len(due) != 0 || waiting != 0 {
		t.Fatalf("with node3 a voter: due %v, waiting %d; want none", due, waiting)
	}
}

// Revoking the token of a join that died midway keeps the token revoked and
// still lets the sweep release the member it left pending.
func TestHalfJoinRevoked(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	sum := api.SecretSHA256("secret-of-node2")
	db := halfJoinedDB(t, t0, sum, "voter")
	revokedAt := t0.Add(20 * time.Second)
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		return revokeTokenTx(ctx, tx, "node2", revokedAt)
	})
	list := func(now time.Time) ([]halfJoin, int) { return listHalfJoins(t, db, now) }
	var res api.TokenCheckResult
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		res, err = judgeToken(ctx, tx, "node2", sum, "", revokedAt)
		return err
	})
	if res.Valid || res.Reason != "revoked" {
		t.Fatalf("check of the revoked token: %+v; want revoked", res)
	}
	if due, waiting := list(revokedAt.Add(halfJoinGrace - time.Second)); len(due) != 0 || waiting != 1 {
		t.Fatalf("before the grace: due %v, waiting %d; want node2 waiting", due, waiting)
	}
	if due, _ := list(revokedAt.Add(halfJoinGrace)); len(due) != 1 || due[0].Name != "node2" {
		t.Fatalf("after the grace: due %v; want node2, still released after the revoke", due)
	}
	// Released: the member goes, the token stays revoked.
	mustTx(t, db, exec(`DELETE FROM internal_cluster_members WHERE name = 'node2'`))
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		r, err := getToken(ctx, tx, "node2")
		if err != nil {
			return err
		}
		back, err := giveBack(ctx, tx, *r, revokedAt.Add(halfJoinGrace))
		if err == nil && back {
			t.Error("a revoked token was given back")
		}
		if r.State != api.TokenRevoked {
			t.Errorf("token state %s; want revoked", r.State)
		}
		return err
	})
	// A pending token revoked carries no redeemer.
	mustTx(t, db, func(ctx context.Context, tx *sql.Tx) error {
		if err := putToken(ctx, tx, tokenRow{Name: "node3", SecretSHA256: sum + "3", State: api.TokenPending, IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}, t0); err != nil {
			return err
		}
		if err := revokeTokenTx(ctx, tx, "node3", revokedAt); err != nil {
			return err
		}
		r, err := getToken(ctx, tx, "node3")
		if err == nil && (r.State != api.TokenRevoked || r.UsedBy != "") {
			t.Errorf("revoked pending token: %+v", r)
		}
		return err
	})
}
