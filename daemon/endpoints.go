package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/canonical/lxd/lxd/response"
	lxdapi "github.com/canonical/lxd/shared/api"
	"github.com/canonical/microcluster/rest"
	"github.com/canonical/microcluster/state"
	"github.com/gorilla/mux"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// PathPrefix is where cloudd's own API lives: /1.0/...
const PathPrefix = "1.0"

const requestTimeout = 30 * time.Second

func (d *Daemon) servers() []rest.Server {
	eps := []rest.Endpoint{
		{Path: "status", Get: rest.EndpointAction{Handler: d.handleStatus}},
		{Path: "nodes", Get: rest.EndpointAction{Handler: d.handleNodes}},
		{Path: "nodes/{name}", Delete: rest.EndpointAction{Handler: d.handleNodeDelete}},
		{Path: "nodes/{name}/roles", Patch: rest.EndpointAction{Handler: d.handleRoles}},
		{Path: "nodes/{name}/labels", Patch: rest.EndpointAction{Handler: d.handleLabels}},
		{Path: "plan", Get: rest.EndpointAction{Handler: d.handlePlanGet}, Put: rest.EndpointAction{Handler: d.handlePlanPut}},
		{Path: "plan/floating-address", Put: rest.EndpointAction{Handler: d.handleFloatingAddress}},
		{Path: "tokens", Get: rest.EndpointAction{Handler: d.handleTokensGet}, Post: rest.EndpointAction{Handler: d.handleTokensPost}},
		{Path: "tokens/{name}", Delete: rest.EndpointAction{Handler: d.handleTokenDelete}},
		// Before bootstrap it answers with this cloudd's own manifest, so
		// the plan is made with the manifest the cluster will keep.
		{Path: "manifest", Get: rest.EndpointAction{Handler: d.handleManifest}, AllowedBeforeInit: true},
		{Path: "reconcile", Get: rest.EndpointAction{Handler: d.handleReconcileGet}, Post: rest.EndpointAction{Handler: d.handleReconcilePost}},
		// A joining node is not trusted yet: it proves nothing but the secret,
		// and the answer reveals only whether that secret is usable.
		{Path: "token-check", Post: rest.EndpointAction{Handler: d.handleTokenCheck, AllowUntrusted: true}},
		{Path: "token-redeem", Post: rest.EndpointAction{Handler: d.handleTokenRedeem, AllowUntrusted: true}},
	}
	eps = d.refuseWithoutQuorum(eps)
	// Before the join, over the local socket: see interrupted.go.
	eps = append(eps, rest.Endpoint{Path: "join-intent", Post: rest.EndpointAction{Handler: d.handleJoinIntent}, AllowedBeforeInit: true})
	eps = append(eps, d.preflightEndpoints()...)
	eps = append(eps, d.driverEndpoints()...)
	eps = append(eps, d.recoverEndpoints()...)
	return []rest.Server{{
		CoreAPI:   true,
		ServeUnix: true,
		Resources: []rest.Resources{{PathPrefix: PathPrefix, Endpoints: eps}},
	}}
}

func reqCtx(s *state.State, r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), requestTimeout)
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, driver.MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return lxdapi.StatusErrorf(http.StatusBadRequest, "invalid request body: %v", err)
	}
	return nil
}

func nameVar(r *http.Request) (string, error) {
	return url.PathUnescape(mux.Vars(r)["name"])
}

func (d *Daemon) handleStatus(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	st, err := d.status(ctx, s)
	if err != nil {
		return response.SmartError(err)
	}
	return response.SyncResponse(true, st)
}

func (d *Daemon) handleNodes(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	st, err := d.status(ctx, s)
	if err != nil {
		return response.SmartError(err)
	}
	return response.SyncResponse(true, st.Members)
}

func (d *Daemon) handleRoles(s *state.State, r *http.Request) response.Response {
	name, err := nameVar(r)
	if err != nil {
		return response.BadRequest(err)
	}
	var ch api.RolesChange
	if err := decode(r, &ch); err != nil {
		return response.SmartError(err)
	}
	// A role that goes is guarded first, and a guard may move data (a
	// storage node's OSDs drain): driver.GuardTimeout, not 30 seconds.
	timeout := requestTimeout
	if len(ch.Remove) > 0 {
		timeout = driver.GuardTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	node, err := d.changeRoles(ctx, s, name, ch, false)
	if err != nil {
		return response.SmartError(err)
	}
	d.kickMembers(ctx, s)
	return response.SyncResponse(true, node)
}

// changeRoles adds and removes roles of one node. The role drivers' guards
// are asked before a role goes, here in the daemon, so the API refuses what
// the CLI refuses. Only a node being removed (leaving) may end with no role.
func (d *Daemon) changeRoles(ctx context.Context, s *state.State, name string, ch api.RolesChange, leaving bool) (api.Node, error) {
	for _, r := range append(append([]string{}, ch.Add...), ch.Remove...) {
		if !roles.Valid(roles.Role(r)) {
			return api.Node{}, lxdapi.StatusErrorf(http.StatusBadRequest, "unknown role %q: use control, compute or storage", r)
		}
	}
	var before nodeRow
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		n, err := getNode(ctx, tx, name)
		if err != nil {
			return err
		}
		if n == nil {
			return lxdapi.StatusErrorf(http.StatusNotFound, "there is no node %q in this cluster: `cloudctl cluster list` shows the members", name)
		}
		before = *n
		_, err = nextRoles(*n, ch, leaving)
		return err
	})
	if err != nil {
		return api.Node{}, err
	}
	if len(ch.Remove) > 0 {
		env, err := d.buildEnv(ctx, s)
		if err != nil {
			return api.Node{}, err
		}
		for _, r := range ch.Remove {
			if err := d.guard(ctx, env, driver.Change{Kind: driver.RemoveRole, Node: name, Role: roles.Role(r)}); err != nil {
				return api.Node{}, err
			}
		}
	}
	var out api.Node
	err = s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		n, err := getNode(ctx, tx, name)
		if err != nil {
			return err
		}
		if n == nil || strings.Join(n.Roles, ",") != strings.Join(before.Roles, ",") {
			return lxdapi.StatusErrorf(http.StatusConflict, "the roles of %s changed meanwhile: look with `cloudctl cluster list` and try again", name)
		}
		next, err := nextRoles(*n, ch, leaving)
		if err != nil {
			return err
		}
		n.Roles = nil
		if len(next) > 0 {
			n.Roles = strings.Split(roles.Join(next), ",")
		}
		if err := upsertNode(ctx, tx, *n); err != nil {
			return err
		}
		out = api.Node{Name: n.Name, Roles: n.Roles, Region: n.Region, Zone: n.Zone, JoinedAt: n.JoinedAt}
		return nil
	})
	if err != nil {
		return api.Node{}, err
	}
	d.log.Info("roles changed", "node", name, "add", ch.Add, "remove", ch.Remove, "roles", out.Roles)
	return out, nil
}

// nextRoles is n's roles after ch, or why ch cannot apply; none are left
// only for a node that is leaving.
func nextRoles(n nodeRow, ch api.RolesChange, leaving bool) ([]roles.Role, error) {
	cur := toRoles(n.Roles)
	for _, r := range ch.Remove {
		if !roles.Has(cur, roles.Role(r)) {
			has := strings.Join(n.Roles, ", ")
			if has == "" {
				has = "none: it is being removed"
			}
			return nil, lxdapi.StatusErrorf(http.StatusBadRequest, "%s does not have the %s role (it has: %s)", n.Name, r, has)
		}
	}
	next := []roles.Role{}
	for _, r := range cur {
		keep := true
		for _, rm := range ch.Remove {
			if roles.Role(rm) == r {
				keep = false
			}
		}
		if keep {
			next = append(next, r)
		}
	}
	next = roles.Normalize(append(next, toRoles(ch.Add)...))
	if len(next) == 0 && !leaving {
		return nil, lxdapi.StatusErrorf(http.StatusBadRequest, "%s would be left with no role: add another role first, or remove the node with `cloudctl cluster remove %s`", n.Name, n.Name)
	}
	return next, nil
}

func (d *Daemon) handleLabels(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	name, err := nameVar(r)
	if err != nil {
		return response.BadRequest(err)
	}
	var l api.Labels
	if err := decode(r, &l); err != nil {
		return response.SmartError(err)
	}
	err = s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		n, err := getNode(ctx, tx, name)
		if err != nil {
			return err
		}
		if n == nil {
			return lxdapi.StatusErrorf(http.StatusNotFound, "there is no node %q in this cluster", name)
		}
		if l.Region != nil {
			n.Region = *l.Region
		}
		if l.Zone != nil {
			n.Zone = *l.Zone
		}
		return upsertNode(ctx, tx, *n)
	})
	if err != nil {
		return response.SmartError(err)
	}
	return response.EmptySyncResponse
}

func (d *Daemon) handlePlanGet(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	var raw string
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		raw, err = getConfig(ctx, tx, "plan")
		return err
	})
	if err != nil {
		return response.SmartError(err)
	}
	var p api.Plan
	if raw != "" {
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			return response.InternalError(fmt.Errorf("stored plan is unreadable: %w", err))
		}
	}
	return response.SyncResponse(true, p)
}

func (d *Daemon) handlePlanPut(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	var p api.Plan
	if err := decode(r, &p); err != nil {
		return response.SmartError(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		return response.InternalError(err)
	}
	err = s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		raw, err := getConfig(ctx, tx, "plan")
		if err != nil {
			return err
		}
		var cur api.Plan
		if raw != "" {
			if err := json.Unmarshal([]byte(raw), &cur); err != nil {
				return fmt.Errorf("stored plan is unreadable: %w", err)
			}
		}
		// Each driver refuses a change to what it decided at bootstrap.
		for _, dr := range d.drivers {
			if v, ok := dr.(driver.PlanChangeValidator); ok && raw != "" {
				if err := v.ValidatePlanChange(cur, p); err != nil {
					return lxdapi.StatusErrorf(http.StatusConflict, "%s", err.Error())
				}
			}
		}
		if cur.Cluster != "" && p.Cluster != cur.Cluster {
			return lxdapi.StatusErrorf(http.StatusConflict, "the cluster name %q cannot be changed", cur.Cluster)
		}
		return setConfig(ctx, tx, "plan", string(b))
	})
	if err != nil {
		return response.SmartError(err)
	}
	return response.EmptySyncResponse
}

func (d *Daemon) handleTokensGet(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	ts, err := d.listTokens(ctx, s)
	if err != nil {
		return response.SmartError(err)
	}
	if ts == nil {
		ts = []api.Token{}
	}
	return response.SyncResponse(true, ts)
}

func (d *Daemon) handleTokensPost(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	var req api.TokenRequest
	if err := decode(r, &req); err != nil {
		return response.SmartError(err)
	}
	t, err := d.issueToken(ctx, s, req)
	if err != nil {
		return response.SmartError(err)
	}
	// The dqlite leader's sweep now watches a pending token.
	d.kickSweep()
	d.kickMembers(ctx, s)
	return response.SyncResponse(true, t)
}

func (d *Daemon) handleTokenDelete(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	name, err := nameVar(r)
	if err != nil {
		return response.BadRequest(err)
	}
	if err := d.revokeToken(ctx, s, name); err != nil {
		return response.SmartError(err)
	}
	d.log.Info("join token revoked", "name", name)
	return response.EmptySyncResponse
}

func (d *Daemon) handleTokenCheck(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	return d.untrustedToken(r, func(req api.TokenCheck) (api.TokenCheckResult, error) { return d.checkToken(ctx, s, req, joinerOf(r)) })
}

// handleManifest returns the cluster's effective manifest as YAML. Before
// bootstrap it answers with this cloudd's own (the default with its
// --manifest overlay) and the overlay's text, which the bootstrap carries.
func (d *Daemon) handleManifest(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	if s.Database == nil || s.Database.IsOpen(ctx) != nil {
		overlay := ""
		if d.cfg.ManifestOverlay != "" {
			data, err := os.ReadFile(d.cfg.ManifestOverlay)
			if err != nil {
				return response.SmartError(fmt.Errorf("read cloudd's --manifest: %w", err))
			}
			overlay = string(data)
		}
		m, err := d.effectiveManifest(overlay)
		if err != nil {
			return response.SmartError(err)
		}
		b, err := m.Marshal()
		if err != nil {
			return response.SmartError(err)
		}
		return response.SyncResponse(true, map[string]string{"yaml": string(b), "overlay": overlay, "initialized": "false"})
	}
	var raw string
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		raw, err = getConfig(ctx, tx, "manifest")
		return err
	})
	if err != nil {
		return response.SmartError(err)
	}
	if raw == "" {
		m, err := manifestFrom("")
		if err != nil {
			return response.SmartError(err)
		}
		b, err := m.Marshal()
		if err != nil {
			return response.SmartError(err)
		}
		raw = string(b)
	}
	return response.SyncResponse(true, map[string]string{"yaml": raw})
}
