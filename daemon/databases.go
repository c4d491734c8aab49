package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/canonical/lxd/lxd/response"
	lxdapi "github.com/canonical/lxd/shared/api"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles/control"
)

// databases assembles the control layer's state from every member's reports.
func (d *Daemon) databases(ctx context.Context, s *state.State) (api.Databases, control.ClusterView, error) {
	out := api.Databases{Instances: []api.DBInstance{}, Services: []api.DBService{}}
	v, err := d.controlView(ctx, s)
	if err != nil {
		return out, v, err
	}
	out.Topology = v.Topology
	err = s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		raw, err := getConfig(ctx, tx, "plan")
		if err != nil || raw == "" {
			return err
		}
		var p api.Plan
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			return fmt.Errorf("stored plan: %w", err)
		}
		out.Reason = p.MySQLTopologyReason
		return nil
	})
	if err != nil {
		return out, v, err
	}
	if v.Topology == "" {
		return out, v, nil
	}
	insts, err := control.Layout(v.Topology, v.Manifest, v.InstalledGiB)
	if err != nil {
		return out, v, err
	}
	peers := control.GaleraPeers(v)
	replicated := len(peers) >= control.GaleraMembers
	for _, f := range v.Formed {
		replicated = replicated || f
	}
	hosts := peers
	if !replicated {
		out.Host = control.DBHost(v)
		hosts = []string{out.Host}
	}
	ip := map[string]string{}
	for _, n := range v.Nodes {
		ip[n.Name] = n.IP
	}
	now := d.cfg.Now()
	// Members' own live answers, not database rows: a node that has just
	// died or restarted must not be shown with its last report.
	live := d.peerControl(ctx, s, v)
	d.mu.Lock()
	if d.lastControl.Node == s.Name() {
		live[s.Name()] = d.lastControl
	}
	d.mu.Unlock()
	for _, in := range insts {
		di := api.DBInstance{Name: in.Name, Services: in.Services, Port: in.Port, Replication: "standalone", Expected: 1, Members: []api.DBMember{}}
		if replicated {
			di.Replication, di.Expected = "galera", control.GaleraMembers
		}
		for _, h := range hosts {
			m := api.DBMember{Node: h, State: "unreachable"}
			if lc, ok := live[h]; ok {
				m.State, m.UpdatedAt = "unknown", lc.At
				for _, r := range lc.Instances {
					if r.Instance == in.Name {
						m.State, m.WsrepStatus, m.Size, m.Comment, m.Provisioned = r.State, r.WsrepStatus, r.Size, r.Comment, r.Provisioned
					}
				}
				if now.Sub(lc.At) > 4*d.cfg.ControlInterval+30*time.Second {
					m.State = "stale"
				}
			}
			di.Members = append(di.Members, m)
			if m.State == "running" && (!replicated || m.WsrepStatus == "Primary") {
				di.Primary = true
				if m.Size > di.Size {
					di.Size = m.Size
				}
			}
		}
		if !replicated && di.Primary {
			di.Size = 1
		}
		sort.Slice(di.Members, func(i, j int) bool { return di.Members[i].Node < di.Members[j].Node })
		var away []string
		for _, m := range di.Members {
			if m.State == "unreachable" || m.State == "stale" {
				away = append(away, m.Node)
			}
		}
		switch {
		case !di.Primary:
			di.Degraded = "no member accepts writes"
		case replicated && di.Size < di.Expected:
			di.Degraded = fmt.Sprintf("%d of %d members in the Primary component", di.Size, di.Expected)
		case !replicated:
			di.Degraded = "not replicated: a single copy on " + out.Host
		case len(away) > 0:
			di.Degraded = fmt.Sprintf("cloudd on %s does not answer", strings.Join(away, ", "))
		}
		out.Instances = append(out.Instances, di)
		var eps []string
		for _, h := range hosts {
			if ip[h] != "" {
				eps = append(eps, net.JoinHostPort(ip[h], strconv.Itoa(in.Port)))
			}
		}
		for _, svc := range in.Services {
			c := v.Credentials[svc]
			out.Services = append(out.Services, api.DBService{Service: svc, Instance: in.Name, Database: svc, User: c.User, Endpoints: eps, Replication: di.Replication})
		}
	}
	sort.Slice(out.Services, func(i, j int) bool { return out.Services[i].Service < out.Services[j].Service })
	return out, v, nil
}

func (d *Daemon) handleDatabases(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	dbs, _, err := d.databases(ctx, s)
	if err != nil {
		return response.SmartError(err)
	}
	return response.SyncResponse(true, dbs)
}

// handleCredentials answers only on the local control socket (root only).
func (d *Daemon) handleCredentials(s *state.State, r *http.Request) response.Response {
	if r.RemoteAddr != "@" {
		return response.Forbidden(fmt.Errorf("credentials are only given out on the local control socket"))
	}
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	svc, err := nameVar(r)
	if err != nil {
		return response.BadRequest(err)
	}
	dbs, v, err := d.databases(ctx, s)
	if err != nil {
		return response.SmartError(err)
	}
	for _, ds := range dbs.Services {
		if ds.Service != svc {
			continue
		}
		c := v.Credentials[svc]
		out := api.DBCredentials{Service: svc, Database: ds.Database, User: c.User, Password: c.Password, Endpoints: ds.Endpoints}
		if len(ds.Endpoints) > 0 {
			out.DSN = fmt.Sprintf("%s:%s@tcp(%s)/%s", c.User, c.Password, ds.Endpoints[0], ds.Database)
		}
		return response.SyncResponse(true, out)
	}
	names := make([]string, 0, len(dbs.Services))
	for _, ds := range dbs.Services {
		names = append(names, ds.Service)
	}
	if len(names) == 0 {
		return response.SmartError(lxdapi.StatusErrorf(http.StatusNotFound, "there are no service databases: this cloud has no control node yet"))
	}
	return response.SmartError(lxdapi.StatusErrorf(http.StatusNotFound, "there is no service %q: the services are %v", svc, names))
}
