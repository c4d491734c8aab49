package control

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// staleAfter is how old a member's last convergence may be before status
// calls its answer stale.
const staleAfter = 4*againSettled + 30*time.Second

// databases assembles the control layer from the members' live answers.
func (d *Driver) databases(ctx context.Context, env *driver.Env) (api.Databases, ClusterView, error) {
	out := api.Databases{Instances: []api.DBInstance{}, Services: []api.DBService{}}
	v, err := readView(ctx, env)
	if err != nil {
		return out, v, err
	}
	out.Topology, out.Reason = v.Topology, env.Plan.MySQLTopologyReason
	if v.Topology == "" {
		return out, v, nil
	}
	insts, err := Layout(v.Topology, v.Manifest, v.InstalledGiB)
	if err != nil {
		return out, v, err
	}
	peers := GaleraPeers(v)
	replicated := len(peers) >= GaleraMembers || anyFormed(v)
	hosts := peers
	if !replicated {
		out.Host = DBHost(v)
		hosts = []string{}
		if out.Host != "" {
			hosts = []string{out.Host}
		}
	}
	ip := map[string]string{}
	for _, n := range v.Nodes {
		ip[n.Name] = n.IP
	}
	now := env.Now()
	// Members' own live answers, not database rows: a node that has just
	// died or restarted must not be shown with its last report.
	live := d.live(ctx, env, v)
	for _, in := range insts {
		di := api.DBInstance{Name: in.Name, Services: in.Services, Port: in.Port, Replication: "standalone", Expected: 1, Members: []api.DBMember{}}
		if replicated {
			di.Replication, di.Expected = "galera", GaleraMembers
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
				if now.Sub(lc.At) > staleAfter {
					m.State = "stale"
				}
				// In the Primary component but still receiving its state
				// transfer: it does not serve yet.
				if replicated && m.State == "running" && m.WsrepStatus == "Primary" && m.Comment != "" && m.Comment != "Synced" {
					m.State = "joining"
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
		var away, notServing []string
		for _, m := range di.Members {
			switch {
			case m.State == "unreachable" || m.State == "stale":
				away = append(away, m.Node)
			case replicated && (m.State != "running" || m.WsrepStatus != "Primary"):
				notServing = append(notServing, m.Node+" "+m.State)
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
		case len(notServing) > 0:
			di.Degraded = "not serving yet: " + strings.Join(notServing, ", ")
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

// Status implements driver.Driver: the control databases' layer. Its
// details are the instances (api.DBInstance list).
func (d *Driver) Status(ctx context.Context, env *driver.Env) api.Layer {
	l := api.Layer{Name: Name, Title: "control databases", Built: true, Members: []api.LayerMember{}}
	dbs, _, err := d.databases(ctx, env)
	if err != nil {
		l.HA, l.Health, l.Reason = api.HANo, api.HealthError, "control databases unknown: "+err.Error()
		return l
	}
	l.Details = rawJSON(dbs.Instances)
	if len(dbs.Instances) == 0 {
		l.HA, l.Health, l.Reason = api.HANo, api.HealthWarning, "no control database yet"
		return l
	}
	states := map[string][]string{}
	for _, in := range dbs.Instances {
		for _, m := range in.Members {
			st := m.State
			if m.WsrepStatus != "" && m.State == "running" {
				st = m.WsrepStatus
			}
			states[m.Node] = append(states[m.Node], st)
		}
	}
	nodes := make([]string, 0, len(states))
	for n := range states {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		l.Members = append(l.Members, api.LayerMember{Node: n, State: summarise(states[n])})
	}
	l.HA, l.Health = api.HAYes, api.HealthOK
	var reasons []string
	for _, in := range dbs.Instances {
		switch {
		case !in.Primary:
			l.HA, l.Health = api.HANo, api.HealthError
			reasons = append(reasons, in.Name+": "+in.Degraded)
		case in.Replication != "galera":
			if l.HA == api.HAYes {
				l.HA = api.HANo
			}
			if l.Health == api.HealthOK {
				l.Health = api.HealthWarning
			}
			reasons = append(reasons, in.Name+": "+in.Degraded)
		case in.Degraded != "":
			if l.HA == api.HAYes {
				l.HA = api.HADegraded
			}
			if l.Health == api.HealthOK {
				l.Health = api.HealthWarning
			}
			reasons = append(reasons, in.Name+": "+in.Degraded)
		}
	}
	l.Reason = firstReasons(reasons, 3)
	return l
}

// summarise turns one node's instance states into one word when they agree.
func summarise(states []string) string {
	for _, s := range states[1:] {
		if s != states[0] {
			return strings.Join(states, ",")
		}
	}
	return states[0]
}

func firstReasons(rs []string, n int) string {
	if len(rs) <= n {
		return strings.Join(rs, "; ")
	}
	return strings.Join(rs[:n], "; ") + fmt.Sprintf("; and %d more", len(rs)-n)
}

// Endpoints implements driver.Driver.
func (d *Driver) Endpoints() []driver.Endpoint {
	return []driver.Endpoint{
		{Path: "control/local", Method: http.MethodGet, Handler: d.handleLocal, Light: true},
		{Path: WritablePath, Method: http.MethodGet, Handler: d.handleWritable, Light: true},
		{Path: "databases", Method: http.MethodGet, Handler: d.handleDatabases},
		{Path: "databases/{name}/credentials", Method: http.MethodGet, Handler: d.handleCredentials, LocalOnly: true},
		{Path: "databases/check", Method: http.MethodPost, Handler: d.handleCheck, LocalOnly: true},
		{Path: SealKeyPath, Method: http.MethodGet, Handler: d.handleSealKey},
	}
}

func (d *Driver) handleLocal(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	d.lastMu.Lock()
	defer d.lastMu.Unlock()
	out := d.last
	out.SealKeyHolder, out.SealKeyID = d.keyHolder, d.keyID
	return out, nil
}

func (d *Driver) handleDatabases(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	dbs, _, err := d.databases(ctx, env)
	if err != nil {
		return dbs, err
	}
	d.floating(ctx, env, &dbs)
	return dbs, nil
}

func (d *Driver) credentials(ctx context.Context, env *driver.Env, svc string) (api.DBCredentials, error) {
	dbs, v, err := d.databases(ctx, env)
	if err != nil {
		return api.DBCredentials{}, err
	}
	d.floating(ctx, env, &dbs)
	for _, ds := range dbs.Services {
		if ds.Service != svc {
			continue
		}
		if err := openHere(env, &v); err != nil {
			return api.DBCredentials{}, err
		}
		c := v.Credentials[svc]
		if c.Password == "" {
			return api.DBCredentials{}, driver.Errorf(http.StatusServiceUnavailable, "the credentials of %s are not created yet: the control role is still starting, try again in a moment", svc)
		}
		if v.CA.CertPEM == "" {
			return api.DBCredentials{}, driver.Errorf(http.StatusServiceUnavailable, "the control databases' CA is not created yet: the control role is still starting, try again in a moment")
		}
		out := api.DBCredentials{Service: svc, Database: ds.Database, User: c.User, Password: c.Password, Endpoints: ds.Endpoints, CA: v.CA.CertPEM,
			Floating: ds.Floating, Note: dbs.EndpointNote}
		switch {
		case ds.Floating != "":
			out.DSN = fmt.Sprintf("%s:%s@tcp(%s)/%s?tls=%s", c.User, c.Password, ds.Floating, ds.Database, api.DBTLSConfigName)
		case len(ds.Endpoints) > 0:
			out.DSN = fmt.Sprintf("%s:%s@tcp(%s)/%s?tls=%s", c.User, c.Password, ds.Endpoints[0], ds.Database, api.DBTLSConfigName)
		}
		return out, nil
	}
	names := make([]string, 0, len(dbs.Services))
	for _, ds := range dbs.Services {
		names = append(names, ds.Service)
	}
	if len(names) == 0 {
		return api.DBCredentials{}, driver.Errorf(http.StatusNotFound, "there are no service databases: this cloud has no control node yet")
	}
	return api.DBCredentials{}, driver.Errorf(http.StatusNotFound, "there is no service %q: the services are %v", svc, names)
}

func (d *Driver) handleCredentials(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	return d.credentials(ctx, env, req.Vars["name"])
}

// handleCheck connects as each service (or the ones asked for) to each of
// its endpoints and writes and reads back a row.
func (d *Driver) handleCheck(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	var in api.DBCheckRequest
	if err := driver.DecodeBody(req, &in); err != nil {
		return nil, err
	}
	dbs, _, err := d.databases(ctx, env)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, s := range in.Services {
		want[s] = true
	}
	out := []api.DBCheck{}
	for _, s := range dbs.Services {
		if len(want) > 0 && !want[s.Service] {
			continue
		}
		delete(want, s.Service)
		cr, err := d.credentials(ctx, env, s.Service)
		if err != nil {
			return nil, err
		}
		eps := cr.Endpoints
		if cr.Floating != "" {
			eps = append([]string{cr.Floating}, eps...)
		}
		for _, ep := range eps {
			r, err := CheckService(ctx, s.Service, cr.User, cr.Password, ep, cr.Database, cr.CA)
			c := api.DBCheck{Service: s.Service, Endpoint: ep, Rows: r.Rows, TookNS: int64(r.Took)}
			if err != nil {
				c.Error = err.Error()
			}
			out = append(out, c)
		}
	}
	for s := range want {
		return nil, driver.Errorf(http.StatusNotFound, "there is no service %q: `cloudctl database list` shows them", s)
	}
	return out, nil
}
