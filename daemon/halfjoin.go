package daemon

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	lxdapi "github.com/canonical/lxd/shared/api"
	"github.com/canonical/microcluster/cluster"
	mctypes "github.com/canonical/microcluster/rest/types"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
)

// The cluster's side of a join that died midway. microcluster's join
// endpoint records the joiner as a PENDING member and spends its secret in
// one transaction; the joiner then writes the cluster's certificate and
// trust store and joins the cluster database. A joiner killed in between
// (cloudd killed, the power cut) leaves a member that never comes: listed
// as pending, its name taken, its token spent. The token sweep on the
// dqlite leader gives such a member up once its token was redeemed more
// than halfJoinGrace ago and the cluster database has no node at its
// address: it drops the member's certificate from the trust stores, then
// removes the member and gives the token back (pending again, or expired
// if its time is up) in one transaction, so the same `cloudctl cluster
// join` works. The joiner clears its own half-made state when its cloudd
// starts again (clearInterruptedJoin).

// halfJoinGrace is how long after its token was redeemed a member may stay
// pending without a node in the cluster database. A live join spends its
// secret at once and is added to the database within seconds (go-dqlite
// retries each second); microcluster gives up on it 30 s after its
// database began joining and rolls the join back. A joiner still without a
// node after this, members' clocks 5 s apart at most, is dead.
const halfJoinGrace = 75 * time.Second

// halfJoin is a pending member whose join died.
type halfJoin struct {
	Name, Address string
}

// halfJoins lists, inside tx, the pending members whose token (issued for
// their name, redeemed by them, its microcluster secret spent) was redeemed
// at least halfJoinGrace before now: candidates, still to be checked against
// the cluster database's nodes. waiting counts the younger ones, which the
// sweep looks at again soon.
func halfJoins(ctx context.Context, tx *sql.Tx, now time.Time) (due []halfJoin, waiting int, err error) {
	members, err := cluster.GetInternalClusterMembers(ctx, tx)
	if err != nil {
		return nil, 0, fmt.Errorf("read members: %w", err)
	}
	for _, m := range members {
		if m.Role != cluster.Pending {
			continue
		}
		at, ok, err := halfJoinSince(ctx, tx, m.Name)
		if err != nil {
			return nil, 0, err
		}
		switch {
		case !ok:
		case now.Sub(at) < halfJoinGrace:
			waiting++
		default:
			due = append(due, halfJoin{Name: m.Name, Address: m.Address})
		}
	}
	return due, waiting, nil
}

// halfJoinSince reports whether the pending member name joined with a
// token of its own name whose microcluster secret is spent and was never
// recorded (postJoin), and when the token was redeemed (or revoked after
// that: revokeTokenTx keeps the redeemer). (The first member is pending too
// until the first heartbeat, without a token.)
func halfJoinSince(ctx context.Context, tx *sql.Tx, name string) (time.Time, bool, error) {
	t, err := getToken(ctx, tx, name)
	if err != nil || t == nil || (t.State != api.TokenUsed && t.State != api.TokenRevoked) || t.UsedBy != name {
		return time.Time{}, false, err
	}
	live, err := internalTokenExists(ctx, tx, name)
	if err != nil || live {
		return time.Time{}, false, err
	}
	// A join that got as far as postJoin recorded its node: it is a member
	// whose role the next heartbeat sets, not a join that died.
	if n, err := getNode(ctx, tx, name); err != nil || n != nil {
		return time.Time{}, false, err
	}
	at, err := tokenUpdatedAt(ctx, tx, name)
	if err != nil {
		return time.Time{}, false, err
	}
	return at, true, nil
}

// pendingMember reports whether name is a member still pending.
func pendingMember(ctx context.Context, tx *sql.Tx, name string) (bool, error) {
	members, err := cluster.GetInternalClusterMembers(ctx, tx)
	if err != nil {
		return false, fmt.Errorf("read members: %w", err)
	}
	for _, m := range members {
		if m.Name == name {
			return m.Role == cluster.Pending, nil
		}
	}
	return false, nil
}

// releaseHalfJoins gives up the members of joins that died (see above) and
// gives their tokens back. It runs on the dqlite leader, from the token
// sweep, and returns how many pending members it is still watching.
func (d *Daemon) releaseHalfJoins(ctx context.Context, s *state.State) (int, error) {
	now := d.cfg.Now()
	var due []halfJoin
	waiting := 0
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		due, waiting, err = halfJoins(ctx, tx, now)
		return err
	})
	if err != nil || len(due) == 0 {
		return waiting, err
	}
	inDB, err := d.dqliteAddresses(ctx, s)
	if err != nil {
		return waiting + len(due), err
	}
	for _, h := range due {
		if inDB[h.Address] {
			// The database took it in: the next heartbeat gives it its role.
			waiting++
			continue
		}
		if err := d.releaseHalfJoin(ctx, s, h); err != nil {
			return waiting + 1, err
		}
	}
	return waiting, nil
}

// releaseHalfJoin takes the member of one dead join out of the trust
// stores, then removes it and gives its token back in one transaction of
// the cluster database. microcluster's own forced
// removal is no use here: it refuses to remove anyone from a cluster whose
// database has a single node ("Cannot leave a cluster with 1 members"),
// the very cluster a second node joins.
func (d *Daemon) releaseHalfJoin(ctx context.Context, s *state.State, h halfJoin) error {
	// Its certificate first: a joiner that is somehow alive can no longer
	// reach the database once no trust store lists it. (microcluster's
	// trust-store removal tells the other members first and fails if one
	// does not answer; the leader's next heartbeat then drops it
	// everywhere.)
	lc, err := d.localMicrocluster()
	if err == nil {
		tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = lc.Query(tctx, "DELETE", mctypes.EndpointPrefix("cluster/internal"), lxdapi.NewURL().Path("truststore", h.Name), nil, nil)
		cancel()
	}
	if err != nil {
		d.log.Warn("a half-joined member stays in trust stores until the next heartbeat", "node", h.Name, "error", err)
	}
	now := d.cfg.Now()
	var released, back bool
	var expires time.Time
	err = s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		// Judged again inside the transaction that removes it.
		due, _, err := halfJoins(ctx, tx, now)
		if err != nil {
			return err
		}
		for _, x := range due {
			released = released || x == h
		}
		if !released {
			return nil
		}
		if err := cluster.DeleteInternalClusterMember(ctx, tx, h.Address); err != nil {
			return fmt.Errorf("remove member %s: %w", h.Name, err)
		}
		t, err := getToken(ctx, tx, h.Name)
		if err != nil || t == nil {
			return err
		}
		expires = t.ExpiresAt
		back, err = giveBack(ctx, tx, *t, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("release the half-joined member %s: %w", h.Name, err)
	}
	if !released {
		return nil
	}
	d.log.Warn("a join stopped midway: its member never reached the cluster database and was removed", "node", h.Name, "address", h.Address, "token_back", back, "token_expires_at", expires)
	// A node that reached the database after all (between the look at its
	// nodes and the removal) leaves it again: no database node without a
	// member.
	if err := d.dropDqliteNode(ctx, s, h.Address); err != nil {
		d.log.Warn("a released member's database node could not be checked", "node", h.Name, "error", err)
	}
	return nil
}

// dropDqliteNode removes the cluster database's node at address, if any.
func (d *Daemon) dropDqliteNode(ctx context.Context, s *state.State, address string) error {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := s.Database.Leader(lctx)
	if err != nil {
		return fmt.Errorf("find the dqlite leader: %w", err)
	}
	defer c.Close()
	nodes, err := c.Cluster(lctx)
	if err != nil {
		return fmt.Errorf("read the dqlite configuration: %w", err)
	}
	for _, n := range nodes {
		if n.Address == address {
			d.log.Warn("a released member's node reached the cluster database: removing it", "address", address)
			return c.Remove(lctx, n.ID)
		}
	}
	return nil
}

// dqliteAddresses is the set of the cluster database's node addresses.
func (d *Daemon) dqliteAddresses(ctx context.Context, s *state.State) (map[string]bool, error) {
	nodes, _, err := dqliteNodes(ctx, s, 5*time.Second)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		out[n.Address] = true
	}
	return out, nil
}
