package compute

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	lxd "github.com/canonical/lxd/client"
	_ "github.com/mattn/go-sqlite3" // LXD's local database (raft_nodes), read only

	"github.com/cloudctl/cloudctl/roles/driver"
)

// raftNode is one row of LXD's raft_nodes (its local database): the members
// of LXD's own database and their roles, as the last heartbeat told them.
type raftNode struct {
	Name, Address string
	Role          int // dqlite: 0 voter, 1 stand-by, 2 spare
}

// Roles of LXD's database members (dqlite's client.NodeRole).
const (
	raftVoter   = 0
	raftStandBy = 1
)

// readRaftNodes reads raft_nodes and this member's database address from
// LXD's local database, read only (LXD may be running or not).
func readRaftNodes(ctx context.Context, p paths) (self string, nodes []raftNode, err error) {
	file := filepath.Join(p.lxdDir, "database", "local.db")
	if _, err := os.Stat(file); err != nil {
		return "", nil, fmt.Errorf("LXD's local database: %w", err)
	}
	db, err := sql.Open("sqlite3", "file:"+file+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		return "", nil, fmt.Errorf("open %s: %w", file, err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT name, address, role FROM raft_nodes ORDER BY id")
	if err != nil {
		return "", nil, fmt.Errorf("read raft_nodes from %s: %w", file, err)
	}
	defer rows.Close()
	for rows.Next() {
		var n raftNode
		if err := rows.Scan(&n.Name, &n.Address, &n.Role); err != nil {
			return "", nil, fmt.Errorf("read raft_nodes from %s: %w", file, err)
		}
		nodes = append(nodes, n)
	}
	if err := rows.Err(); err != nil {
		return "", nil, fmt.Errorf("read raft_nodes from %s: %w", file, err)
	}
	err = db.QueryRowContext(ctx, "SELECT value FROM config WHERE key = 'cluster.https_address'").Scan(&self)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return "", nil, fmt.Errorf("read cluster.https_address from %s: %w", file, err)
	}
	return self, nodes, nil
}

// quorumPlan is what RecoverAlone does with LXD's database: nothing but
// removing the lost members (its voters still have a majority without them),
// rebuild it from this member's copy, or nothing at all (this member holds
// no copy: refused, with the reason).
type quorumPlan struct {
	Rebuild bool
	Refused error
}

// planQuorum decides from raft_nodes whether LXD's database lost its
// majority with the lost members, and whether this member (at address self)
// holds a copy to rebuild it from: a voter or a stand-by does, a spare
// does not.
func planQuorum(self string, nodes []raftNode, lost map[string]bool) quorumPlan {
	voters, alive := 0, 0
	var mine *raftNode
	var lostVoters []string
	for i, n := range nodes {
		if n.Address == self {
			mine = &nodes[i]
		}
		if n.Role != raftVoter {
			continue
		}
		voters++
		if lost[n.Name] {
			lostVoters = append(lostVoters, n.Name)
		} else {
			alive++
		}
	}
	if voters == 0 || alive*2 > voters {
		return quorumPlan{}
	}
	sort.Strings(lostVoters)
	if mine == nil || (mine.Role != raftVoter && mine.Role != raftStandBy) {
		return quorumPlan{Refused: fmt.Errorf("the LXD database was held by %s, all lost, and this node's LXD keeps no copy of it (it was a spare): "+
			"the LXD cluster cannot be rebuilt from here; its instances keep running, but LXD will not start until the compute role is removed from this node and given back (an empty LXD)",
			strings.Join(lostVoters, ", "))}
	}
	return quorumPlan{Rebuild: true}
}

// RecoverAlone implements driver.Recoverer: after `cloudctl cluster recover`
// this node's LXD becomes an LXD cluster of one. When the lost members took
// the majority of LXD's database voters with them, LXD is stopped (its
// instances keep running), its database is rebuilt from this member's copy
// (`lxd cluster recover-from-quorum-loss`) and it is started again; then the
// lost members are removed from the LXD cluster (their instances with them:
// they were on the lost machines). Idempotent: after a rebuild this member
// is the only voter, so a second call only removes what is left.
func (d *Driver) RecoverAlone(ctx context.Context, env *driver.Env, lost []string) error {
	p := pathsIn(env.Dir)
	if !hasState(p) {
		return nil // no LXD on this node
	}
	gone := map[string]bool{}
	for _, n := range lost {
		if n != env.Local.Name {
			gone[n] = true
		}
	}
	if len(gone) == 0 {
		return nil
	}
	d.mu.Lock()
	d.sup = env.Sup
	d.mu.Unlock()
	self, nodes, err := readRaftNodes(ctx, p)
	if err != nil {
		return err
	}
	plan := planQuorum(self, nodes, gone)
	if plan.Refused != nil {
		env.Log.Error("compute: "+plan.Refused.Error(), "lost", lost)
		return nil // the rest of the cluster recovers; the compute layer reports LXD down
	}
	if plan.Rebuild {
		if err := d.shutdown(ctx, env.Sup, false); err != nil {
			return fmt.Errorf("stop LXD before rebuilding its database: %w", err)
		}
		run := d.Command
		if run == nil {
			run = runCommand
		}
		out, err := run(ctx, []string{"LXD_DIR=" + p.lxdDir}, lxdBinary(env), "cluster", "recover-from-quorum-loss", "--quiet")
		if err != nil {
			return fmt.Errorf("rebuild the LXD database from this member (lxd cluster recover-from-quorum-loss): %w: %s", err, strings.TrimSpace(string(out)))
		}
		env.Log.Warn("compute: this node's LXD is now the only voter of the LXD database", "lost", sortedKeys(gone))
	}
	c, err := d.startAndWait(ctx, env, p)
	if err != nil {
		return err
	}
	srv, _, err := c.GetServer()
	if err != nil {
		return fmt.Errorf("read LXD server: %w", err)
	}
	if !srv.Environment.ServerClustered {
		return nil
	}
	return removeLost(ctx, env, c, gone)
}

// startAndWait starts LXD when it is not running and waits until it is ready
// or ctx ends.
func (d *Driver) startAndWait(ctx context.Context, env *driver.Env, p paths) (lxd.InstanceServer, error) {
	for {
		c, err := d.start(ctx, env, p, func(driver.Step) {})
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, errNotReady) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("LXD did not become ready (see %s): %w", p.log, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// removeLost removes the lost members from the LXD cluster, forced (they
// will never answer), once LXD sees them offline.
func removeLost(ctx context.Context, env *driver.Env, c lxd.InstanceServer, gone map[string]bool) error {
	for {
		ms, err := c.GetClusterMembers()
		if err != nil {
			return fmt.Errorf("read the LXD cluster members: %w", err)
		}
		waiting := ""
		for _, m := range ms {
			if !gone[m.ServerName] {
				continue
			}
			if m.Status != "Offline" {
				waiting = m.ServerName + " is " + m.Status
				continue
			}
			if err := c.DeleteClusterMember(m.ServerName, true); err != nil {
				return fmt.Errorf("remove the lost member %s from the LXD cluster: %w", m.ServerName, err)
			}
			env.Log.Warn("compute: removed the lost member from the LXD cluster", "member", m.ServerName)
		}
		if waiting == "" {
			return nil
		}
		// LXD marks a member offline after missed heartbeats (about 20 s).
		select {
		case <-ctx.Done():
			return fmt.Errorf("a lost member is not offline in LXD yet (%s): %w", waiting, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// runCommand runs name with args and extra environment, for its output.
func runCommand(ctx context.Context, extraEnv []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	return cmd.CombinedOutput()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
