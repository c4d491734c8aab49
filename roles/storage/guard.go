package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
	if ch.Kind == driver.RemoveRole && ch.Role != roles.Storage {
		return nil
	}
	st, err := readState(ctx, env.DB)
	if err != nil {
		return err
	}
	hosts := st.hostsWithOSDs(env)
	if !st.created() || !contains(hosts, ch.Node) {
		return nil
	}
	if err := openHere(env, &st); errors.Is(err, errNoKey) {
		return fmt.Errorf("%s holds no key to the Ceph secrets, so it cannot check what removing %s would lose: run this on %s, or use --force to go ahead unchecked", env.Local.Name, ch.Node, d.cephNodes(env))
	} else if err != nil {
		return fmt.Errorf("cannot check what removing %s would lose: %w; use --force to go ahead unchecked", ch.Node, err)
	}
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
