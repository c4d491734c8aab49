package compute

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	lxd "github.com/canonical/lxd/client"
	lxdapi "github.com/canonical/lxd/shared/api"
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

// leadership tells whether me leads the LXD database, and names an online
// member that is a database voter and could take the lead over. Below three
// members LXD keeps a single voter, the leader: then there is none.
func leadership(ms []Member, me string) (leader bool, voter string) {
	for _, m := range ms {
		for _, r := range m.Roles {
			switch {
			case r == "database-leader" && m.Name == me:
				leader = true
			case r == "database" && m.Name != me && m.Status == "Online" && voter == "":
				voter = m.Name
			}
		}
	}
	return leader, voter
}

// members converts LXD's member list.
func members(ms []lxdapi.ClusterMember) []Member {
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{Name: m.ServerName, URL: m.URL, Status: m.Status, Message: m.Message, Roles: m.Roles})
	}
	return out
}
