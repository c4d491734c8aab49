package storage

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/cephclient"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/seal"
)

// wantedClients are the Ceph users other roles need, from the cluster
// state: the compute role's LXD user (client.lxd-remote, rbd on the
// manifest's instances pool) once a node has the compute role.
func wantedClients(env *driver.Env) []cephclient.Client {
	if env.Manifest == nil || len(env.WithRole(roles.Compute)) == 0 {
		return nil
	}
	pool := env.Manifest.Storage.Pools[manifests.PoolInstances]
	if pool == "" {
		return nil
	}
	return []cephclient.Client{{Name: cephclient.LXD, Purpose: manifests.PoolInstances, Pool: pool}}
}

// clientUpToDate reports whether the stored record rec already describes
// want on the cluster (same pool, fsid, monitors, a key).
func clientUpToDate(rec cephclient.Client, found bool, want cephclient.Client) bool {
	return found && rec.Key != "" && rec.Pool == want.Pool && rec.FSID == want.FSID && rec.MonHost == want.MonHost && rec.Purpose == want.Purpose
}

// capsArgs are caps as the monitor's auth commands take them.
func capsArgs(caps map[string]string) []string {
	ks := make([]string, 0, len(caps))
	for k := range caps {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var out []string
	for _, k := range ks {
		out = append(out, k, caps[k])
	}
	return out
}

// monHost is the mon_host value of the stored monitors.
func monHost(st state) string {
	addrs := make([]string, 0, len(st.Monitors))
	for _, m := range st.Monitors {
		addrs = append(addrs, monAddr(m.Addr))
	}
	return strings.Join(addrs, ",")
}

// ensureClients creates the Ceph users other roles need (caps limited to
// their pool, through librados: the key never leaves the monitor's answer
// but sealed with key into the cluster database) and keeps their records
// current. A record whose key does not open with key (written in the clear
// or by hand) is written again from the monitor's answer.
func (d *Driver) ensureClients(ctx context.Context, env *driver.Env, conn *cephConn, st state, key *seal.Key) error {
	wanted := wantedClients(env)
	if err := d.dropClients(ctx, env, conn, wanted); err != nil {
		return err
	}
	if len(wanted) == 0 {
		return nil
	}
	pools, err := conn.pools(ctx)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, p := range pools {
		have[p.Name] = true
	}
	for _, want := range wanted {
		// A user is handed over once its pool exists (pools wait for the
		// first OSD): a client finding no pool would try to create it.
		if !have[want.Pool] {
			continue
		}
		want.FSID, want.MonHost = st.Secrets.FSID, monHost(st)
		rec, found, err := cephclient.Get(ctx, env.DB, want.Name)
		if err != nil {
			return err
		}
		if clientUpToDate(rec, found, want) {
			_, err := storageSeal().Open(key, cephclient.SealRow(want.Name), rec.Key, false)
			if err == nil {
				continue
			}
			env.Log.Warn("storage: the stored key of a Ceph user does not open with the storage seal key; writing it again", "user", want.Entity(), "error", err)
		}
		caps := capsArgs(cephclient.Caps(want.Pool))
		var ans []struct {
			Entity string `json:"entity"`
			Key    string `json:"key"`
		}
		err = conn.mon(ctx, map[string]any{"prefix": "auth get-or-create", "entity": want.Entity(), "caps": caps}, nil, &ans)
		if err != nil {
			// The user exists with other caps (the pool changed): set them.
			if cerr := conn.mon(ctx, map[string]any{"prefix": "auth caps", "entity": want.Entity(), "caps": caps}, nil, nil); cerr != nil {
				return fmt.Errorf("create the Ceph user %s: %v; set its caps: %w", want.Entity(), err, cerr)
			}
			ans = nil
			if err := conn.mon(ctx, map[string]any{"prefix": "auth get-or-create", "entity": want.Entity(), "caps": caps}, nil, &ans); err != nil {
				return fmt.Errorf("create the Ceph user %s: %w", want.Entity(), err)
			}
		}
		if len(ans) != 1 || !validKey(ans[0].Key) {
			return fmt.Errorf("create the Ceph user %s: unexpected answer", want.Entity())
		}
		if want.Key, err = key.Seal(cephclient.SealRow(want.Name), ans[0].Key); err != nil {
			return err
		}
		want.UpdatedAt = env.Now()
		if err := cephclient.Put(ctx, env.DB, want); err != nil {
			return err
		}
		env.Log.Info("storage: Ceph user for another role recorded", "user", want.Entity(), "pool", want.Pool)
	}
	return nil
}

// knownClients are the names of every Ceph user another role may need.
var knownClients = []string{cephclient.LXD}

// clientDropGrace: a user recorded more recently than this is not dropped.
// Every storage node runs the drop with the cluster view of its round's
// start; one that read it just before a compute node joined must not
// delete the user another node has just made for it.
const clientDropGrace = 2 * time.Minute

// dropClients removes the Ceph users no role needs any more (the LXD user
// once no node has the compute role, and its record is older than
// clientDropGrace): the user on the monitors first, then its record, so a
// round that fails halfway is finished by the next.
func (d *Driver) dropClients(ctx context.Context, env *driver.Env, conn *cephConn, wanted []cephclient.Client) error {
	for _, name := range knownClients {
		if slices.ContainsFunc(wanted, func(c cephclient.Client) bool { return c.Name == name }) {
			continue
		}
		rec, found, err := cephclient.Get(ctx, env.DB, name)
		if err != nil || !found {
			return err
		}
		if env.Now().Sub(rec.UpdatedAt) < clientDropGrace {
			continue
		}
		if err := conn.mon(ctx, map[string]any{"prefix": "auth del", "entity": rec.Entity()}, nil, nil); err != nil && !notFound(err) {
			return fmt.Errorf("remove the Ceph user %s, which no role needs any more: %w", rec.Entity(), err)
		}
		if err := cephclient.Delete(ctx, env.DB, name); err != nil {
			return err
		}
		env.Log.Info("storage: Ceph user no role needs any more removed", "user", rec.Entity())
	}
	return nil
}
