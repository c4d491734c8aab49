package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/canonical/go-dqlite"
	dqliteclient "github.com/canonical/go-dqlite/client"
	"github.com/canonical/lxd/lxd/response"
	lxdapi "github.com/canonical/lxd/shared/api"
	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/microcluster"
	"github.com/canonical/microcluster/rest"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// Recovery from the permanent loss of a majority (`cloudctl cluster
// recover`). The cluster database (dqlite) cannot change its membership
// without a quorum, and microcluster rewrites it only while the daemon is
// stopped. So cloudd, asked on its control socket:
//
//  1. refuses while a majority of the dqlite voters answers (the cluster then
//     recovers by itself, and a dead node goes with `cluster remove --force`);
//  2. records the request in <state-dir>/recover.json, stops its roles and
//     re-executes itself (same pid, same namespace, same arguments);
//  3. at start, before microcluster opens the database, rewrites the raft
//     membership with microcluster's RecoverFromQuorumLoss: this node the
//     only voter, the lost members spares (their number cannot change there);
//  4. once the database is open (a quorum of one), with the roles still
//     paused, lets each role driver's Recoverer rebuild its layer from this
//     node alone (every one of them, whatever another answered), then
//     removes the lost members with microcluster's forced removal, so every
//     layer sees a cluster of one.

const recoverFileName = "recover.json"

// recoverProbeTimeout bounds how long a member has to answer before it
// counts as lost.
const recoverProbeTimeout = 3 * time.Second

func (d *Daemon) recoverPath() string { return filepath.Join(d.cfg.StateDir, recoverFileName) }

func (d *Daemon) readRecovery() (client.Recovery, error) {
	var r client.Recovery
	b, err := os.ReadFile(d.recoverPath())
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("read %s: %w", d.recoverPath(), err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("read %s: %w", d.recoverPath(), err)
	}
	return r, nil
}

func (d *Daemon) writeRecovery(r client.Recovery) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode recovery state: %w", err)
	}
	tmp := d.recoverPath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write recovery state: %w", err)
	}
	if err := os.Rename(tmp, d.recoverPath()); err != nil {
		return fmt.Errorf("write recovery state: %w", err)
	}
	return nil
}

// recoverEndpoints serve `cloudctl cluster recover`, on the control socket
// only. They answer before the database is open: a node that lost its quorum
// may be restarting with no database.
func (d *Daemon) recoverEndpoints() []rest.Endpoint {
	return []rest.Endpoint{{
		Path:              "recover",
		AllowedBeforeInit: true,
		Get:               rest.EndpointAction{Handler: d.handleRecoverGet},
		Post:              rest.EndpointAction{Handler: d.handleRecoverPost},
	}}
}

func localOnly(r *http.Request) error {
	if r.RemoteAddr != "@" {
		return lxdapi.StatusErrorf(http.StatusForbidden, "cluster recovery is only answered on the local control socket (root on the survivor)")
	}
	return nil
}

func (d *Daemon) handleRecoverGet(s *state.State, r *http.Request) response.Response {
	if err := localOnly(r); err != nil {
		return response.SmartError(err)
	}
	rec, err := d.readRecovery()
	if err != nil {
		return response.SmartError(err)
	}
	return response.SyncResponse(true, rec)
}

// handleRecoverPost checks that a majority is lost, records the request and
// restarts cloudd into the recovery.
func (d *Daemon) handleRecoverPost(s *state.State, r *http.Request) response.Response {
	if err := localOnly(r); err != nil {
		return response.SmartError(err)
	}
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	if prev, err := d.readRecovery(); err != nil {
		return response.SmartError(err)
	} else if prev.State == client.RecoveryRequested || prev.State == client.RecoveryRestarted {
		return response.SmartError(lxdapi.StatusErrorf(http.StatusConflict, "a recovery is already under way on this node (state %s, asked %s): wait for it; `cloudctl status` shows the cluster", prev.State, prev.RequestedAt.UTC().Format(time.RFC3339)))
	}
	rec, err := d.planRecovery(ctx, s)
	if err != nil {
		return response.SmartError(err)
	}
	if err := d.writeRecovery(rec); err != nil {
		return response.SmartError(err)
	}
	d.log.Warn("cluster recovery requested: this node rebuilds the cluster alone", "survivor", rec.Survivor, "dropped", rec.Dropped, "reachable_voters", rec.Reachable, "voters", rec.Voters)
	return response.ManualResponse(func(w http.ResponseWriter) error {
		if err := response.SyncResponse(true, rec).Render(w); err != nil {
			return err
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		go d.restartForRecovery()
		return nil
	})
}

// planRecovery decides who survives and who is dropped, or refuses with the
// reason when a majority of the cluster database voters still answers.
func (d *Daemon) planRecovery(ctx context.Context, s *state.State) (client.Recovery, error) {
	rec := client.Recovery{State: client.RecoveryRequested, Survivor: s.Name(), RequestedAt: time.Now().UTC()}
	if s.Address() == nil || s.Address().URL.Host == "" || s.Name() == "" {
		return rec, lxdapi.StatusErrorf(http.StatusConflict, "this node is not part of a cluster: there is nothing to recover")
	}
	m, err := d.microclusterApp()
	if err != nil {
		return rec, err
	}
	stored, err := m.GetDqliteClusterMembers()
	if err != nil {
		return rec, fmt.Errorf("read the cluster database membership: %w", err)
	}
	if !hasMember(stored, s.Name()) {
		return rec, lxdapi.StatusErrorf(http.StatusConflict, "refusing to recover: %s joined too recently to be in its own copy of the cluster database membership (%s), so it cannot rebuild the cluster; run `cloudctl cluster recover` on another survivor if there is one", s.Name(), filepath.Join(d.cfg.StateDir, "database", "cluster.yaml"))
	}
	addrs := map[string]string{}
	for name, a := range s.Remotes().Addresses() {
		addrs[name] = a.String()
	}
	members := withTrusted(stored, addrs)
	if len(members) < 2 {
		return rec, lxdapi.StatusErrorf(http.StatusConflict, "refusing to recover: %s is the only member of its cluster database, so there is nothing to recover", s.Name())
	}
	self := s.Address().URL.Host
	answers := d.probeAll(ctx, s, members, self)
	// Whether the database answers with a quorum settles what the counts
	// only estimate (members only the trust store knows have a role
	// unknown here).
	quorum := d.databaseAnswers(ctx, s)
	return rec, judgeRecovery(&rec, members, answers, quorum)
}

// judgeRecovery fills in rec's reachable voters, dropped members and voter
// count from the membership, who answered (by address) and whether the
// database answers with a quorum, and refuses, with the reason, unless this
// node may rebuild the cluster alone.
func judgeRecovery(rec *client.Recovery, members []cluster.DqliteMember, answers map[string]bool, quorum bool) error {
	voters := 0
	for _, mb := range members {
		if mb.Role == "voter" || mb.Role == roleUnknown {
			voters++
		}
	}
	countAll := voters == 0
	if countAll {
		voters = len(members)
	}
	reachable := 0
	var unknownUp []string
	for _, mb := range members {
		isVoter := countAll || mb.Role == "voter" || mb.Role == roleUnknown
		if answers[mb.Address] && mb.Role == roleUnknown {
			unknownUp = append(unknownUp, mb.Name)
		}
		if answers[mb.Address] {
			if isVoter {
				reachable++
				rec.Reachable = append(rec.Reachable, mb.Name)
			}
			continue
		}
		rec.Dropped = append(rec.Dropped, mb.Name)
	}
	sort.Strings(rec.Reachable)
	sort.Strings(rec.Dropped)
	sort.Strings(unknownUp)
	rec.Voters = voters
	unknown := func() error {
		answer, hold := "answer", "they hold"
		if len(unknownUp) == 1 {
			answer, hold = "answers", "it holds"
		}
		return lxdapi.StatusErrorf(http.StatusConflict, "refusing to recover: %s %s but joined too recently for this node to know whether %s a copy of the cluster database; if the cluster database has no quorum, stop cloudd on every node but one, then run `cloudctl cluster recover` on the one left", strings.Join(unknownUp, " and "), answer, hold)
	}
	if reachable*2 > voters {
		if !quorum && len(unknownUp) > 0 {
			return unknown()
		}
		return lxdapi.StatusErrorf(http.StatusConflict, "refusing to recover: %d of %d cluster database voters answer (%s), a majority, so the cluster keeps working and heals by itself; to replace a node that will never return, run `cloudctl cluster remove NAME --force`", reachable, voters, strings.Join(rec.Reachable, ", "))
	}
	if quorum {
		// A quorum of members this node counts as spares.
		return lxdapi.StatusErrorf(http.StatusConflict, "refusing to recover: the cluster database still answers with a quorum; remove dead nodes with `cloudctl cluster remove NAME --force`")
	}
	if len(unknownUp) > 0 {
		return unknown()
	}
	if len(rec.Reachable) > 1 || len(rec.Dropped) == len(members) {
		// Another member answers but together we are no majority: rebuilding
		// from one of us would leave the other behind with different data.
		return lxdapi.StatusErrorf(http.StatusConflict, "refusing to recover: %s answer but are no majority of the %d voters; stop cloudd on all but one of them first, then run `cloudctl cluster recover` on the one left", strings.Join(rec.Reachable, " and "), voters)
	}
	return nil
}

// databaseAnswers reports whether the cluster database answers a query
// within recoverProbeTimeout: it has a quorum, whoever holds it.
func (d *Daemon) databaseAnswers(ctx context.Context, s *state.State) bool {
	if s.Database == nil || s.Database.IsOpen(ctx) != nil {
		return false
	}
	qctx, cancel := context.WithTimeout(ctx, recoverProbeTimeout)
	defer cancel()
	err := s.Database.Transaction(qctx, func(ctx context.Context, tx *sql.Tx) error {
		var one int
		return tx.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
	})
	if err != nil {
		d.log.Info("cluster recovery: the cluster database does not answer", "error", err)
	}
	return err == nil
}

// roleUnknown marks a member that the trust store knows and dqlite's node
// store does not list yet: its role is unknown (see withTrusted).
const roleUnknown = "unknown"

// withTrusted completes the cluster database membership read from dqlite's
// node store (database/cluster.yaml) with the members of the trust store
// (name → address). go-dqlite rewrites its node store every few seconds, and
// only while a leader answers: members that joined shortly before the loss
// are missing from it, and would make the survivor believe it was alone.
// Such a member's role is unknown. planRecovery counts it as a voter when it
// does not answer (lost, whatever it was), and refuses when it answers (it
// may hold a copy that a rebuild from this node would leave behind); what
// keeps a recovery from running beside a working database is the refusal
// when another voter answers and the final query with a quorum.
func withTrusted(stored []cluster.DqliteMember, trusted map[string]string) []cluster.DqliteMember {
	out := append([]cluster.DqliteMember(nil), stored...)
	known := map[string]bool{}
	for _, mb := range stored {
		known[mb.Name], known[mb.Address] = true, true
	}
	names := make([]string, 0, len(trusted))
	for name := range trusted {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if known[name] || known[trusted[name]] {
			continue
		}
		out = append(out, cluster.DqliteMember{Name: name, Address: trusted[name], Role: roleUnknown})
	}
	return out
}

func hasMember(members []cluster.DqliteMember, name string) bool {
	for _, mb := range members {
		if mb.Name == name {
			return true
		}
	}
	return false
}

// probeAll asks every member's cloudd whether it answers at all (any HTTP
// answer counts: a member that answers is not lost).
func (d *Daemon) probeAll(ctx context.Context, s *state.State, members []cluster.DqliteMember, self string) map[string]bool {
	out := map[string]bool{self: true}
	hc, err := peerHTTP(s, recoverProbeTimeout)
	if err != nil {
		return out
	}
	defer hc.CloseIdleConnections()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, mb := range members {
		if mb.Address == self {
			continue
		}
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, recoverProbeTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(pctx, http.MethodGet, "https://"+addr+"/cluster/1.0", nil)
			if err != nil {
				return
			}
			resp, err := hc.Do(req)
			if err != nil {
				return
			}
			resp.Body.Close()
			mu.Lock()
			out[addr] = true
			mu.Unlock()
		}(mb.Address)
	}
	wg.Wait()
	return out
}

// restartForRecovery stops the roles and re-executes cloudd: microcluster
// rewrites the membership only while no daemon runs on the state directory.
func (d *Daemon) restartForRecovery() {
	d.leaving.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d.stopDrivers(ctx)
	d.sup.StopAll(time.Minute)
	exe, err := os.Executable()
	if err != nil {
		d.failRecovery(fmt.Errorf("find cloudd's own executable to restart it: %w", err))
		return
	}
	d.log.Warn("cluster recovery: restarting cloudd to rewrite the cluster database membership", "exe", exe)
	// The new process is this one (same pid): whoever supervises cloudd
	// keeps supervising it.
	err = syscall.Exec(exe, os.Args, os.Environ())
	d.failRecovery(fmt.Errorf("restart cloudd: %w", err))
}

func (d *Daemon) failRecovery(err error) {
	d.log.Error("cluster recovery failed", "error", err)
	rec, rerr := d.readRecovery()
	if rerr != nil {
		rec = client.Recovery{}
	}
	rec.State, rec.Error, rec.FinishedAt = client.RecoveryFailed, err.Error(), time.Now().UTC()
	if werr := d.writeRecovery(rec); werr != nil {
		d.log.Error("cannot record the failed recovery", "error", werr)
	}
	d.leaving.Store(false)
	d.kick()
}

// resumeRecovery runs at start, before microcluster opens the database: a
// requested recovery rewrites the dqlite membership with this node as the
// only voter; finishRecovery goes on once the database is open.
func (d *Daemon) resumeRecovery(m *microcluster.MicroCluster) {
	rec, err := d.readRecovery()
	if err != nil {
		d.log.Error("cluster recovery: unreadable state", "error", err)
		return
	}
	if rec.State == client.RecoveryRestarted {
		// Interrupted after the rewrite: finishRecovery goes on, with the
		// roles paused until the lost members are gone.
		d.leaving.Store(true)
		return
	}
	if rec.State != client.RecoveryRequested {
		return
	}
	d.leaving.Store(true)
	// This process is the only cloudd on the state directory (the one that
	// accepted the request replaced itself with it): its socket is stale.
	sock := filepath.Join(d.cfg.StateDir, "control.socket")
	if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.failRecovery(fmt.Errorf("remove the stale control socket: %w", err))
		return
	}
	members, err := m.GetDqliteClusterMembers()
	if err != nil {
		d.failRecovery(fmt.Errorf("read the cluster database membership: %w", err))
		return
	}
	found := false
	next := make([]cluster.DqliteMember, 0, len(members))
	for _, mb := range members {
		if mb.Name == rec.Survivor {
			mb.Role, found = "voter", true
		} else {
			mb.Role = "spare"
		}
		next = append(next, mb)
	}
	if !found {
		d.failRecovery(fmt.Errorf("%s is not in its own cluster database membership: nothing was changed", rec.Survivor))
		return
	}
	tarball, err := m.RecoverFromQuorumLoss(next)
	if err != nil {
		d.failRecovery(fmt.Errorf("rewrite the cluster database membership (nothing was changed): %w", err))
		return
	}
	// The tarball is for the other members, and there are none: this node's
	// database directory already holds the new membership. microcluster
	// would load it again at start and, with this go-dqlite (its NodeInfo
	// has no YAML names), fail to find this node in it.
	if err := os.Remove(tarball); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.failRecovery(fmt.Errorf("remove the recovery tarball %s: %w", tarball, err))
		return
	}
	d.log.Warn("cluster recovery: this node is now the only cluster database voter")
	rec.State = client.RecoveryRestarted
	if err := d.writeRecovery(rec); err != nil {
		d.log.Error("cluster recovery", "error", err)
	}
	return
}

// finishRecovery removes the lost members once the database is open, so
// every layer sees a cluster of one, then records that the recovery is done.
func (d *Daemon) finishRecovery(ctx context.Context) {
	rec, err := d.readRecovery()
	if err != nil || rec.State != client.RecoveryRestarted {
		return
	}
	deadline := time.Now().Add(10 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		if last = d.recoverRoles(ctx, rec.Dropped); last == nil {
			last = d.dropLost(ctx, rec.Dropped)
		}
		if last == nil {
			rec.State, rec.FinishedAt, rec.Error = client.RecoveryDone, time.Now().UTC(), ""
			if err := d.writeRecovery(rec); err != nil {
				d.log.Error("cluster recovery", "error", err)
			}
			d.log.Warn("cluster recovery done: this node is a cluster of one; join new nodes with `cloudctl cluster add`", "dropped", rec.Dropped, "took", rec.FinishedAt.Sub(rec.RequestedAt).Round(time.Millisecond))
			d.leaving.Store(false)
			d.kick()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
	d.failRecovery(fmt.Errorf("the lost members could not be removed: %w; remove each with `cloudctl cluster remove NAME --force`", last))
}

// recoverRoles lets every role with a quorum of its own rebuild its layer
// from this node (driver.Recoverer), before the lost members are removed.
func (d *Daemon) recoverRoles(ctx context.Context, lost []string) error {
	s := d.getState()
	if s == nil || s.Database == nil || s.Database.IsOpen(ctx) != nil {
		return errors.New("the cluster database is not open yet")
	}
	ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
	env, err := d.buildEnv(ectx, s)
	cancel()
	if err != nil {
		return err
	}
	// Every role gets its turn, whatever another one answered: a layer
	// that cannot be rebuilt yet must not keep the others from it. Each is
	// idempotent, so the next attempt calls them all again.
	var errs []error
	for _, dr := range d.drivers {
		r, ok := dr.(driver.Recoverer)
		denv := d.envFor(env, dr)
		if !ok || !dr.AppliesTo(denv, env.Local) {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err := r.RecoverAlone(rctx, denv, lost)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("rebuild the %s layer from this node: %w", dr.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// dropLost removes every lost member still recorded; it is idempotent.
func (d *Daemon) dropLost(ctx context.Context, names []string) error {
	s := d.getState()
	if s == nil || s.Database == nil || s.Database.IsOpen(ctx) != nil {
		return errors.New("the cluster database is not open yet")
	}
	lc, err := d.localMicrocluster()
	if err != nil {
		return err
	}
	for _, name := range names {
		present, err := d.isMember(ctx, s, name)
		if err != nil {
			return err
		}
		if !present {
			continue
		}
		if err := d.asSpare(ctx, s, name); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		err = lc.DeleteClusterMember(rctx, name, true)
		cancel()
		// The forced removal also tells the other members, the lost ones
		// included, and reports their silence: what counts is that the
		// member is gone.
		if present, perr := d.isMember(ctx, s, name); perr == nil && !present {
			d.log.Warn("cluster recovery: removed a lost member", "node", name)
			continue
		}
		if err != nil {
			return fmt.Errorf("remove %s: %w", name, err)
		}
		return fmt.Errorf("%s is still a member", name)
	}
	return nil
}

// asSpare puts a lost member that is missing from the raft membership
// back into it as a spare (a configuration entry: a spare takes no part in
// the quorum). Members that joined shortly before the loss are missing when
// the survivor's node store had not listed them yet (withTrusted), and
// microcluster's forced removal refuses to touch a raft membership of one;
// a spare it removes cleanly, as it does the lost members the store listed.
// Only then is one added: the raft membership has a single entry and the
// member's database row still exists (a member already removed, whose
// trust store entry lags behind, must not come back).
func (d *Daemon) asSpare(ctx context.Context, s *state.State, name string) error {
	addr, ok := s.Remotes().Addresses()[name]
	if !ok {
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	row := false
	err := s.Database.Transaction(qctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		row, err = cluster.InternalClusterMemberExists(ctx, tx, name)
		return err
	})
	if err != nil {
		return fmt.Errorf("read the members: %w", err)
	}
	if !row {
		return nil
	}
	leader, err := s.Database.Leader(qctx)
	if err != nil {
		return fmt.Errorf("reach the cluster database leader: %w", err)
	}
	defer leader.Close()
	nodes, err := leader.Cluster(qctx)
	if err != nil {
		return fmt.Errorf("read the raft membership: %w", err)
	}
	if len(nodes) >= 2 {
		return nil
	}
	for _, n := range nodes {
		if n.Address == addr.String() {
			return nil
		}
	}
	if err := leader.Add(qctx, dqliteclient.NodeInfo{ID: dqlite.GenerateID(addr.String()), Address: addr.String(), Role: dqliteclient.Spare}); err != nil {
		return fmt.Errorf("add %s back as a spare so it can be removed: %w", name, err)
	}
	d.log.Warn("cluster recovery: a lost member was missing from the raft membership; added back as a spare to be removed", "node", name, "address", addr.String())
	return nil
}

func (d *Daemon) isMember(ctx context.Context, s *state.State, name string) (bool, error) {
	present := false
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := s.Database.Transaction(qctx, func(ctx context.Context, tx *sql.Tx) error {
		members, err := cluster.GetInternalClusterMembers(ctx, tx)
		if err != nil {
			return fmt.Errorf("read members: %w", err)
		}
		for _, mb := range members {
			if mb.Name == name {
				present = true
			}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if present {
		return true, nil
	}
	return s.Remotes().RemotesByName()[name].Name != "", nil
}

// quorumWait is how long a change waits for this node to find the cluster
// database's leader before it is refused (a leader election after a lost
// member takes a few seconds).
const quorumWait = 10 * time.Second

// refuseWithoutQuorum wraps cloudd's own endpoints: on a node that cannot
// reach a majority of the cluster database voters (the minority side of a
// partition, or the survivor of lost nodes) a request is refused with one
// sentence saying so, instead of a transaction timing out. Status answers
// anyway (it says which members it reaches), and so do the endpoints that
// never read the database.
func (d *Daemon) refuseWithoutQuorum(eps []rest.Endpoint) []rest.Endpoint {
	skip := map[string]bool{"token-check": true, "reconcile": true, "recover": true, "status": true, "nodes": true}
	out := make([]rest.Endpoint, len(eps))
	for i, e := range eps {
		out[i] = e
		if skip[e.Path] {
			continue
		}
		for _, act := range []*rest.EndpointAction{&out[i].Get, &out[i].Post, &out[i].Put, &out[i].Patch, &out[i].Delete} {
			if act.Handler == nil {
				continue
			}
			next := act.Handler
			act.Handler = func(s *state.State, r *http.Request) response.Response {
				if err := d.haveQuorum(r.Context(), s); err != nil {
					return response.SmartError(err)
				}
				return next(s, r)
			}
		}
	}
	return out
}

// haveQuorum checks that this node reaches the cluster database's leader.
func (d *Daemon) haveQuorum(ctx context.Context, s *state.State) error {
	if s == nil || s.Database == nil || s.Database.IsOpen(ctx) != nil {
		return nil // microcluster answers "not ready" itself
	}
	ctx, cancel := context.WithTimeout(ctx, quorumWait)
	defer cancel()
	for {
		lctx, lcancel := context.WithTimeout(ctx, 3*time.Second)
		c, err := s.Database.Leader(lctx)
		lcancel()
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return lxdapi.StatusErrorf(http.StatusServiceUnavailable, "this node cannot reach a majority of the cluster database voters (a network partition, or nodes down), so it can neither change nor read the cluster's state: retry once the other nodes are reachable, run the command on a node of the majority, or, if the others are lost for good, run `cloudctl cluster recover` here")
		case <-time.After(500 * time.Millisecond):
		}
	}
}
