package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// HAControlNodes is how many control nodes make the cloud highly available.
const HAControlNodes = 3

// memberProbeTimeout bounds how long status waits for one member.
const memberProbeTimeout = 2 * time.Second

// status gathers members, roles, reachability and dqlite roles, then one
// layer per role driver present in the cluster. It only reads.
func (d *Daemon) status(ctx context.Context, s *state.State) (api.Status, error) {
	st := api.Status{Local: s.Name(), Version: api.Version, Members: []api.Node{}, Warnings: []string{}, Layers: []api.Layer{}}
	var members []cluster.InternalClusterMember
	var nodes map[string]nodeRow
	dbctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := s.Database.Transaction(dbctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if members, err = cluster.GetInternalClusterMembers(ctx, tx); err != nil {
			return fmt.Errorf("read members: %w", err)
		}
		if nodes, err = getNodes(ctx, tx); err != nil {
			return err
		}
		st.Cluster, err = clusterName(ctx, tx)
		return err
	})
	cancel()
	if err != nil {
		return st, fmt.Errorf("the cluster database cannot be read (too few database voters reachable?): %w", err)
	}

	dq := d.dqliteRoles(ctx, s)
	online := d.probeMembers(ctx, s, members)
	for _, m := range members {
		n := api.Node{Name: m.Name, Address: m.Address, Roles: []string{}, Status: "offline"}
		if online[m.Address] {
			n.Status = "online"
		}
		if row, ok := nodes[m.Name]; ok {
			n.Roles, n.Region, n.Zone, n.JoinedAt = row.Roles, row.Region, row.Zone, row.JoinedAt
		}
		if r, ok := dq.roles[m.Address]; ok {
			n.DqliteRole = r
		} else if string(m.Role) == string(cluster.Pending) {
			n.DqliteRole = "pending"
		}
		n.Leader = dq.leader != "" && dq.leader == m.Address
		st.Members = append(st.Members, n)
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	for _, n := range st.Members {
		if n.Status != "online" {
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s (%s) is offline", n.Name, n.Address))
		}
	}
	if dq.err != nil {
		st.Warnings = append(st.Warnings, "database roles unknown: "+dq.err.Error())
	}
	st.Layers = append(st.Layers, clusterDBLayer(st.Members, dq.err))
	env, err := d.buildEnv(ctx, s)
	if err != nil {
		st.Warnings = append(st.Warnings, "role layers unknown: "+err.Error())
	} else {
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		st.Layers = append(st.Layers, d.roleLayers(lctx, env)...)
		lcancel()
	}
	st.HA = haSummary(st.Members, st.Layers)
	return st, nil
}

// clusterDBLayer is the cluster database's layer: dqlite voters.
func clusterDBLayer(members []api.Node, dqErr error) api.Layer {
	l := api.Layer{Name: api.LayerClusterDB, Title: "cluster database", Built: true, Members: []api.LayerMember{}}
	voters, offline := 0, []string{}
	for _, n := range members {
		state := n.DqliteRole
		if state == "" {
			state = "unknown"
		}
		if n.Status != "online" {
			state = "offline"
			offline = append(offline, n.Name)
		}
		lm := api.LayerMember{Node: n.Name, State: state}
		if n.Leader {
			lm.Detail = "leader"
		}
		l.Members = append(l.Members, lm)
		if n.DqliteRole == "voter" {
			voters++
		}
	}
	switch {
	case dqErr != nil:
		l.HA, l.Health, l.Reason = api.HANo, api.HealthError, dqErr.Error()
	case voters < HAControlNodes:
		l.HA, l.Health, l.Reason = api.HANo, api.HealthOK, fmt.Sprintf("%d of %d dqlite voters", voters, HAControlNodes)
	case len(offline) > 0:
		l.HA, l.Health, l.Reason = api.HADegraded, api.HealthWarning, strings.Join(offline, ", ")+" offline"
	default:
		l.HA, l.Health = api.HAYes, api.HealthOK
	}
	return l
}

// roleLayers asks each driver present in the cluster for its layer, and
// names the roles recorded on members that no driver of this cloudd runs.
func (d *Daemon) roleLayers(ctx context.Context, env *driver.Env) []api.Layer {
	var out []api.Layer
	have := map[string]bool{}
	for _, dr := range d.drivers {
		have[dr.Name()] = true
		present := false
		for _, n := range env.Nodes {
			if dr.AppliesTo(env, n) {
				present = true
				break
			}
		}
		if !present {
			continue
		}
		out = append(out, dr.Status(ctx, d.envFor(env, dr)))
	}
	for _, r := range roles.All {
		if have[string(r)] {
			continue
		}
		var on []string
		for _, n := range env.Nodes {
			if n.Has(r) {
				on = append(on, n.Name)
			}
		}
		if len(on) == 0 {
			continue
		}
		out = append(out, api.Layer{Name: string(r), Title: string(r), Built: false, HA: api.HANo, Health: api.HealthWarning, Members: []api.LayerMember{},
			Reason: fmt.Sprintf("the %s role is recorded on %s, but this cloudd has no %s driver yet: nothing runs for it", r, strings.Join(on, ", "), r)})
	}
	return out
}

// haSummary decides the HA line: below three control nodes it says so;
// otherwise "HA: yes" only when every layer that runs is highly available,
// and it names the first layer that is not.
func haSummary(members []api.Node, layers []api.Layer) api.HA {
	ha := api.HA{Required: HAControlNodes}
	offlineControl := 0
	for _, n := range members {
		if roles.Has(toRoles(n.Roles), roles.Control) {
			ha.ControlNodes++
			if n.Status != "online" {
				offlineControl++
			}
		}
		if n.DqliteRole == "voter" {
			ha.Voters++
		}
	}
	var notHA, degraded []api.Layer
	for _, l := range layers {
		if !l.Built {
			continue
		}
		switch l.HA {
		case api.HANo:
			notHA = append(notHA, l)
		case api.HADegraded:
			degraded = append(degraded, l)
		}
	}
	name := func(ls []api.Layer) string {
		s := ls[0].Title
		if ls[0].Reason != "" {
			s += ": " + ls[0].Reason
		}
		if len(ls) > 1 {
			s += fmt.Sprintf(" (and %d more layers)", len(ls)-1)
		}
		return s
	}
	switch {
	case ha.ControlNodes < HAControlNodes:
		ha.Summary = fmt.Sprintf("HA: no — %d of %d control nodes", ha.ControlNodes, HAControlNodes)
	case len(notHA) > 0:
		ha.Summary = "HA: not yet — " + name(notHA)
	case offlineControl > 0:
		ha.Enabled = true
		ha.Summary = fmt.Sprintf("HA: yes, degraded — %d of %d control nodes offline", offlineControl, ha.ControlNodes)
	case len(degraded) > 0:
		ha.Enabled = true
		ha.Summary = "HA: yes, degraded — " + name(degraded)
	default:
		ha.Enabled = true
		ha.Summary = "HA: yes"
	}
	return ha
}

func toRoles(ss []string) []roles.Role {
	out := make([]roles.Role, len(ss))
	for i, s := range ss {
		out[i] = roles.Role(s)
	}
	return out
}

type dqliteInfo struct {
	roles  map[string]string
	leader string
	err    error
}

// dqliteRoles asks the dqlite leader for the live raft configuration (the
// member table only catches up on the next heartbeat).
func (d *Daemon) dqliteRoles(ctx context.Context, s *state.State) dqliteInfo {
	out := dqliteInfo{roles: map[string]string{}}
	infos, leader, err := dqliteNodes(ctx, s, 3*time.Second)
	if err != nil {
		out.err = err
		return out
	}
	for _, ni := range infos {
		out.roles[ni.Address] = ni.Role.String()
	}
	out.leader = leader
	return out
}

// probeMembers checks, in parallel and with a short timeout, which members
// answer with an open database. The cluster certificate is pinned.
func (d *Daemon) probeMembers(ctx context.Context, s *state.State, members []cluster.InternalClusterMember) map[string]bool {
	out := map[string]bool{}
	hc, err := peerHTTP(s, memberProbeTimeout)
	if err != nil {
		return out
	}
	defer hc.CloseIdleConnections()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		if m.Address == s.Address().URL.Host {
			mu.Lock()
			out[m.Address] = true
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func(addr string) {
			defer wg.Done()
			ok := probeOne(ctx, hc, addr)
			mu.Lock()
			out[addr] = ok
			mu.Unlock()
		}(m.Address)
	}
	wg.Wait()
	return out
}

func probeOne(ctx context.Context, hc *http.Client, addr string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/cluster/1.0", nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var body struct {
		Metadata struct {
			Ready bool `json:"ready"`
		} `json:"metadata"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false
	}
	return body.Metadata.Ready
}
