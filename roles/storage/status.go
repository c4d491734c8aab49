package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
	splan "github.com/cloudctl/cloudctl/roles/storage/plan"
)

// Status implements driver.Driver. It only reads: the connection is made in
// memory from the stored monitor addresses and the admin key, opened with
// this node's storage seal key. A node that holds none (it runs no Ceph)
// asks a node that runs Ceph for its layer.
func (d *Driver) Status(ctx context.Context, env *driver.Env) api.Layer {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return d.status(ctx, env, true)
}

// handleLayer answers this node's storage layer to a member that holds no
// storage seal key (Status there); it never asks further.
func (d *Driver) handleLayer(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	if req.Caller == "" {
		return nil, driver.Errorf(http.StatusForbidden, "the storage layer is answered here to cluster members only; run `cloudctl status`")
	}
	// The asking member waits 5 s per node (its peer client's limit): a
	// layer that says the monitors do not answer must reach it before.
	ctx, cancel := context.WithTimeout(ctx, 4*time.Second)
	defer cancel()
	l := d.status(ctx, env, false)
	if l.Health == "" {
		return nil, driver.Errorf(http.StatusServiceUnavailable, "%s does not hold the storage seal key yet: ask another node that runs Ceph", env.Local.Name)
	}
	return l, nil
}

// status builds the storage layer. Without the storage seal key it asks
// the nodes that run Ceph when forward is set, and otherwise answers a
// layer without health (handleLayer's "not here").
func (d *Driver) status(ctx context.Context, env *driver.Env, forward bool) api.Layer {
	layer := api.Layer{Name: Name, Title: "Storage (Ceph)", Built: true, HA: api.HANo, Health: api.HealthWarning}
	storageNodes := env.WithRole(roles.Storage)
	st, err := readState(ctx, env.DB)
	if err != nil {
		layer.Health, layer.Reason = api.HealthError, err.Error()
		return layer
	}
	if st.created() && len(st.Monitors) > 0 {
		err := openHere(env, &st)
		switch {
		case errors.Is(err, errNoKey) && forward:
			return d.layerFromPeers(ctx, env, layer)
		case errors.Is(err, errNoKey):
			return api.Layer{}
		case err != nil:
			layer.Health, layer.Reason = api.HealthError, err.Error()
			return layer
		}
	}
	if !st.created() || len(st.Monitors) == 0 {
		layer.Reason = "the Ceph cluster is not created yet"
		if len(storageNodes) == 0 {
			layer.Reason = "no node has the storage role"
		}
		for _, n := range storageNodes {
			layer.Members = append(layer.Members, api.LayerMember{Node: n.Name, State: "waiting"})
		}
		return layer
	}
	// The monitors' commands leave a second of ctx to ask this node's own
	// monitor why they did not answer.
	mctx, mcancel := reserve(ctx, time.Second)
	defer mcancel()
	l := layout{dir: env.Dir}
	conn, err := d.conn(mctx, st)
	if err != nil {
		layer.Health, layer.Reason = api.HealthError, "no Ceph monitor answers: "+err.Error()
		explainMonitors(ctx, l, env.Local.Name, st, &layer)
		return layer
	}
	det, osds, err := d.details(mctx, env, conn, st)
	if err != nil {
		d.conns.drop(conn)
		layer.Health, layer.Reason = api.HealthError, "the Ceph monitors do not answer: "+err.Error()
		explainMonitors(ctx, l, env.Local.Name, st, &layer)
		return layer
	}
	layer.Health, layer.HA, layer.Reason = verdict(det)
	layer.Members = members(env, st, det, osds)
	if b, err := json.Marshal(det); err == nil {
		layer.Details = b
	}
	return layer
}

// layerFromPeers asks the nodes that run Ceph for their storage layer,
// for a node that holds no storage seal key.
func (d *Driver) layerFromPeers(ctx context.Context, env *driver.Env, layer api.Layer) api.Layer {
	var tried []string
	for _, n := range d.keyHolders(env) {
		if !d.AppliesTo(env, n) || env.Peers == nil {
			continue
		}
		var l api.Layer
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := env.Peers.Get(pctx, n.Name, layerPath, &l)
		cancel()
		if err == nil && l.Name == Name {
			return l
		}
		if err == nil {
			err = errors.New("not a storage layer")
		}
		tried = append(tried, fmt.Sprintf("%s: %v", n.Name, err))
	}
	layer.Health = api.HealthError
	layer.Reason = "the Ceph keys are sealed and only the nodes that run Ceph hold their key, and none of them answered"
	if len(tried) > 0 {
		layer.Reason += ": " + strings.Join(tried, "; ")
	}
	return layer
}

func (d *Driver) details(ctx context.Context, env *driver.Env, conn *cephConn, st state) (api.StorageDetails, map[int]osdState, error) {
	det := api.StorageDetails{FSID: st.Secrets.FSID}
	stat, err := conn.status(ctx)
	if err != nil {
		return det, nil, err
	}
	det.Health, det.Reasons, det.Quorum, det.ManagerAvailable = stat.Health.Status, stat.reasons(), stat.QuorumNames, stat.MgrMap.Available
	det.PGs = stat.PGMap.NumPGs
	for _, p := range stat.PGMap.PGsByState {
		if p.StateName == "active+clean" {
			det.PGsActiveClean += p.Count
		}
	}
	var mons struct {
		Mons []struct {
			Name string `json:"name"`
		} `json:"mons"`
	}
	if err := conn.mon(ctx, map[string]any{"prefix": "mon dump"}, nil, &mons); err != nil {
		return det, nil, err
	}
	for _, m := range mons.Mons {
		det.Monitors = append(det.Monitors, m.Name)
	}
	osds, err := conn.osdStates(ctx)
	if err != nil {
		return det, nil, err
	}
	for _, o := range st.OSDs {
		if o.State == osdRemoved {
			continue
		}
		s := osds[o.ID]
		so := api.StorageOSD{ID: o.ID, Node: o.Node, Path: o.Path, FileBacked: o.FileBacked, SizeBytes: o.SizeBytes, Up: s.Up, In: s.In, State: o.State}
		if o.FileBacked {
			so.Note = splan.FileBackedNote
		}
		det.OSDs = append(det.OSDs, so)
	}
	pools, err := conn.pools(ctx)
	if err != nil {
		return det, nil, err
	}
	rules, err := conn.rules(ctx)
	if err != nil {
		return det, nil, err
	}
	df, err := conn.df(ctx)
	if err != nil {
		return det, nil, err
	}
	purpose := map[string]string{}
	if env.Manifest != nil {
		for k, v := range env.Manifest.Storage.Pools {
			purpose[v] = k
		}
	}
	for _, p := range pools {
		sp := api.StoragePool{Name: p.Name, Purpose: purpose[p.Name], Size: p.Size, MinSize: p.MinSize, FailureDomain: domainOf(rules[p.RuleID])}
		for _, u := range df.Pools {
			if u.Name == p.Name {
				sp.Objects, sp.StoredBytes, sp.UsedBytes = u.Stats.Objects, u.Stats.Stored, u.Stats.BytesUsed
			}
		}
		det.Pools = append(det.Pools, sp)
	}
	if stat.MgrMap.Available {
		sizes := make(map[int]int, len(pools))
		for _, p := range pools {
			sizes[p.ID] = p.Size
		}
		bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		pgs, err := conn.pgsBrief(bctx)
		cancel()
		if err == nil {
			// A manager that has just started may list fewer groups than
			// the cluster has: never count more clean than either says.
			det.PGs = max(det.PGs, len(pgs))
			det.PGsActiveClean = min(det.PGsActiveClean, settledPGs(pgs, sizes))
		}
	}
	det.TotalBytes, det.UsedBytes, det.AvailBytes = df.Stats.TotalBytes, df.Stats.TotalUsedBytes, df.Stats.TotalAvail
	return det, osds, nil
}

func domainOf(rule string) string {
	switch rule {
	case RuleOSD:
		return DomainOSD
	case RuleHost, "replicated_rule":
		return DomainHost
	}
	return rule
}

// verdict turns the cluster's state into the layer's health and HA: HA yes
// at three monitors in quorum and every pool at size 3 or more.
func verdict(det api.StorageDetails) (health, ha, reason string) {
	switch det.Health {
	case "HEALTH_OK":
		health = api.HealthOK
	case "HEALTH_ERR":
		health = api.HealthError
	default:
		health = api.HealthWarning
	}
	var why []string
	if health == api.HealthOK && det.PGsActiveClean < det.PGs {
		// Ceph says HEALTH_OK while placement groups peer after a restart.
		health = api.HealthWarning
		why = append(why, fmt.Sprintf("%d of %d placement groups active+clean", det.PGsActiveClean, det.PGs))
	}
	minSize := 0
	for i, p := range det.Pools {
		if i == 0 || p.Size < minSize {
			minSize = p.Size
		}
	}
	switch {
	case len(det.Monitors) < 3:
		ha = api.HANo
		why = append(why, fmt.Sprintf("%d monitor(s); HA needs 3", len(det.Monitors)))
	case len(det.Pools) > 0 && minSize < 3:
		ha = api.HANo
		why = append(why, fmt.Sprintf("pools keep %d copies; HA needs 3 hosts with OSDs", minSize))
	case len(det.Quorum) < len(det.Monitors):
		ha = api.HADegraded
		why = append(why, fmt.Sprintf("%d of %d monitors in quorum", len(det.Quorum), len(det.Monitors)))
	case health != api.HealthOK:
		ha = api.HADegraded
	default:
		ha = api.HAYes
	}
	if health != api.HealthOK && len(det.Reasons) > 0 {
		n := min(len(det.Reasons), 3)
		why = append(why, det.Health+": "+strings.Join(det.Reasons[:n], "; "))
	}
	return health, ha, strings.Join(why, "; ")
}

func members(env *driver.Env, st state, det api.StorageDetails, osds map[int]osdState) []api.LayerMember {
	var names []string
	for _, n := range env.Nodes {
		if n.Has(roles.Storage) || contains(det.Monitors, n.Name) {
			names = append(names, n.Name)
		}
	}
	sort.Strings(names)
	var out []api.LayerMember
	for _, n := range names {
		var parts []string
		up, total := 0, 0
		if contains(det.Monitors, n) {
			total++
			if contains(det.Quorum, n) {
				up++
				parts = append(parts, "monitor in quorum")
			} else {
				parts = append(parts, "monitor out of quorum")
			}
		}
		for _, o := range st.osdsOf(n) {
			total++
			s := osds[o.ID]
			w := "osd." + strconv.Itoa(o.ID) + " " + upDown(s.Up) + "/" + inOut(s.In)
			if s.Up {
				up++
			}
			if o.FileBacked {
				w += " (" + splan.FileBackedNote + ")"
			} else {
				w += " (" + o.Path + ")"
			}
			parts = append(parts, w)
		}
		state := "up"
		switch {
		case total == 0:
			state = "waiting"
			parts = append(parts, "no OSD yet")
		case up == 0:
			state = "down"
		case up < total:
			state = "degraded"
		}
		out = append(out, api.LayerMember{Node: n, State: state, Detail: strings.Join(parts, ", ")})
	}
	return out
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func inOut(in bool) string {
	if in {
		return "in"
	}
	return "out"
}
