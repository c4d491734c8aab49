package compute

import (
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

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

// quorumPlan is what RecoverAlone does with LXD's database: nothing (its
// voters still have a majority without the lost members: the loop removes
// those), rebuild it from this member's copy, or nothing at all because it
// cannot be done safely from here (Refused says why).
type quorumPlan struct {
	Rebuild bool
	// Lost are the database members (voters and stand-bys) that are lost.
	Lost    []raftNode
	Refused error
}

// planQuorum decides from raft_nodes whether LXD's database lost its
// majority with the lost members, and whether it can be rebuilt from this
// member (at address self): only when this member holds a copy (a voter or
// a stand-by does, a spare does not) and no other member holding one
// survives (rebuilding beside it would split the LXD cluster).
func planQuorum(self, selfName string, nodes []raftNode, isLost func(raftNode) bool) quorumPlan {
	voters, alive := 0, 0
	var mine *raftNode
	var lostVoters, others []string
	var plan quorumPlan
	for i, n := range nodes {
		if n.Address == self || (selfName != "" && n.Name == selfName) {
			mine = &nodes[i]
			if n.Role == raftVoter {
				voters++
				alive++
			}
			continue
		}
		if n.Role != raftVoter && n.Role != raftStandBy {
			continue
		}
		if isLost(n) {
			plan.Lost = append(plan.Lost, n)
			if n.Role == raftVoter {
				lostVoters = append(lostVoters, n.Name)
			}
		} else {
			others = append(others, n.Name)
		}
		if n.Role == raftVoter {
			voters++
			if !isLost(n) {
				alive++
			}
		}
	}
	if voters == 0 || alive*2 > voters {
		return quorumPlan{}
	}
	sort.Strings(lostVoters)
	if len(others) > 0 {
		sort.Strings(others)
		return quorumPlan{Refused: fmt.Errorf("the LXD database lost its majority (%s), but LXD on %s, which is not among the lost, still holds a copy: "+
			"rebuilding it here would split the LXD cluster; stop LXD there and rebuild by hand (docs/compute.md, \"Losing two of three\")",
			strings.Join(lostVoters, ", "), strings.Join(others, ", "))}
	}
	if mine == nil {
		return quorumPlan{Refused: fmt.Errorf("the LXD database lost its majority (%s), and this node's LXD is not among its members (no %s in raft_nodes): "+
			"the LXD cluster cannot be rebuilt from here (docs/compute.md, \"Losing two of three\")", strings.Join(lostVoters, ", "), self)}
	}
	if mine.Role != raftVoter && mine.Role != raftStandBy {
		return quorumPlan{Refused: fmt.Errorf("the LXD database was held by %s, all lost, and this node's LXD keeps no copy of it (it was a spare): "+
			"the LXD cluster cannot be rebuilt from here (docs/compute.md, \"Losing two of three\")", strings.Join(lostVoters, ", "))}
	}
	plan.Rebuild = true
	return plan
}

// RecoverAlone implements driver.Recoverer: after `cloudctl cluster recover`
// this node's LXD becomes the only member of LXD's database. When the lost
// members took the majority of its voters with them, and none of their LXD
// answers on its address, LXD is stopped (its instances keep running) and
// its database rebuilt from this member's copy (`lxd cluster
// recover-from-quorum-loss`). LXD is not started here: the loop starts it
// once the recovery is done, and removes the lost members from the LXD
// cluster (removeDeparted) once LXD sees them gone. Idempotent: after a
// rebuild this member is the only voter, so a second call does nothing.
func (d *Driver) RecoverAlone(ctx context.Context, env *driver.Env, lost []string) error {
	p := pathsIn(env.Dir)
	if !hasState(p) {
		return nil // no LXD on this node
	}
	gone, goneIP := map[string]bool{}, map[string]bool{}
	for _, n := range lost {
		if n != env.Local.Name {
			gone[n] = true
		}
	}
	for _, n := range env.Nodes {
		if gone[n.Name] && n.IP != "" {
			goneIP[n.IP] = true
		}
	}
	if len(gone) == 0 {
		return nil
	}
	self, nodes, err := readRaftNodes(ctx, p)
	if err != nil {
		return err
	}
	plan := planQuorum(self, env.Local.Name, nodes, func(n raftNode) bool {
		host, _, _ := net.SplitHostPort(n.Address)
		return gone[n.Name] || goneIP[host]
	})
	if plan.Refused != nil {
		// The rest of the cluster recovers; LXD here waits for its database.
		env.Log.Error("compute: "+plan.Refused.Error(), "lost", keys(gone))
		return nil
	}
	if !plan.Rebuild {
		return nil
	}
	// "Lost" means their cloudd did not answer; their LXD must not either.
	// Refused like the rest: an error would hold the whole recovery up.
	for _, n := range plan.Lost {
		if lxdAnswers(ctx, n.Address) {
			env.Log.Error(fmt.Sprintf("compute: the LXD of %s still answers at %s: it is not lost, and rebuilding the LXD database here would split the LXD cluster; "+
				"the LXD database is left as it is (docs/compute.md, \"Losing two of three\")", n.Name, n.Address), "lost", keys(gone))
			return nil
		}
	}
	d.mu.Lock()
	d.sup = env.Sup
	d.mu.Unlock()
	if err := d.shutdown(ctx, env.Sup, false); err != nil {
		return fmt.Errorf("stop LXD before rebuilding its database: %w", err)
	}
	run := d.Command
	if run == nil {
		run = runCommand
	}
	// Not cut short by the caller's deadline halfway through a rewrite.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	out, err := run(rctx, []string{"LXD_DIR=" + p.lxdDir}, lxdBinary(env), "cluster", "recover-from-quorum-loss", "--quiet")
	if err != nil {
		return fmt.Errorf("rebuild the LXD database from this member (lxd cluster recover-from-quorum-loss): %w: %s", err, strings.TrimSpace(string(out)))
	}
	env.Log.Warn("compute: this node's LXD is now the only voter of the LXD database; the lost LXD members are removed once LXD sees them offline", "lost", keys(gone))
	return nil
}

// lxdAnswers reports whether an LXD serves TLS at addr within 3 seconds. A
// TCP connect is not enough: a listening socket a dead LXD's children still
// hold accepts connections but never answers. Liveness only: nothing is
// sent after the handshake and nothing from it is trusted.
func lxdAnswers(ctx context.Context, addr string) bool {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// runCommand runs name with args and extra environment, for its output.
func runCommand(ctx context.Context, extraEnv []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	return cmd.CombinedOutput()
}
