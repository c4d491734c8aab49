package daemon

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	dqlite "github.com/canonical/go-dqlite/client"
	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/state"
)

// dqliteNodes asks the cluster database's leader, within timeout, for its
// nodes (the live raft configuration: the member table only catches up on
// the next heartbeat) and the leader's address.
func dqliteNodes(ctx context.Context, s *state.State, timeout time.Duration) ([]dqlite.NodeInfo, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := s.Database.Leader(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("find the dqlite leader: %w", err)
	}
	defer c.Close()
	nodes, err := c.Cluster(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("read the dqlite configuration: %w", err)
	}
	var leader string
	if l, err := c.Leader(ctx); err == nil && l != nil {
		leader = l.Address
	}
	return nodes, leader, nil
}

// wantVoters is the number of dqlite voters the cluster database keeps when
// it has that many members (go-dqlite's default).
const wantVoters = 3

// restoreVoters runs on the dqlite leader once a member is removed. A
// removed voter leaves the cluster database with one voter fewer until
// go-dqlite's next roles adjustment (every 30 s): two voters cannot lose
// one, so a node lost in that window took the cluster database down (seen
// in TestStorage: a voter that missed one 2 s probe under load was
// replaced by the node removed next). The leader promotes answering
// stand-bys (or spares) at once, before the removal returns.
func (d *Daemon) restoreVoters(ctx context.Context, s *state.State) error {
	if leader, err := d.isLeader(ctx, s); err != nil || !leader {
		return err // the leader does it
	}
	c, err := s.Database.Leader(ctx)
	if err != nil {
		return fmt.Errorf("find the dqlite leader: %w", err)
	}
	defer c.Close()
	// A probe missed under load, or a configuration change of go-dqlite's
	// own in progress, is tried again.
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return errors.Join(last, ctx.Err())
			case <-time.After(time.Second):
			}
		}
		done, err := d.promoteVoters(ctx, s, c)
		if done {
			return nil
		}
		last = err
	}
	return last
}

// promoteVoters makes one attempt; done means the voters are complete.
func (d *Daemon) promoteVoters(ctx context.Context, s *state.State, c *dqlite.Client) (bool, error) {
	infos, err := c.Cluster(ctx)
	if err != nil {
		return false, fmt.Errorf("read the dqlite configuration: %w", err)
	}
	if votersShort(infos) <= 0 {
		return true, nil
	}
	var members []cluster.InternalClusterMember
	err = s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		members, err = cluster.GetInternalClusterMembers(ctx, tx)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("read members: %w", err)
	}
	online := d.probeMembers(ctx, s, members)
	promote := promotions(infos, online)
	if len(promote) == 0 {
		return false, fmt.Errorf("no member that could be a dqlite voter answered")
	}
	for _, ni := range promote {
		if err := c.Assign(ctx, ni.ID, dqlite.Voter); err != nil {
			return false, fmt.Errorf("promote %s to a dqlite voter: %w", ni.Address, err)
		}
		d.log.Info("promoted a member to a cluster database voter after a removal", "address", ni.Address, "was", ni.Role.String())
	}
	return false, nil
}

// votersShort is how many voters the cluster database lacks: it keeps
// min(wantVoters, members).
func votersShort(infos []dqlite.NodeInfo) int {
	voters := 0
	for _, ni := range infos {
		if ni.Role == dqlite.Voter {
			voters++
		}
	}
	return min(wantVoters, len(infos)) - voters
}

// promotions are the members to make voters so that the cluster database
// has min(wantVoters, members) voters: answering ones only (a voter that
// does not answer tolerates nothing), stand-bys before spares (they hold
// the log already), then by address, for a stable choice.
func promotions(infos []dqlite.NodeInfo, online map[string]bool) []dqlite.NodeInfo {
	need := votersShort(infos)
	if need <= 0 {
		return nil
	}
	var cands []dqlite.NodeInfo
	for _, ni := range infos {
		if ni.Role != dqlite.Voter && online[ni.Address] {
			cands = append(cands, ni)
		}
	}
	sort.SliceStable(cands, func(i, j int) bool {
		if (cands[i].Role == dqlite.StandBy) != (cands[j].Role == dqlite.StandBy) {
			return cands[i].Role == dqlite.StandBy
		}
		return cands[i].Address < cands[j].Address
	})
	return cands[:min(need, len(cands))]
}
