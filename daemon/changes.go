package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/canonical/lxd/lxd/response"
	lxdapi "github.com/canonical/lxd/shared/api"
	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// guard asks every driver whether ch may go ahead. A refusal is one
// sentence; --force overrides it unless the driver said it cannot be forced.
// A node's removal that waits for it to give up a role first
// (driver.LeaveRoleFirst) is returned as such, but only when no other
// driver refuses: a refusal must come before the role is taken away.
func (d *Daemon) guard(ctx context.Context, env *driver.Env, ch driver.Change) error {
	var pending *driver.LeaveRoleFirst
	for _, dr := range d.drivers {
		err := dr.Guard(ctx, d.envFor(env, dr), ch)
		if err == nil {
			continue
		}
		var uf driver.Unforceable
		var first driver.LeaveRoleFirst
		if !ch.Force && ch.Kind == driver.RemoveNode && errors.As(err, &first) {
			if pending == nil {
				pending = &first
			}
			continue
		}
		if ch.Force && !errors.As(err, &uf) {
			d.log.Warn("going ahead by force", "change", string(ch.Kind), "node", ch.Node, "role", dr.Name(), "refusal", err)
			continue
		}
		return lxdapi.StatusErrorf(http.StatusConflict, "%s", err.Error())
	}
	if pending != nil {
		return *pending
	}
	return nil
}

// handleNodeDelete removes a member, after the drivers' guards agreed.
func (d *Daemon) handleNodeDelete(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	name, err := nameVar(r)
	if err != nil {
		return response.BadRequest(err)
	}
	force := r.URL.Query().Get("force") == "1"
	env, err := d.buildEnv(ctx, s)
	if err != nil {
		return response.SmartError(err)
	}
	if _, ok := env.Node(name); !ok {
		return response.SmartError(lxdapi.StatusErrorf(http.StatusNotFound, "there is no node %q in this cluster: `cloudctl cluster list` shows the members", name))
	}
	// The guards may move data first (a storage node's OSDs drain): they
	// get driver.GuardTimeout, not the request's usual bound.
	gctx, gcancel := context.WithTimeout(r.Context(), driver.GuardTimeout)
	defer gcancel()
	if err := d.guard(gctx, env, driver.Change{Kind: driver.RemoveNode, Node: name, Force: force}); err != nil {
		var first driver.LeaveRoleFirst
		if !errors.As(err, &first) {
			return response.SmartError(err)
		}
		if n, _ := env.Node(name); n.Has(first.Role) {
			if _, err := d.changeRoles(ctx, s, name, api.RolesChange{Remove: []string{string(first.Role)}}, true); err != nil {
				return response.SmartError(err)
			}
			d.kickMembers(ctx, s)
		}
		return response.SyncResponse(true, api.NodeRemoval{Waiting: string(first.Role), Reason: first.Error()})
	}
	lc, err := d.localMicrocluster()
	if err != nil {
		return response.SmartError(err)
	}
	if err := lc.DeleteClusterMember(ctx, name, force); err != nil {
		return response.SmartError(err)
	}
	d.log.Info("member removed", "node", name, "force", force)
	d.kickMembers(ctx, s)
	return response.SyncResponse(true, api.NodeRemoval{Removed: true})
}

// handleFloatingAddress sets, changes or removes (empty address) the
// floating address after bootstrap; the drivers converge to it.
func (d *Daemon) handleFloatingAddress(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	var body api.FloatingAddress
	if err := decode(r, &body); err != nil {
		return response.SmartError(err)
	}
	addr := strings.TrimSpace(body.Address)
	if addr != "" {
		if err := validFloatingAddress(addr); err != nil {
			return response.BadRequest(err)
		}
	}
	var p api.Plan
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		raw, err := getConfig(ctx, tx, "plan")
		if err != nil {
			return err
		}
		if raw != "" {
			if err := json.Unmarshal([]byte(raw), &p); err != nil {
				return fmt.Errorf("stored plan is unreadable: %w", err)
			}
		}
		if addr != "" {
			nodes, err := memberIPs(ctx, tx)
			if err != nil {
				return err
			}
			ip := addr
			if h, _, err := net.ParseCIDR(addr); err == nil {
				ip = h.String()
			}
			if n, ok := nodes[ip]; ok {
				return lxdapi.StatusErrorf(http.StatusBadRequest, "%s is %s's own address: the floating address must be a free address on the members' network", ip, n)
			}
		}
		p.FloatingAddress = addr
		b, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("encode plan: %w", err)
		}
		return setConfig(ctx, tx, "plan", string(b))
	})
	if err != nil {
		return response.SmartError(err)
	}
	d.log.Info("floating address changed", "address", addr)
	d.kickMembers(ctx, s)
	return response.SyncResponse(true, p)
}

// validFloatingAddress accepts an IPv4 address, bare or with a prefix
// length (api.ParseFloatingAddress: IPv6 is refused, as by the driver).
func validFloatingAddress(a string) error {
	_, _, err := api.ParseFloatingAddress(a)
	return err
}

// memberIPs maps each member's IP to its name.
func memberIPs(ctx context.Context, tx *sql.Tx) (map[string]string, error) {
	out := map[string]string{}
	nodes, err := getNodes(ctx, tx)
	if err != nil {
		return nil, err
	}
	addrs, err := memberAddresses(ctx, tx)
	if err != nil {
		return nil, err
	}
	for name := range nodes {
		if h, _, err := net.SplitHostPort(addrs[name]); err == nil {
			out[h] = name
		}
	}
	return out, nil
}

// handleReconcileGet answers each driver's last progress steps on this node.
func (d *Daemon) handleReconcileGet(s *state.State, r *http.Request) response.Response {
	return response.SyncResponse(true, d.reconcileSteps())
}

// handleReconcilePost makes this node's loop run now (a member changed
// roles or the plan).
func (d *Daemon) handleReconcilePost(s *state.State, r *http.Request) response.Response {
	d.kick()
	d.kickSweep()
	return response.EmptySyncResponse
}

func memberAddresses(ctx context.Context, tx *sql.Tx) (map[string]string, error) {
	members, err := cluster.GetInternalClusterMembers(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("read member addresses: %w", err)
	}
	out := map[string]string{}
	for _, m := range members {
		out[m.Name] = m.Address
	}
	return out, nil
}
