package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles/control"
)

const hookTimeout = 30 * time.Second

func parseNodeInit(initConfig map[string]string) (api.NodeInit, error) {
	var ni api.NodeInit
	raw, ok := initConfig[api.InitConfigKey]
	if !ok {
		return ni, fmt.Errorf("init config has no %s entry: start the node with cloudctl", api.InitConfigKey)
	}
	if err := json.Unmarshal([]byte(raw), &ni); err != nil {
		return ni, fmt.Errorf("decode %s: %w", api.InitConfigKey, err)
	}
	return ni, nil
}

// postBootstrap records the first node, the cluster name and the plan.
func (d *Daemon) postBootstrap(s *state.State, initConfig map[string]string) error {
	d.setState(s)
	ni, err := parseNodeInit(initConfig)
	if err != nil {
		return err
	}
	m, err := d.effectiveManifest(ni.Manifest)
	if err != nil {
		return err
	}
	manifestYAML, err := m.Marshal()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.Context, hookTimeout)
	defer cancel()
	now := d.cfg.Now()
	err = s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := upsertNode(ctx, tx, nodeRow{Name: s.Name(), Roles: ni.Roles, Region: ni.Region, Zone: ni.Zone, JoinedAt: now, Plan: nodePlan{Disks: ni.Disks}}); err != nil {
			return err
		}
		plan := api.Plan{Version: 1, Cluster: s.Name(), Bootstrap: s.Name()}
		if ni.Plan != nil {
			plan = *ni.Plan
		}
		if plan.MySQLTopology == "" {
			// Decided here when the bootstrap did not: from this node's RAM.
			plan.MySQLTopology, plan.MySQLTopologyReason = hwprobe.DecideMySQL(d.memory(ctx), m.ProbePolicy())
		}
		if plan.MySQLTopology != control.Single && plan.MySQLTopology != control.Multi {
			return fmt.Errorf("invalid MySQL topology %q: use single or multi", plan.MySQLTopology)
		}
		if err := setConfig(ctx, tx, "manifest", string(manifestYAML)); err != nil {
			return err
		}
		b, err := json.Marshal(plan)
		if err != nil {
			return fmt.Errorf("encode plan: %w", err)
		}
		if err := setConfig(ctx, tx, "plan", string(b)); err != nil {
			return err
		}
		if err := setConfig(ctx, tx, "cluster_name", plan.Cluster); err != nil {
			return err
		}
		return setConfig(ctx, tx, "bootstrapped_at", now.UTC().Format(time.RFC3339Nano))
	})
	if err != nil {
		return fmt.Errorf("record bootstrap: %w", err)
	}
	d.log.Info("bootstrapped", "node", s.Name(), "roles", ni.Roles)
	d.kickControl()
	return nil
}

// effectiveManifest is the default manifest with the bootstrap's overlay (or
// cloudd's --manifest file) applied and validated.
func (d *Daemon) effectiveManifest(overlay string) (*manifests.Manifest, error) {
	m, err := manifests.Default()
	if err != nil {
		return nil, err
	}
	var o *manifests.Manifest
	switch {
	case overlay != "":
		o, err = manifests.Parse("bootstrap manifest", []byte(overlay))
	case d.cfg.ManifestOverlay != "":
		o, err = manifests.Load(d.cfg.ManifestOverlay)
	}
	if err != nil {
		return nil, err
	}
	if o != nil {
		if m, err = manifests.Overlay(m, o); err != nil {
			return nil, err
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// postJoin records the joining node and marks its token used.
func (d *Daemon) postJoin(s *state.State, initConfig map[string]string) error {
	d.setState(s)
	ni, err := parseNodeInit(initConfig)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.Context, hookTimeout)
	defer cancel()
	now := d.cfg.Now()
	err = s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := upsertNode(ctx, tx, nodeRow{Name: s.Name(), Roles: ni.Roles, Region: ni.Region, Zone: ni.Zone, JoinedAt: now, Plan: nodePlan{Disks: ni.Disks}}); err != nil {
			return err
		}
		name := ni.TokenName
		if name == "" {
			name = s.Name()
		}
		return setTokenState(ctx, tx, name, api.TokenUsed, s.Name(), now)
	})
	if err != nil {
		return fmt.Errorf("record join: %w", err)
	}
	d.log.Info("joined", "node", s.Name(), "roles", ni.Roles)
	d.kickControl()
	return nil
}

// onNewMember reconciles token states when a member has joined.
func (d *Daemon) onNewMember(s *state.State) error {
	ctx, cancel := context.WithTimeout(s.Context, hookTimeout)
	defer cancel()
	if err := d.reconcileTokens(ctx, s); err != nil {
		d.log.Warn("token reconcile after join failed", "error", err)
	}
	d.kickControl()
	return nil
}

// postRemove forgets nodes that are no longer cluster members.
func (d *Daemon) postRemove(s *state.State, force bool) error {
	ctx, cancel := context.WithTimeout(s.Context, hookTimeout)
	defer cancel()
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		members, err := cluster.GetInternalClusterMembers(ctx, tx)
		if err != nil {
			return fmt.Errorf("read members: %w", err)
		}
		keep := map[string]bool{}
		for _, m := range members {
			keep[m.Name] = true
		}
		nodes, err := getNodes(ctx, tx)
		if err != nil {
			return err
		}
		for name := range nodes {
			if keep[name] {
				continue
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM cloud_nodes WHERE name = ?`, name); err != nil {
				return fmt.Errorf("forget node %q: %w", name, err)
			}
			d.log.Info("node removed", "node", name, "force", force)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record removal: %w", err)
	}
	return nil
}
