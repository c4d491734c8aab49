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
	"strings"
	"time"

	"github.com/canonical/lxd/lxd/response"
	lxdapi "github.com/canonical/lxd/shared/api"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
)

// bootstrapPending marks a bootstrap under way: written when the bootstrap
// begins (preBootstrap) and removed once the first node is recorded
// (postBootstrap). Found when cloudd starts, it means the last bootstrap
// died before it finished.
const bootstrapPending = "bootstrap.pending"

// bootstrapState is what microcluster writes into the state directory while
// it bootstraps a node: its name and address, its trust store entry, the
// cluster certificate and the cluster database.
var bootstrapState = []string{"database", "daemon.yaml", "truststore", "cluster.crt", "cluster.key"}

// markBootstrap records that a bootstrap began, durably: a power cut right
// after must find it.
func (d *Daemon) markBootstrap() error {
	return d.writeMark(bootstrapPending, []byte(d.cfg.Now().UTC().Format(time.RFC3339)+"\n"), "the bootstrap")
}

// bootstrapDone records that the bootstrap finished (or that this node
// joined instead), durably: a mark that came back after a power cut would
// clear a working member.
func (d *Daemon) bootstrapDone() error {
	return d.removeMark(bootstrapPending, "the end of the bootstrap")
}

// writeMark writes a mark file in the state directory, 0600, synced with
// its directory.
func (d *Daemon) writeMark(name string, content []byte, what string) error {
	p := filepath.Join(d.cfg.StateDir, name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = f.Write(content)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = syncDir(d.cfg.StateDir)
	}
	if err != nil {
		return fmt.Errorf("record %s in %s: %w", what, p, err)
	}
	return nil
}

// removeMark deletes a mark file, durably; a missing one is no error.
func (d *Daemon) removeMark(name, what string) error {
	p := filepath.Join(d.cfg.StateDir, name)
	err := os.Remove(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = syncDir(d.cfg.StateDir)
	}
	if err != nil {
		return fmt.Errorf("record %s (%s): %w", what, p, err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// clearInterruptedBootstrap runs before microcluster opens the state
// directory. A bootstrap that died midway (cloudd killed, the power cut)
// leaves a state microcluster cannot start from or bootstrap again: a
// trust store entry without a database ("a remote with name … already
// exists"), a database without its schema (cloudd exits at every start), or
// one that never opens ("Database is still starting"). No other node can
// have joined a cluster whose first node was never recorded, so nothing is
// lost by starting again: the half-made state is deleted and the same
// `cloudctl bootstrap` works. It reports whether it cleared anything.
func (d *Daemon) clearInterruptedBootstrap() (bool, error) {
	marker := filepath.Join(d.cfg.StateDir, bootstrapPending)
	b, err := os.ReadFile(marker)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", marker, err)
	}
	// A bootstrap trusts only the node itself: more entries mean this node
	// went on to join or form a cluster, whatever the mark says.
	if trusted, _ := filepath.Glob(filepath.Join(d.cfg.StateDir, "truststore", "*.yaml")); len(trusted) > 1 {
		d.log.Warn("a bootstrap mark was left, but this node trusts other members: keeping its state", "trusted", len(trusted))
		return false, d.bootstrapDone()
	}
	removed, err := d.removeState(bootstrapState)
	if err != nil {
		return false, fmt.Errorf("clear the state of the interrupted bootstrap: %w", err)
	}
	if err := d.bootstrapDone(); err != nil {
		return false, err
	}
	d.log.Warn("the last bootstrap of this node stopped before it finished: its half-made state was cleared; run the same `cloudctl bootstrap` again",
		"began", strings.TrimSpace(string(b)), "removed", removed)
	return true, nil
}

// joinPending marks a join under way on the joining node: written before
// the token is redeemed (POST join-intent, which `cloudctl cluster join`
// sends first) and removed once the node is recorded (postJoin), when a
// bootstrap begins instead (preBootstrap), or at the next start when the
// join never got anything from the cluster. It holds what postJoin needs,
// so a join that died after the cluster database took the node in is
// finished at the next start.
const joinPending = "join.pending"

// joinMark is the content of joinPending.
type joinMark struct {
	Began      time.Time         `json:"began"`
	Name       string            `json:"name"`
	InitConfig map[string]string `json:"init_config"`
}

// markJoin records that a join began, durably.
func (d *Daemon) markJoin(m joinMark) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode the join mark: %w", err)
	}
	return d.writeMark(joinPending, b, "the join")
}

// joinDone records that the join finished (or was cleared), durably.
func (d *Daemon) joinDone() error {
	return d.removeMark(joinPending, "the end of the join")
}

// readJoinMark is the join mark, or nil when there is none. A mark that does
// not decode is returned empty (its name unknown): it still says a join began.
func (d *Daemon) readJoinMark() (*joinMark, error) {
	p := filepath.Join(d.cfg.StateDir, joinPending)
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	var m joinMark
	if err := json.Unmarshal(b, &m); err != nil {
		d.log.Warn("the join mark does not decode", "path", p, "error", err)
		return &joinMark{}, nil
	}
	return &m, nil
}

// dqliteJoined reports whether this node's cluster database finished
// joining: go-dqlite writes info.yaml and an empty "join" file when a join
// begins, and removes the join file once the leader has added the node.
func (d *Daemon) dqliteJoined() bool {
	db := filepath.Join(d.cfg.StateDir, "database")
	_, infoErr := os.Stat(filepath.Join(db, "info.yaml"))
	_, joinErr := os.Stat(filepath.Join(db, "join"))
	return infoErr == nil && errors.Is(joinErr, os.ErrNotExist)
}

// clearInterruptedJoin runs before microcluster opens the state directory.
// A join that died before the cluster database took the node in (cloudd
// killed, the power cut) leaves the cluster's certificate, a trust store
// and perhaps a database that would go on joining at the next start, long
// after the cluster gave the member up (releaseHalfJoins): that half-made
// state is deleted, and the same `cloudctl cluster join` works once the
// cluster has given the token back. A join that died after the database
// took the node in keeps everything: finishInterruptedJoin records it. It
// reports whether it cleared anything.
func (d *Daemon) clearInterruptedJoin() (bool, error) {
	m, err := d.readJoinMark()
	if err != nil || m == nil {
		return false, err
	}
	if d.dqliteJoined() {
		d.log.Warn("the last join of this node stopped after the cluster database took it in: cloudd finishes it once the database is open", "node", m.Name, "began", m.Began)
		return false, nil
	}
	if !d.clusterStateLeft() {
		// The mark is written before the token is redeemed: this join
		// stopped before the cluster sent anything.
		d.log.Info("the last join of this node stopped before the cluster sent it anything: nothing to clear; if its token was redeemed, the cluster gives it back about two minutes after", "node", m.Name, "began", m.Began)
		return false, d.joinDone()
	}
	removed, err := d.removeState(bootstrapState)
	if err != nil {
		return false, fmt.Errorf("clear the state of the interrupted join: %w", err)
	}
	if err := d.joinDone(); err != nil {
		return false, err
	}
	d.log.Warn("the last join of this node stopped before the cluster database took it in: its half-made state was cleared; the cluster gives the token back 1.5 to 2 minutes after it was redeemed; run the same `cloudctl cluster join` again",
		"node", m.Name, "began", m.Began, "removed", removed)
	return true, nil
}

// clusterStateLeft reports whether microcluster wrote any of a cluster's
// state here: its certificate, this node's daemon.yaml, anything in the
// database directory (which microcluster creates empty at every start, as
// it does the trust store's).
func (d *Daemon) clusterStateLeft() bool {
	for _, name := range []string{"cluster.crt", "cluster.key", "daemon.yaml"} {
		if _, err := os.Lstat(filepath.Join(d.cfg.StateDir, name)); err == nil {
			return true
		}
	}
	entries, _ := os.ReadDir(filepath.Join(d.cfg.StateDir, "database"))
	return len(entries) > 0
}

// removeState deletes the named entries of the state directory and returns
// those that were there. The database's info.yaml goes first, durably: a
// removal cut midway must not leave a database that looks joined
// (dqliteJoined) without the rest.
func (d *Daemon) removeState(names []string) ([]string, error) {
	db := filepath.Join(d.cfg.StateDir, "database")
	if err := os.Remove(filepath.Join(db, "info.yaml")); err == nil {
		if err := syncDir(db); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var removed []string
	for _, name := range names {
		p := filepath.Join(d.cfg.StateDir, name)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return removed, err
		}
		removed = append(removed, name)
	}
	if len(removed) > 0 {
		if err := syncDir(d.cfg.StateDir); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// finishInterruptedJoin records a join whose cloudd died after the cluster
// database took the node in but before postJoin recorded it (its roles,
// its token), from the join mark, once the database is open; then removes
// the mark. It gives up after ten minutes or when ctx ends (the next start
// tries again).
func (d *Daemon) finishInterruptedJoin(ctx context.Context, s *state.State) {
	m, err := d.readJoinMark()
	if err != nil || m == nil {
		if err != nil {
			d.log.Error("finish the interrupted join", "error", err)
		}
		return
	}
	deadline := time.Now().Add(10 * time.Minute)
	for i := 0; ; i++ {
		err := d.finishJoin(ctx, s, *m)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			d.log.Error("finish the interrupted join: giving up until the next start", "error", err)
			return
		}
		if i%15 == 0 {
			d.log.Warn("finish the interrupted join: will try again", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// finishJoin records the node of the join mark m, unless it is recorded
// already, and removes the mark.
func (d *Daemon) finishJoin(ctx context.Context, s *state.State, m joinMark) error {
	if m.Name != "" && m.Name != s.Name() {
		// Not this member's join: a mark left by another attempt.
		d.log.Warn("a join mark for another name was left: removing it", "mark", m.Name, "node", s.Name())
		return d.joinDone()
	}
	if s.Database == nil || s.Database.IsOpen(ctx) != nil {
		return errors.New("the cluster database is not open yet")
	}
	var recorded bool
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		n, err := getNode(ctx, tx, s.Name())
		recorded = n != nil
		return err
	})
	if err != nil {
		return err
	}
	if !recorded {
		if m.InitConfig == nil {
			d.log.Error("the last join of this node stopped before its roles were recorded, and its mark does not say them: add them with `cloudctl role add`", "node", s.Name())
		} else if err := d.recordJoin(ctx, s, m.InitConfig); err != nil {
			return err
		}
		d.log.Warn("the last join of this node stopped before it was recorded: recorded it now", "node", s.Name())
	}
	return d.joinDone()
}

// handleJoinIntent writes the join mark for the join `cloudctl cluster
// join` is about to start. Only over the local socket, and only on a node
// with no cluster database.
func (d *Daemon) handleJoinIntent(s *state.State, r *http.Request) response.Response {
	if !fromSocket(r) {
		return response.Forbidden(errors.New("join-intent is accepted over the local control socket only"))
	}
	var in api.JoinIntent
	if err := decode(r, &in); err != nil {
		return response.SmartError(err)
	}
	if err := api.ValidNodeName(in.Name); err != nil {
		return response.BadRequest(err)
	}
	if _, err := os.Stat(filepath.Join(d.cfg.StateDir, "database", "info.yaml")); err == nil {
		return response.SmartError(lxdapi.StatusErrorf(http.StatusConflict, "this node already has a cluster database: it is a member, or a join is under way"))
	}
	if err := d.markJoin(joinMark{Began: d.cfg.Now().UTC(), Name: in.Name, InitConfig: in.InitConfig}); err != nil {
		return response.SmartError(err)
	}
	return response.EmptySyncResponse
}
