package daemon

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles/driver"
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

// preBootstrap refuses, before anything is initialised, a bootstrap whose
// manifest disagrees with cloudd's or whose plan a driver rejects.
func (d *Daemon) preBootstrap(s *state.State, initConfig map[string]string) error {
	// microcluster itself bootstraps a node that has a cluster database
	// (the CLI's check of it can be raced): refuse before anything changes.
	if _, err := os.Stat(filepath.Join(d.cfg.StateDir, "database", "info.yaml")); err == nil {
		return fmt.Errorf("this node already has a cluster database: it is bootstrapped or joined; nothing was changed")
	}
	ni, err := parseNodeInit(initConfig)
	if err != nil {
		return err
	}
	m, err := d.effectiveManifest(ni.Manifest)
	if err != nil {
		return err
	}
	if ni.Plan == nil {
		return fmt.Errorf("the bootstrap carries no plan: bootstrap with `cloudctl bootstrap`")
	}
	if err := d.validatePlan(*ni.Plan, m); err != nil {
		return err
	}
	// A join tried here before (its token refused) may have left its mark:
	// this node bootstraps instead.
	if err := d.joinDone(); err != nil {
		return err
	}
	// From here on microcluster writes state that a bootstrap dying midway
	// would leave half-made: the marker lets the next start clear it.
	return d.markBootstrap()
}

// validatePlan asks the drivers to check their part of the plan.
func (d *Daemon) validatePlan(p api.Plan, m *manifests.Manifest) error {
	for _, dr := range d.drivers {
		if v, ok := dr.(driver.PlanValidator); ok {
			if err := v.ValidatePlan(p, m); err != nil {
				return fmt.Errorf("the plan is refused: %w", err)
			}
		}
	}
	return nil
}

// postBootstrap records the first node, the cluster name and the plan.
func (d *Daemon) postBootstrap(s *state.State, initConfig map[string]string) error {
	d.setState(s)
	ni, err := parseNodeInit(initConfig)
	if err != nil {
		return halfBootstrap(err)
	}
	m, err := d.effectiveManifest(ni.Manifest)
	if err != nil {
		return halfBootstrap(err)
	}
	manifestYAML, err := m.Marshal()
	if err != nil {
		return halfBootstrap(err)
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
		// Every decision was made once, when the plan was made: the drivers
		// validated their part of it (preBootstrap) and cloudd stores it as it is.
		if err := d.validatePlan(plan, m); err != nil {
			return err
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
		return halfBootstrap(fmt.Errorf("record bootstrap: %w", err))
	}
	if err := d.bootstrapDone(); err != nil {
		return fmt.Errorf("the bootstrap is recorded, but %w: delete that file, or the next start of cloudd clears this bootstrap", err)
	}
	d.log.Info("bootstrapped", "node", s.Name(), "roles", ni.Roles)
	d.kick()
	return nil
}

// halfBootstrap is err of a bootstrap that stopped after the cluster
// database was made but before the node was recorded: microcluster keeps
// that state, and only a restart of cloudd clears it (its mark stays).
func halfBootstrap(err error) error {
	return fmt.Errorf("%w; the bootstrap stopped after the cluster database was made: restart cloudd (it clears the half-made bootstrap when it starts) and run the same `cloudctl bootstrap`", err)
}

// effectiveManifest is the default manifest with the bootstrap's overlay (or
// cloudd's --manifest file) applied and validated.
func (d *Daemon) effectiveManifest(overlay string) (*manifests.Manifest, error) {
	if overlay == "" && d.cfg.ManifestOverlay == "" {
		// The default alone, parsed once: a bootstrap asks for it three
		// times (preflight, pre- and post-bootstrap), about 1 ms a parse.
		return d.manifests.get("")
	}
	m, err := manifests.Default()
	if err != nil {
		return nil, err
	}
	apply := func(m *manifests.Manifest, o *manifests.Manifest) (*manifests.Manifest, error) {
		if o != nil {
			var err error
			if m, err = manifests.Overlay(m, o); err != nil {
				return nil, err
			}
		}
		if err := m.Validate(); err != nil {
			return nil, err
		}
		return m, nil
	}
	var mine *manifests.Manifest
	if d.cfg.ManifestOverlay != "" {
		o, err := manifests.Load(d.cfg.ManifestOverlay)
		if err != nil {
			return nil, err
		}
		if mine, err = apply(m, o); err != nil {
			return nil, err
		}
	}
	if overlay == "" {
		if mine != nil {
			return nil, fmt.Errorf("cloudd was started with --manifest %s but the bootstrap carries no manifest, so its plan was made without it: bootstrap with `cloudctl bootstrap`, which carries cloudd's manifest", d.cfg.ManifestOverlay)
		}
		return apply(m, nil)
	}
	o, err := manifests.Parse("bootstrap manifest", []byte(overlay))
	if err != nil {
		return nil, err
	}
	theirs, err := apply(m, o)
	if err != nil {
		return nil, err
	}
	if mine != nil {
		a, errA := mine.Marshal()
		b, errB := theirs.Marshal()
		if errA != nil || errB != nil || string(a) != string(b) {
			return nil, fmt.Errorf("the bootstrap's manifest and cloudd's --manifest %s differ: bootstrap with `--manifest %s` (the same file), or restart cloudd without --manifest", d.cfg.ManifestOverlay, d.cfg.ManifestOverlay)
		}
	}
	return theirs, nil
}

// postJoin records the joining node and marks its token used.
func (d *Daemon) postJoin(s *state.State, initConfig map[string]string) error {
	d.setState(s)
	ctx, cancel := context.WithTimeout(s.Context, hookTimeout)
	defer cancel()
	if err := d.recordJoin(ctx, s, initConfig); err != nil {
		return err
	}
	// The join is done: a mark left behind only makes the next start
	// check that the node is recorded.
	if err := d.joinDone(); err != nil {
		d.log.Warn("joined, but the join mark stays", "error", err)
	}
	return nil
}

// recordJoin records this node as joined with the choices of initConfig and
// its token as used by it.
func (d *Daemon) recordJoin(ctx context.Context, s *state.State, initConfig map[string]string) error {
	ni, err := parseNodeInit(initConfig)
	if err != nil {
		return err
	}
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
	// The other members learn this node's roles from the row just written:
	// their own hook (OnNewMember) may have run before it was, and would
	// otherwise wait for their next periodic round (a minute) to, say, add
	// this node to their keepalived peers, while this node's keepalived
	// already counts on them (seen: two holders of the floating address
	// for 35 s). Without holding up the join: at 10 members the round
	// cost the join about 45 ms.
	go func() {
		kctx, cancel := context.WithTimeout(s.Context, 10*time.Second)
		defer cancel()
		d.kickMembers(kctx, s)
	}()
	return nil
}

// onNewMember reconciles token states when a member has joined.
func (d *Daemon) onNewMember(s *state.State) error {
	ctx, cancel := context.WithTimeout(s.Context, hookTimeout)
	defer cancel()
	if _, err := d.reconcileTokens(ctx, s); err != nil {
		d.log.Warn("token reconcile after join failed", "error", err)
	}
	d.kick()
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
	if err := d.restoreVoters(ctx, s); err != nil {
		d.log.Warn("could not restore the cluster database's voters after a removal; go-dqlite's own adjustment retries within 30 s", "error", err)
	}
	return nil
}
