package daemon

import (
	"context"
	"database/sql"
	"fmt"
)

// The join secret's name. microcluster's join endpoint (POST
// /core/1.0/cluster, this pinned version) looks the joiner's secret up,
// inserts the joiner as a member under the name the joiner presents and
// deletes the secret's record by the secret's own name, all in one
// transaction of the cluster database, and hands out the cluster key only
// after it commits. It never compares the two names, and it has no hook that
// runs before its answer. cloudd closes that in the database itself: two
// triggers make that transaction fail unless the name being inserted is the
// name the secret was made for (by redeemToken, for the name the cloudctl
// token is bound to).
//
//   - cloud_join_member: a member inserted into a cluster that already has
//     one (every join; the bootstrap inserts the first) must have a
//     microcluster secret recorded under its own name, and is noted in
//     cloud_join_pending for the rest of the transaction.
//   - cloud_join_secret: while a member insert is pending, the only secret
//     record that may be deleted is the one of that member's name: the
//     join deletes the record of the secret it was given, so a secret made
//     for node2 presented with the name node3 aborts the join. The note is
//     cleared with the delete, so the table is empty between transactions.
//
// A refused join changes nothing (the whole transaction rolls back): the
// secret stays usable, for its own name only, until the token sweep
// withdraws it.
const joinBindingSQL = `
CREATE TABLE IF NOT EXISTS cloud_join_pending (name TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS cloud_join_member BEFORE INSERT ON internal_cluster_members
WHEN (SELECT count(*) FROM internal_cluster_members) > 0
BEGIN
  SELECT RAISE(ABORT, 'cloudd refuses the join: this join secret was issued for another node name')
  WHERE NOT EXISTS (SELECT 1 FROM internal_token_records WHERE name = NEW.name);
  INSERT INTO cloud_join_pending (name) VALUES (NEW.name);
END;
CREATE TRIGGER IF NOT EXISTS cloud_join_secret BEFORE DELETE ON internal_token_records
WHEN EXISTS (SELECT 1 FROM cloud_join_pending)
BEGIN
  SELECT RAISE(ABORT, 'cloudd refuses the join: this join secret was issued for another node name')
  WHERE NOT EXISTS (SELECT 1 FROM cloud_join_pending WHERE name = OLD.name);
  DELETE FROM cloud_join_pending;
END;
`

// ensureJoinBinding creates the triggers above if they do not exist yet.
// redeemToken calls it in the transaction that makes a microcluster secret,
// so no secret cloudd hands out is ever usable without them.
func ensureJoinBinding(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, joinBindingSQL); err != nil {
		return fmt.Errorf("create the join name binding: %w", err)
	}
	return nil
}
