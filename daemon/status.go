package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/roles"
)

// HAControlNodes is how many control nodes make the cloud highly available.
const HAControlNodes = 3

// memberProbeTimeout bounds how long status waits for one member.
const memberProbeTimeout = 2 * time.Second

// status gathers members, roles, reachability and dqlite roles.
func (d *Daemon) status(ctx context.Context, s *state.State) (api.Status, error) {
	st := api.Status{Local: s.Name(), Version: api.Version, Members: []api.Node{}, Warnings: []string{}}
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
			n.Database = r
		} else if string(m.Role) == string(cluster.Pending) {
			n.Database = "pending"
		}
		n.Leader = dq.leader != "" && dq.leader == m.Address
		st.Members = append(st.Members, n)
	}
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	st.HA = haSummary(st.Members)
	for _, n := range st.Members {
		if n.Status != "online" {
			st.Warnings = append(st.Warnings, fmt.Sprintf("%s (%s) is offline", n.Name, n.Address))
		}
	}
	if dq.err != nil {
		st.Warnings = append(st.Warnings, "database roles unknown: "+dq.err.Error())
	}
	st.Databases = []api.DBInstance{}
	dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
	dbs, _, err := d.databases(dctx, s)
	dcancel()
	if err != nil {
		st.Warnings = append(st.Warnings, "control databases unknown: "+err.Error())
	} else {
		st.Databases = dbs.Instances
	}
	return st, nil
}

// haSummary decides the HA line from members, their roles and dqlite voters.
func haSummary(members []api.Node) api.HA {
	ha := api.HA{Required: HAControlNodes}
	offlineControl := 0
	for _, n := range members {
		if roles.Has(toRoles(n.Roles), roles.Control) {
			ha.ControlNodes++
			if n.Status != "online" {
				offlineControl++
			}
		}
		if n.Database == "voter" {
			ha.Voters++
		}
	}
	switch {
	case ha.ControlNodes < HAControlNodes:
		ha.Summary = fmt.Sprintf("HA: no — %d of %d control nodes", ha.ControlNodes, HAControlNodes)
	case ha.Voters < HAControlNodes:
		ha.Summary = fmt.Sprintf("HA: not yet — %d control nodes, %d of %d database voters", ha.ControlNodes, ha.Voters, HAControlNodes)
	case offlineControl > 0:
		ha.Enabled = true
		ha.Summary = fmt.Sprintf("HA: yes, degraded — %d of %d control nodes offline", offlineControl, ha.ControlNodes)
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
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := s.Database.Leader(ctx)
	if err != nil {
		out.err = fmt.Errorf("no dqlite leader: %w", err)
		return out
	}
	defer c.Close()
	infos, err := c.Cluster(ctx)
	if err != nil {
		out.err = fmt.Errorf("read dqlite configuration: %w", err)
		return out
	}
	for _, ni := range infos {
		out.roles[ni.Address] = ni.Role.String()
	}
	if l, err := c.Leader(ctx); err == nil && l != nil {
		out.leader = l.Address
	}
	return out
}

// probeMembers checks, in parallel and with a short timeout, which members
// answer with an open database. The cluster certificate is pinned.
func (d *Daemon) probeMembers(ctx context.Context, s *state.State, members []cluster.InternalClusterMember) map[string]bool {
	out := map[string]bool{}
	hc, err := peerClient(s, memberProbeTimeout)
	if err != nil {
		return out
	}
	defer hc.CloseIdleConnections()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range members {
		if m.Address == s.Address().URL.Host {
			out[m.Address] = true
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

// peerClient is an HTTPS client that presents this member's certificate and
// accepts only peers holding the cluster certificate.
func peerClient(s *state.State, timeout time.Duration) (*http.Client, error) {
	fp, err := clusterFingerprint(s)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{TLSClientConfig: client.PinnedTLS(fp, s.ServerCert().KeyPair())}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
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
