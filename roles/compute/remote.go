package compute

import (
	"context"
	"fmt"
	"os"
	"strings"

	lxd "github.com/canonical/lxd/client"
	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/cephclient"
	"github.com/cloudctl/cloudctl/roles/driver"

	"github.com/cloudctl/cloudctl/internal/atomicfile"
)

// RemotePoolName is the LXD pool of LXD's ceph driver on the storage
// role's Ceph cluster.
const RemotePoolName = "remote"

// cephClusterName is LXD's ceph.cluster_name. The `ceph` and `rbd` programs
// LXD runs read CEPH_CONF (set in LXD's environment: the role's own
// ceph.conf), whatever the cluster name, so nothing goes to /etc/ceph and
// clusters sharing a machine do not collide.
const cephClusterName = "ceph"

// RemoteState is one member's view of the remote pool (compute/state).
type RemoteState struct {
	// Pool is the OSD pool and User the Ceph user (client.NAME) LXD uses.
	Pool string `json:"pool"`
	User string `json:"user"`
	// Status is LXD's status of the pool on this member ("Created",
	// "Pending", "Errored"), "" when LXD has no such pool yet.
	Status string `json:"status,omitempty"`
	// Configured: this member's ceph.conf and keyring are written.
	Configured bool   `json:"configured"`
	Error      string `json:"error,omitempty"`
}

// remoteConfig is the cluster-wide config of the remote pool. force_reuse:
// the OSD pool belongs to this cloud's own Ceph cluster, so a placeholder
// volume left by an interrupted creation is ours, not another LXD's.
func remoteConfig(c cephclient.Client) map[string]string {
	return map[string]string{
		"ceph.cluster_name":    cephClusterName,
		"ceph.user.name":       c.Name,
		"ceph.osd.pool_name":   c.Pool,
		"ceph.osd.force_reuse": "true",
	}
}

// RemoteAction is what a round does about the remote pool.
type RemoteAction int

// Remote pool actions.
const (
	// RemoteNone: no storage role, nothing to do.
	RemoteNone RemoteAction = iota
	// RemoteWaitUser: a storage layer exists, its Ceph user is not recorded yet.
	RemoteWaitUser
	// RemoteFilesOnly: write this member's ceph.conf and keyring; another
	// member creates the pool, or it exists.
	RemoteFilesOnly
	// RemoteCreate: define the pool per member, then create it cluster-wide.
	RemoteCreate
	// RemoteRetry: an earlier creation failed part way (LXD keeps the
	// pool, "Errored", with its cluster-wide config): run the cluster-wide
	// create again without config, as LXD requires.
	RemoteRetry
)

// decideRemote decides the remote pool step for the local member.
// storageNodes is how many nodes have the storage role; found says whether
// the storage role recorded the LXD user; creator is the member that
// creates LXD objects (the first online compute member); poolStatus is
// LXD's cluster-wide status of the pool ("" when missing); configured says
// whether it holds its cluster-wide config already (a failed creation).
func decideRemote(storageNodes int, found bool, local, creator, poolStatus string, configured bool) RemoteAction {
	switch {
	case !found && storageNodes == 0:
		return RemoteNone
	case !found:
		return RemoteWaitUser
	case poolStatus == "Created" || local != creator:
		return RemoteFilesOnly
	case poolStatus != "" && configured:
		return RemoteRetry
	default:
		return RemoteCreate
	}
}

// writeCephFiles writes this member's client ceph.conf (0644, no secret)
// and the user's keyring (0600) below the role's directory.
func writeCephFiles(p paths, c cephclient.Client) error {
	if err := os.MkdirAll(p.cephDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", p.cephDir, err)
	}
	if err := os.Chmod(p.cephDir, 0o700); err != nil {
		return fmt.Errorf("chmod %s: %w", p.cephDir, err)
	}
	if _, err := atomicfile.WriteIfChanged(p.cephKeyring, []byte(c.Keyring()), 0o600); err != nil {
		return err
	}
	_, err := atomicfile.WriteIfChanged(p.cephConf, []byte(c.Conf(p.cephKeyring)), 0o644)
	return err
}

// cephUser reads the LXD user the storage role recorded and writes this
// member's files for it. The record holds the key sealed under a key only
// the nodes that run Ceph hold: a storage node hands it over, opened, and
// this node keeps it in memory and in its 0600 keyring. It asks again only
// when the stored (sealed) key changed, or after a restart. When no storage
// node answers, the files written before stay in use.
func (d *Driver) cephUser(ctx context.Context, env *driver.Env, p paths) (cephclient.Client, bool, error) {
	if env.DB == nil {
		return cephclient.Client{}, false, nil
	}
	c, found, err := cephclient.Get(ctx, env.DB, cephclient.LXD)
	if err != nil || !found {
		return c, found, err
	}
	stored := c.Key
	d.mu.Lock()
	cached := d.cephKey
	d.mu.Unlock()
	if cached.stored == stored && cached.plain != "" {
		c.Key = cached.plain
	} else {
		plain, err := cephclient.FetchKey(ctx, env, c.Name)
		if err != nil {
			if fi, serr := os.Stat(p.cephKeyring); serr == nil && fi.Mode().Perm() == 0o600 {
				env.Log.Warn("compute: keeping the Ceph keyring written before: no storage node handed the key over", "user", c.Entity(), "error", err)
				c.Key = ""
				if _, err := atomicfile.WriteIfChanged(p.cephConf, []byte(c.Conf(p.cephKeyring)), 0o644); err != nil {
					return c, true, err
				}
				return c, true, nil
			}
			return c, true, err
		}
		d.mu.Lock()
		d.cephKey = cephKey{stored: stored, plain: plain}
		d.mu.Unlock()
		c.Key = plain
	}
	if err := writeCephFiles(p, c); err != nil {
		return c, true, err
	}
	return c, true, nil
}

// cephKey is the LXD user's key as a storage node handed it over (plain,
// in memory only), for the stored (sealed) value it was asked for.
type cephKey struct{ stored, plain string }

// creator is the first compute node (oldest first) whose LXD member is
// online: the one member that creates cluster-wide objects.
func creator(env *driver.Env, ms []lxdapi.ClusterMember) string {
	for _, n := range env.WithRole(roles.Compute) {
		for _, m := range ms {
			if m.ServerName == n.Name && m.Status == "Online" {
				return n.Name
			}
		}
	}
	return ""
}

// ensureRemote creates the remote pool when a storage layer exists: per
// member first, then cluster-wide, as LXD requires. Pool creation runs the
// ceph and rbd programs only (an OSD-pool check and a placeholder image);
// no volume is mapped, so it needs no rbd kernel module.
func (d *Driver) ensureRemote(ctx context.Context, env *driver.Env, c lxd.InstanceServer, user cephclient.Client, found bool, step func(driver.Step)) error {
	storageNodes := len(env.WithRole(roles.Storage))
	if !found {
		if decideRemote(storageNodes, false, "", "", "", false) == RemoteWaitUser {
			step(driver.Step{Name: "create the remote (Ceph) storage pool", State: "waiting", Detail: "waiting for the storage role to create the Ceph user client." + cephclient.LXD})
			return errWaitRemote
		}
		return nil
	}
	ms, err := c.GetClusterMembers()
	if err != nil {
		return fmt.Errorf("list LXD members: %w", err)
	}
	status, configured := "", false
	pool, _, err := c.GetStoragePool(RemotePoolName)
	switch {
	case isNotFound(err):
	case err != nil:
		return fmt.Errorf("read storage pool %s: %w", RemotePoolName, err)
	default:
		status, configured = pool.Status, pool.Config["ceph.user.name"] != ""
	}
	action := decideRemote(storageNodes, true, env.Local.Name, creator(env, ms), status, configured)
	if action != RemoteCreate && action != RemoteRetry {
		return nil
	}
	step(driver.Step{Name: "create the remote (Ceph) storage pool", State: "running", Detail: "OSD pool " + user.Pool + " as " + user.Entity()})
	var defErrs []string
	req := lxdapi.StoragePoolsPost{Name: RemotePoolName, Driver: "ceph"}
	if action == RemoteCreate {
		for _, m := range ms {
			if err := c.UseTarget(m.ServerName).CreateStoragePool(lxdapi.StoragePoolsPost{Name: RemotePoolName, Driver: "ceph"}); err != nil {
				// Already defined on that member (an earlier round): fine.
				defErrs = append(defErrs, m.ServerName+": "+err.Error())
			}
		}
		req.StoragePoolPut = lxdapi.StoragePoolPut{Config: remoteConfig(user), Description: "Ceph RBD pool " + user.Pool + " (cloudctl storage role)"}
	}
	if err := c.CreateStoragePool(req); err != nil {
		if len(defErrs) > 0 {
			err = fmt.Errorf("%w (per-member definitions: %s)", err, strings.Join(defErrs, "; "))
		}
		step(driver.Step{Name: "create the remote (Ceph) storage pool", State: "failed", Detail: err.Error()})
		return fmt.Errorf("create storage pool %s (ceph, OSD pool %s as %s): %w", RemotePoolName, user.Pool, user.Entity(), err)
	}
	env.Log.Info("compute: remote storage pool created", "pool", RemotePoolName, "osd_pool", user.Pool, "user", user.Entity())
	step(driver.Step{Name: "create the remote (Ceph) storage pool", State: "done"})
	return nil
}

// errWaitRemote: the remote pool waits for the storage role.
var errWaitRemote = fmt.Errorf("waiting for the storage role's Ceph user")

// remoteState is this member's view of the remote pool, nil without a
// storage layer's user.
func remoteState(ctx context.Context, env *driver.Env, c lxd.InstanceServer, p paths, clustered bool) *RemoteState {
	if env.DB == nil {
		return nil
	}
	user, found, err := cephclient.Get(ctx, env.DB, cephclient.LXD)
	if err != nil {
		return &RemoteState{Error: err.Error()}
	}
	if !found {
		return nil
	}
	rs := &RemoteState{Pool: user.Pool, User: user.Entity()}
	if fi, err := os.Stat(p.cephKeyring); err == nil && fi.Mode().Perm() == 0o600 {
		if _, err := os.Stat(p.cephConf); err == nil {
			rs.Configured = true
		}
	}
	if clustered {
		c = c.UseTarget(env.Local.Name)
	}
	pool, _, err := c.GetStoragePool(RemotePoolName)
	switch {
	case isNotFound(err):
	case err != nil:
		rs.Error = err.Error()
	default:
		rs.Status = pool.Status
	}
	return rs
}

// remoteDetail is the status sentence of a member's remote pool.
func remoteDetail(node string, rs *RemoteState, rbd bool) string {
	if rs == nil {
		return ""
	}
	var s string
	switch rs.Status {
	case "Created":
		s = "remote pool created"
	case "":
		s = "remote pool not created yet"
	default:
		s = "remote pool " + strings.ToLower(rs.Status)
	}
	s += fmt.Sprintf(" (ceph, OSD pool %s as %s)", rs.Pool, rs.User)
	if !rs.Configured {
		s += "; Ceph client config not written yet"
	}
	if rs.Error != "" {
		s += "; " + rs.Error
	}
	if !rbd {
		s += "; volumes need the rbd kernel module, absent on " + node
	}
	return s
}

// rbdNote is the layer-wide sentence about members whose kernel lacks rbd
// while the remote pool exists.
func rbdNote(states []PeerState) string {
	var missing []string
	created := false
	for _, s := range states {
		if s.Remote == nil || !s.Running {
			continue
		}
		if s.Remote.Status == "Created" {
			created = true
		}
		if !s.RBD {
			missing = append(missing, s.Node)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	if created {
		return "remote pool created; volumes need the rbd kernel module, absent on " + strings.Join(missing, ", ")
	}
	return "remote pool: volumes will need the rbd kernel module, absent on " + strings.Join(missing, ", ")
}
