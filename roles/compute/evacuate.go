package compute

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	lxd "github.com/canonical/lxd/client"
	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// movePrefix starts the temporary name LXD 5.0 gives an instance it moves
// to another member ("lxd-move-of-" and the instance's volatile.uuid): it
// copies the instance there under that name, deletes the original and
// renames the copy back. When the rename fails (the target member missed a
// heartbeat: "Target node is offline") the instance is left under the
// temporary name, and a second evacuation of it fails on the name.
const movePrefix = "lxd-move-of-"

// settleWait bounds how long a leaving node waits for the other LXD members
// to be online before it moves its instances anyway.
const settleWait = 2 * time.Minute

// moved is what a leaving node knew of one of its instances before moving it.
type moved struct {
	Name    string
	Running bool
}

// movesOf are the instances located on member, by volatile.uuid.
func movesOf(insts []lxdapi.Instance, member string) map[string]moved {
	out := map[string]moved{}
	for _, in := range insts {
		if in.Location != member || strings.HasPrefix(in.Name, movePrefix) {
			continue
		}
		if id := in.Config["volatile.uuid"]; id != "" {
			out[id] = moved{Name: in.Name, Running: in.StatusCode == lxdapi.Running}
		}
	}
	return out
}

// repair is one half-done move to finish: rename Temp back to Name.
type repair struct {
	Temp, Name string
	// Stop: the copy runs (it cannot be renamed running); Start: the
	// instance ran before the move.
	Stop, Start bool
}

// halfMoved pairs the instances left under a temporary name with the name
// they had (known), when that name is free.
func halfMoved(insts []lxdapi.Instance, known map[string]moved) []repair {
	taken := map[string]bool{}
	for _, in := range insts {
		taken[in.Name] = true
	}
	var out []repair
	for _, in := range insts {
		id, ok := strings.CutPrefix(in.Name, movePrefix)
		if !ok {
			continue
		}
		m, ok := known[id]
		if !ok || taken[m.Name] {
			continue
		}
		out = append(out, repair{Temp: in.Name, Name: m.Name, Stop: in.StatusCode == lxdapi.Running, Start: m.Running})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// othersOnline reports whether every LXD member but me is online, and
// names those that are not.
func othersOnline(ms []lxdapi.ClusterMember, me string) (bool, []string) {
	var off []string
	for _, m := range ms {
		if m.ServerName != me && m.Status != "Online" {
			off = append(off, m.ServerName+" ("+m.Status+")")
		}
	}
	return len(off) == 0, off
}

// rememberMoves records what this node knew of its instances before moving
// them (kept for this process's life: after a restart of cloudd, a copy left
// under a temporary name is only logged, and a person renames it).
func (d *Driver) rememberMoves(m map[string]moved) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.moves == nil {
		d.moves = map[string]moved{}
	}
	for id, mv := range m {
		d.moves[id] = mv
	}
}

// repairMoves finishes the half-done moves of this node's instances: each
// copy left under its temporary name gets its name back (and is started if
// it ran before). It reports how many are still left.
func (d *Driver) repairMoves(ctx context.Context, c lxd.InstanceServer, log *slog.Logger) (int, error) {
	d.mu.Lock()
	known := make(map[string]moved, len(d.moves))
	for id, m := range d.moves {
		known[id] = m
	}
	d.mu.Unlock()
	insts, err := c.GetInstances(lxdapi.InstanceTypeAny)
	if err != nil {
		return 0, fmt.Errorf("list LXD instances: %w", err)
	}
	todo := halfMoved(insts, known)
	fixable := map[string]bool{}
	for _, r := range todo {
		fixable[r.Temp] = true
	}
	for _, in := range insts {
		if strings.HasPrefix(in.Name, movePrefix) && !fixable[in.Name] {
			log.Warn("compute: an instance is left under LXD's temporary name of a move and its name is not known here (cloudd restarted since, or the name is taken): rename it with `lxc move`", "instance", in.Name, "location", in.Location)
		}
	}
	for i, r := range todo {
		if err := finishMove(ctx, c, r); err != nil {
			return len(todo) - i, fmt.Errorf("give %s its name %s back after a half-done move: %w", r.Temp, r.Name, err)
		}
		log.Warn("compute: finished a move LXD left half-done (the copy kept its temporary name)", "instance", r.Name, "was", r.Temp)
	}
	return 0, nil
}

func finishMove(ctx context.Context, c lxd.InstanceServer, r repair) error {
	ctx = bounded(ctx, 2*time.Minute)
	if r.Stop {
		op, err := c.UpdateInstanceState(r.Temp, lxdapi.InstanceStatePut{Action: "stop", Force: true, Timeout: -1}, "")
		if err == nil {
			err = wait(ctx, op, "stop "+r.Temp)
		}
		if err != nil {
			return err
		}
	}
	op, err := c.RenameInstance(r.Temp, lxdapi.InstancePost{Name: r.Name})
	if err == nil {
		err = wait(ctx, op, "rename "+r.Temp)
	}
	if err != nil {
		return err
	}
	if r.Start {
		op, err := c.UpdateInstanceState(r.Name, lxdapi.InstanceStatePut{Action: "start", Timeout: -1}, "")
		if err == nil {
			err = wait(ctx, op, "start "+r.Name)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// settling reports whether a leaving node should still wait for the other
// LXD members to be online before moving its instances (at most settleWait
// from the first time it found one that is not).
func (d *Driver) settling(now time.Time, allOnline bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if allOnline {
		d.settleSince = time.Time{}
		return false
	}
	if d.settleSince.IsZero() {
		d.settleSince = now
	}
	return now.Sub(d.settleSince) < settleWait
}

// handoverGap spaces LXD restarts out after the third in a row that left
// this member leading.
const handoverGap = time.Minute

// nextHandover says whether LXD may be restarted now to hand its lead over
// (counting it) and how many restarts were made (resetHandovers starts the
// count again).
func (d *Driver) nextHandover(now time.Time) (int, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.handovers >= 3 && now.Sub(d.lastHandover) < handoverGap {
		return d.handovers, false
	}
	d.handovers++
	d.lastHandover = now
	return d.handovers, true
}

// resetHandovers forgets the handover restarts: the lead moved, or the node
// has the compute role again.
func (d *Driver) resetHandovers() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handovers, d.lastHandover = 0, time.Time{}
}

// leadership tells whether me leads the LXD database and, when it does,
// why its lead cannot be handed over (nil when it can): another voter must
// take it, and the voters left online must be a majority of all voters, or
// the database stops answering while this member's LXD restarts. Only
// voters whose node keeps the compute role (in keep) count as online: one
// that is leaving may be gone by then. Below three members LXD keeps a
// single voter, the leader: nothing can take over.
func leadership(ms []Member, me string, keep map[string]bool) (leader bool, blocked error) {
	if len(ms) < 2 {
		return false, nil
	}
	voters, online := 0, 0
	var off []string
	for _, m := range ms {
		if !isVoter(m.Roles) {
			continue
		}
		voters++
		for _, r := range m.Roles {
			if r == "database-leader" && m.Name == me {
				leader = true
			}
		}
		switch {
		case m.Name == me:
		case !keep[m.Name]:
			off = append(off, m.Name+" (leaving the compute role)")
		case m.Status == "Online":
			online++
		default:
			// Evacuated says nothing of whether its LXD is up: not
			// counted either.
			off = append(off, m.Name+" ("+m.Status+")")
		}
	}
	switch {
	case !leader || 2*online > voters:
		return leader, nil
	case len(off) == 0 && voters > 1:
		// Two voters, both online: a moment after a shrink from three,
		// before LXD demotes one.
		return true, fmt.Errorf("%s leads the LXD database while LXD is still settling its database voters (%d, none offline): wait a moment", me, voters)
	case voters == 1:
		return true, fmt.Errorf("%s holds the only copy of the LXD database (an LXD cluster of fewer than three members keeps one), and LXD 5.0 loses it when that member leaves: add a compute node first", me)
	default:
		return true, fmt.Errorf("%s leads the LXD database and too few of its other database voters can take over (%s): bring them back online, restore an evacuated one or let a leaving one finish first", me, strings.Join(off, ", "))
	}
}

// computeNodes names the nodes that have the compute role.
func computeNodes(env *driver.Env) map[string]bool {
	keep := map[string]bool{}
	for _, n := range env.WithRole(roles.Compute) {
		keep[n.Name] = true
	}
	return keep
}

// members converts LXD's member list.
func members(ms []lxdapi.ClusterMember) []Member {
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{Name: m.ServerName, URL: m.URL, Status: m.Status, Message: m.Message, Roles: m.Roles})
	}
	return out
}

// restore brings back a member this node evacuated to leave the compute
// role, now that it has the role again: LXD places instances on it again
// and moves back those it evacuated. A member evacuated by a person (no
// mark) is left alone.
func (d *Driver) restore(ctx context.Context, env *driver.Env, c lxd.InstanceServer, p paths, step func(driver.Step)) error {
	if _, err := os.Stat(p.evacuated); err != nil {
		return nil
	}
	me := env.Local.Name
	m, _, err := c.GetClusterMember(me)
	if err != nil {
		return fmt.Errorf("read this LXD member: %w", err)
	}
	if m.Status != "Evacuated" {
		return os.Remove(p.evacuated)
	}
	step(driver.Step{Name: "restore the evacuated LXD member", State: "running"})
	env.Log.Info("compute: restoring this LXD member (evacuated, and the node has the compute role)", "node", me)
	op, err := c.UpdateClusterMemberState(me, lxdapi.ClusterMemberStatePost{Action: "restore"})
	if err == nil {
		err = wait(bounded(ctx, 10*time.Minute), op, "restore "+me)
	}
	if err != nil {
		step(driver.Step{Name: "restore the evacuated LXD member", State: "failed", Detail: err.Error()})
		return fmt.Errorf("restore %s's LXD member: %w", me, err)
	}
	step(driver.Step{Name: "restore the evacuated LXD member", State: "done"})
	return os.Remove(p.evacuated)
}
