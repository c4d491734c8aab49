package storage

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// Guard implements driver.Driver: a change that takes a node's OSDs away
// (removing the node or its storage role) is refused when a pool would drop
// below its size or lose its last copy. When nothing would be lost and the
// change is not forced, the node's OSDs are drained first: marked out, and
// the guard returns once every placement group is active+clean again.
func (d *Driver) Guard(ctx context.Context, env *driver.Env, ch driver.Change) error {
	st, needed, err := guarded(ctx, env, ch)
	if err != nil || !needed {
		return err
	}
	if err := openHere(env, &st); errors.Is(err, errNoKey) {
		return d.guardElsewhere(ctx, env, st.SealID, ch)
	} else if err != nil {
		return fmt.Errorf("cannot check what removing %s would lose: %w; use --force to go ahead unchecked", ch.Node, err)
	}
	return d.guardHere(ctx, env, st, ch)
}

// guarded reads the storage state for ch; needed is false when ch takes no
// OSDs away (another role goes, no Ceph cluster yet, or the node has none).
func guarded(ctx context.Context, env *driver.Env, ch driver.Change) (state, bool, error) {
	if ch.Kind == driver.RemoveRole && ch.Role != roles.Storage {
		return state{}, false, nil
	}
	st, err := readState(ctx, env.DB)
	if err != nil {
		return state{}, false, err
	}
	return st, st.created() && contains(st.hostsWithOSDs(env), ch.Node), nil
}

// guardPath is where a node that holds no storage seal key has a node that
// runs Ceph check (and drain for) a change: POST, the driver.Change.
const guardPath = "storage/guard"

// guardElsewhere asks a node that runs Ceph to guard ch, for a node that
// holds no key to the Ceph secrets (a control-only node removing a storage
// node). Each candidate is asked first, briefly, whether it holds the
// recorded key (a light call), so that a node that hangs costs seconds and
// not the whole request; the node being removed is asked last. The first
// that answers decides: its refusal is the refusal here.
func (d *Driver) guardElsewhere(ctx context.Context, env *driver.Env, sealID string, ch driver.Change) error {
	var first, last []driver.Node
	for _, n := range d.keyHolders(env) {
		switch {
		case !d.AppliesTo(env, n) || env.Peers == nil:
		case n.Name == ch.Node:
			last = append(last, n)
		default:
			first = append(first, n)
		}
	}
	var tried []string
	for _, n := range append(first, last...) {
		var h sealHolder
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := env.Peers.Get(pctx, n.Name, sealHolderPath, &h)
		cancel()
		if err == nil && h.ID != sealID {
			err = errors.New("does not hold the storage seal key")
		}
		if err == nil {
			err = env.Peers.Post(ctx, n.Name, guardPath, ch, nil)
			switch {
			case err == nil:
				return nil
			case driver.StatusCode(err) == http.StatusConflict:
				return errors.Unwrap(err)
			}
		}
		tried = append(tried, fmt.Sprintf("%s: %v", n.Name, err))
	}
	why := "no other node runs Ceph"
	if len(tried) > 0 {
		why = "none of the nodes that run Ceph could check it (" + strings.Join(tried, "; ") + ")"
	}
	return fmt.Errorf("%s holds no key to the Ceph secrets and %s, so what removing %s would lose is not known: try again when %s answers, or use --force to go ahead unchecked", env.Local.Name, why, ch.Node, d.cephNodes(env))
}

// handleGuard checks (and drains for) a change on behalf of a member that
// holds no storage seal key (guardElsewhere). A refusal answers 409 with
// its sentence; this node not holding the key either, 503.
func (d *Driver) handleGuard(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	if req.Caller == "" {
		return nil, driver.Errorf(http.StatusForbidden, "the storage guard is asked here by cluster members only; run `cloudctl cluster remove` or `cloudctl role remove`")
	}
	ch, err := driver.DecodeChange(req)
	if err != nil {
		return nil, err
	}
	if ch.Kind != driver.RemoveNode && ch.Kind != driver.RemoveRole {
		return nil, driver.Errorf(http.StatusBadRequest, "the guarded change has an unknown kind %q", ch.Kind)
	}
	if _, ok := env.Node(ch.Node); !ok {
		return nil, driver.Errorf(http.StatusBadRequest, "the guarded change names %s, which is not a member", ch.Node)
	}
	st, needed, err := guarded(ctx, env, ch)
	if err != nil {
		return nil, err
	}
	if !needed {
		return struct{}{}, nil
	}
	if err := openHere(env, &st); errors.Is(err, errNoKey) {
		return nil, driver.Errorf(http.StatusServiceUnavailable, "%s does not hold the storage seal key yet: ask another node that runs Ceph", env.Local.Name)
	} else if err != nil {
		return nil, driver.Errorf(http.StatusServiceUnavailable, "%v", err)
	}
	env.Log.Info("storage: guarding a change for a member that holds no storage seal key", "for", req.Caller, "change", string(ch.Kind), "node", ch.Node)
	if err := d.guardHere(ctx, env, st, ch); err != nil {
		return nil, driver.Errorf(http.StatusConflict, "%v", err)
	}
	return struct{}{}, nil
}

// guardHere is the guard on a node whose st holds the opened keys.
func (d *Driver) guardHere(ctx context.Context, env *driver.Env, st state, ch driver.Change) error {
	hosts := st.hostsWithOSDs(env)
	conn, err := d.conn(ctx, st)
	if err != nil {
		return fmt.Errorf("cannot check what removing %s would lose: %w; use --force to go ahead unchecked", ch.Node, err)
	}
	uses, err := poolUses(ctx, conn)
	if err != nil {
		d.conns.drop(conn)
		return fmt.Errorf("cannot check what removing %s would lose: %w; use --force to go ahead unchecked", ch.Node, err)
	}
	if err := GuardRemoval(ch.Node, hosts, uses); err != nil {
		return err
	}
	if ch.Force {
		return nil
	}
	return d.drain(ctx, env, conn, st, ch.Node)
}

func poolUses(ctx context.Context, conn *cephConn) ([]PoolUse, error) {
	pools, err := conn.pools(ctx)
	if err != nil {
		return nil, err
	}
	df, err := conn.df(ctx)
	if err != nil {
		return nil, err
	}
	var out []PoolUse
	for _, p := range pools {
		u := PoolUse{Name: p.Name, Size: p.Size}
		for _, s := range df.Pools {
			if s.Name == p.Name {
				u.Objects, u.Bytes = s.Stats.Objects, s.Stats.Stored
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// drain marks node's OSDs out and waits until the data moved off them.
func (d *Driver) drain(ctx context.Context, env *driver.Env, conn *cephConn, st state, node string) error {
	var ids []string
	for _, o := range st.osdsOf(node) {
		ids = append(ids, strconv.Itoa(o.ID))
	}
	if len(ids) == 0 {
		return nil
	}
	if err := d.checkRoom(ctx, conn, st, node); err != nil {
		return err
	}
	if err := conn.mon(ctx, map[string]any{"prefix": "osd out", "ids": ids}, nil, nil); err != nil {
		return fmt.Errorf("drain %s: mark its OSDs out: %w", node, err)
	}
	for _, o := range st.osdsOf(node) {
		_ = setOSDState(ctx, env.DB, o.ID, osdDraining)
	}
	ctx, cancel := context.WithTimeout(ctx, stepTimeout(env, "ceph_drain", 10*time.Minute))
	defer cancel()
	env.Log.Info("storage: draining the OSDs of a node before its removal", "node", node, "osds", ids)
	var last string
	for {
		// Fresh statistics first: right after `osd out` the last ones
		// still show every placement group clean where it was.
		err := conn.flushPGStats(ctx)
		var stat cephStatus
		if err == nil {
			stat, err = conn.status(ctx)
		}
		if err == nil && stat.allClean() {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d placement groups, not all active+clean", stat.PGMap.NumPGs)
		}
		select {
		case <-ctx.Done():
			_ = conn.mon(context.Background(), map[string]any{"prefix": "osd in", "ids": ids}, nil, nil)
			for _, o := range st.osdsOf(node) {
				_ = setOSDState(context.Background(), env.DB, o.ID, osdReady)
			}
			return fmt.Errorf("drain %s: the data did not move off its OSDs in time (%s); its OSDs are back in; try again, or use --force", node, last)
		case <-time.After(time.Second):
		}
	}
}

// checkRoom refuses a drain when the other OSDs cannot hold node's data.
func (d *Driver) checkRoom(ctx context.Context, conn *cephConn, st state, node string) error {
	var osdDF struct {
		Nodes []struct {
			ID      int   `json:"id"`
			KBUsed  int64 `json:"kb_used_data"`
			KBAvail int64 `json:"kb_avail"`
		} `json:"nodes"`
	}
	if err := conn.mon(ctx, map[string]any{"prefix": "osd df"}, nil, &osdDF); err != nil {
		// osd df is served by the manager; without one, skip the check.
		return nil
	}
	mine := map[int]bool{}
	for _, o := range st.osdsOf(node) {
		mine[o.ID] = true
	}
	var used, avail int64
	for _, n := range osdDF.Nodes {
		if mine[n.ID] {
			used += n.KBUsed
		} else {
			avail += n.KBAvail
		}
	}
	if used*10 > avail*8 {
		return fmt.Errorf("drain %s: its OSDs hold %s but the others have %s free; add room first or use --force", node, humanBytes(used<<10), humanBytes(avail<<10))
	}
	return nil
}
