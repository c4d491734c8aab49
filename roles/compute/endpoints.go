package compute

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"

	lxd "github.com/canonical/lxd/client"
	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// Endpoints implements driver.Driver.
func (d *Driver) Endpoints() []driver.Endpoint {
	return []driver.Endpoint{
		{Path: "compute/state", Method: http.MethodGet, Handler: d.stateHandler},
		{Path: "compute/join/{name}", Method: http.MethodGet, Handler: d.joinHandler},
		{Path: "compute/access", Method: http.MethodPost, Handler: d.accessIssue, LocalOnly: true},
		{Path: "compute/access", Method: http.MethodGet, Handler: d.accessList, LocalOnly: true},
		{Path: "compute/access/{name}", Method: http.MethodDelete, Handler: d.accessRevoke, LocalOnly: true},
	}
}

func (d *Driver) stateHandler(ctx context.Context, env *driver.Env, _ driver.Request) (any, error) {
	return d.localState(ctx, env), nil
}

// joinHandler issues an LXD join token for a compute node (called by that
// node's cloudd over the cluster's mutual TLS; the token is never shown).
func (d *Driver) joinHandler(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	name := req.Vars["name"]
	n, ok := env.Node(name)
	if !ok || !n.Has(roles.Compute) {
		return nil, driver.Errorf(http.StatusBadRequest, "%q is not a compute node of this cluster: only compute nodes join the LXD cluster", name)
	}
	c, err := ready(ctx, pathsIn(env.Dir))
	if err != nil {
		return nil, driver.Errorf(http.StatusServiceUnavailable, "LXD does not answer on %s", env.Local.Name)
	}
	srv, _, err := c.GetServer()
	if err != nil {
		return nil, fmt.Errorf("read LXD server: %w", err)
	}
	if !srv.Environment.ServerClustered {
		return nil, driver.Errorf(http.StatusConflict, "LXD on %s is not clustered yet", env.Local.Name)
	}
	// A joiner needs the cluster-wide network and pool to exist: LXD
	// refuses a member that has no config for them ("Joining member has no
	// config for network ..."), and such a failed join is slow to undo.
	if err := joinable(c); err != nil {
		return nil, driver.Errorf(http.StatusServiceUnavailable, "LXD on %s is not ready for joiners yet: %v; the join is retried", env.Local.Name, err)
	}
	// A member name can have one pending join token: drop an older one.
	if ops, err := c.GetOperations(); err == nil {
		for i := range ops {
			op := &ops[i]
			if op.Class == "token" && fmt.Sprint(op.Metadata["serverName"]) == name {
				_ = c.DeleteOperation(op.ID)
			}
		}
	}
	// A member of that name left behind by an earlier attempt must go first.
	if ms, err := c.GetClusterMemberNames(); err == nil {
		for _, m := range ms {
			if m == name {
				return nil, driver.Errorf(http.StatusConflict, "%s is already an LXD cluster member", name)
			}
		}
	}
	op, err := c.CreateClusterMember(lxdapi.ClusterMembersPost{ServerName: name})
	if err != nil {
		return nil, fmt.Errorf("create LXD join token for %s: %w", name, err)
	}
	opv := op.Get()
	tok, err := opv.ToClusterJoinToken()
	if err != nil {
		return nil, fmt.Errorf("read LXD join token for %s: %w", name, err)
	}
	cl, _, err := c.GetCluster()
	if err != nil {
		return nil, fmt.Errorf("read LXD cluster: %w", err)
	}
	return JoinInfo{Token: tok.String(), Address: fmt.Sprint(srv.Config["core.https_address"]), Certificate: srv.Environment.Certificate, MemberKeys: cl.MemberConfig}, nil
}

// joinable reports whether the LXD cluster's own network and pool are
// created, so that a joiner can be given their per-member config.
func joinable(c lxd.InstanceServer) error {
	nw, _, err := c.GetNetwork(NetworkName)
	if err != nil {
		return fmt.Errorf("network %s: %w", NetworkName, err)
	}
	if nw.Status != lxdapi.NetworkStatusCreated {
		return fmt.Errorf("network %s is %s", NetworkName, strings.ToLower(nw.Status))
	}
	pool, _, err := c.GetStoragePool(PoolName)
	if err != nil {
		return fmt.Errorf("storage pool %s: %w", PoolName, err)
	}
	if pool.Status != lxdapi.StoragePoolStatusCreated {
		return fmt.Errorf("storage pool %s is %s", PoolName, strings.ToLower(pool.Status))
	}
	return nil
}

func (d *Driver) accessIssue(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	var ar api.ComputeAccessRequest
	if err := driver.DecodeBody(req, &ar); err != nil {
		return nil, err
	}
	if ar.Name == "" {
		ar.Name = "cloudctl-" + env.Now().UTC().Format("20060102-150405")
	}
	if err := api.ValidNodeName(ar.Name); err != nil {
		return nil, driver.Errorf(http.StatusBadRequest, "client name %q: %v", ar.Name, err)
	}
	c, err := d.localLXD(ctx, env)
	if err != nil {
		return nil, err
	}
	op, err := c.CreateCertificateToken(lxdapi.CertificatesPost{Name: ar.Name, Type: "client", Token: true})
	if err != nil {
		return nil, fmt.Errorf("create LXD trust token: %w", err)
	}
	opv := op.Get()
	tok, err := opv.ToCertificateAddToken()
	if err != nil {
		return nil, fmt.Errorf("read LXD trust token: %w", err)
	}
	addr := accessAddress(env.Plan, env.Local.IP, lxdPort(env))
	s, err := retargetToken(tok.String(), addr)
	if err != nil {
		return nil, err
	}
	return api.ComputeAccess{Name: ar.Name, Token: s, Address: addr, ExpiresAt: tok.ExpiresAt}, nil
}

// localLXD is this node's LXD; access tokens are issued by a compute node.
func (d *Driver) localLXD(ctx context.Context, env *driver.Env) (lxd.InstanceServer, error) {
	if !env.Local.Has(roles.Compute) {
		var names []string
		for _, n := range env.WithRole(roles.Compute) {
			names = append(names, n.Name)
		}
		sort.Strings(names)
		if len(names) == 0 {
			return nil, driver.Errorf(http.StatusConflict, "no node has the compute role: add it with `cloudctl role add NODE compute` first")
		}
		return nil, driver.Errorf(http.StatusConflict, "%s runs no LXD: run this on a compute node (%s)", env.Local.Name, strings.Join(names, ", "))
	}
	c, err := ready(ctx, pathsIn(env.Dir))
	if err != nil {
		return nil, driver.Errorf(http.StatusServiceUnavailable, "LXD does not answer on %s yet: wait for `cloudctl status` to show it online", env.Local.Name)
	}
	return c, nil
}

// pendingAccess lists the trust tokens issued and not used yet.
func pendingAccess(ops []lxdapi.Operation) []api.ComputeAccess {
	var out []api.ComputeAccess
	for i := range ops {
		op := &ops[i]
		if op.Class != "token" || op.Status != "Running" {
			continue
		}
		if _, ok := op.Metadata["serverName"]; ok {
			continue // an LXD join token, not a trust token
		}
		t, err := op.ToCertificateAddToken()
		if err != nil {
			continue
		}
		out = append(out, api.ComputeAccess{Name: t.ClientName, ExpiresAt: t.ExpiresAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (d *Driver) accessList(ctx context.Context, env *driver.Env, _ driver.Request) (any, error) {
	c, err := d.localLXD(ctx, env)
	if err != nil {
		return nil, err
	}
	ops, err := c.GetOperations()
	if err != nil {
		return nil, fmt.Errorf("list LXD operations: %w", err)
	}
	out := pendingAccess(ops)
	if out == nil {
		out = []api.ComputeAccess{}
	}
	return out, nil
}

func (d *Driver) accessRevoke(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	name := req.Vars["name"]
	c, err := d.localLXD(ctx, env)
	if err != nil {
		return nil, err
	}
	ops, err := c.GetOperations()
	if err != nil {
		return nil, fmt.Errorf("list LXD operations: %w", err)
	}
	found := false
	for i := range ops {
		op := &ops[i]
		if op.Class != "token" || op.Status != "Running" {
			continue
		}
		if _, ok := op.Metadata["serverName"]; ok {
			continue
		}
		if t, err := op.ToCertificateAddToken(); err == nil && t.ClientName == name {
			if err := c.DeleteOperation(op.ID); err != nil {
				return nil, fmt.Errorf("revoke trust token %s: %w", name, err)
			}
			found = true
		}
	}
	if !found {
		return nil, driver.Errorf(http.StatusNotFound, "no pending trust token named %q on %s (see `cloudctl compute access --list`)", name, env.Local.Name)
	}
	return nil, nil
}
