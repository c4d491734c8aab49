package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/roles/cephclient"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/seal"
)

// The Ceph secrets (the mon. and client.admin keys in storage_config, and
// the keys of the Ceph users handed to other roles in ceph_clients) are
// sealed in the cluster database, which every member holds a copy of:
// AES-256-GCM under the storage seal key, in <state-dir>/storage/seal.key
// (0600 root). It is held by the nodes the storage role applies to (the
// storage nodes, and control nodes while they fill in a monitor): the nodes
// that run Ceph daemons with those keys anyway. The first of them makes
// the key and records its id (keySealID) in the transaction that creates
// the secrets; a node that starts running Ceph later fetches it over the
// cluster API from one that holds it (SealKeyPath), which hands it only to
// a member the storage role applies to. Other members hold the secrets only
// sealed: status and disk listings there are asked of a node that runs
// Ceph, and a client role's node gets its user's key opened by one
// (cephclient.KeyPath).

const (
	// keySealID is the storage_config row naming the storage seal key.
	keySealID = "seal_key_id"
	// SealKeyPath hands the storage seal key to a node that runs Ceph.
	SealKeyPath = "storage/seal-key"
	// sealHolderPath says whether a node holds the storage seal key (by its
	// id, never the key): a node that stopped running Ceph deletes its copy
	// once another confirms it holds it.
	sealHolderPath = "storage/seal-holder"
	// layerPath answers this node's storage layer (status), for a member
	// that holds no storage seal key.
	layerPath = "storage/layer"
)

// storageSeal is the storage role's sealing.
func storageSeal() seal.Kind {
	return seal.Kind{
		Role:        "storage",
		Label:       "cloudctl storage seal key\x00",
		ClearRemedy: "somebody wrote it by hand; put back the row's sealed value from a backup of the cluster database",
	}
}

// errNoKey: this node does not hold the recorded storage seal key (it runs
// no Ceph daemon, or has not fetched the key yet).
var errNoKey = errors.New("this node does not hold the storage seal key")

// errKeyGone: every other member answered that it holds no storage seal key.
var errKeyGone = errors.New("no other member holds the storage seal key")

// open fills in st's Ceph keys from their stored values with k, in memory.
// Values in the clear are taken only while no key is recorded (an older
// version's).
func (st *state) open(k *seal.Key) error {
	clearOK := st.SealID == ""
	var err error
	if st.Secrets.MonKey, err = storageSeal().Open(k, keyMonKey, st.stored.MonKey, clearOK); err != nil {
		return err
	}
	if st.Secrets.AdminKey, err = storageSeal().Open(k, keyAdminKey, st.stored.AdminKey, clearOK); err != nil {
		return err
	}
	return nil
}

// openHere opens st with the key this node holds, without fetching one or
// writing anything (status, guards and endpoints read only). errNoKey when
// it holds no key for the recorded id.
func openHere(env *driver.Env, st *state) error {
	k, err := storageSeal().Load(env.Dir)
	if err != nil {
		return err
	}
	if st.SealID != "" && (k == nil || storageSeal().ID(k) != st.SealID) {
		return errNoKey
	}
	return st.open(k)
}

// keyHolders are the other members that may hold the storage seal key: the
// nodes the storage role applies to first, then the rest (a node that has
// just stopped running Ceph keeps its copy until another confirms it holds
// the key).
func (d *Driver) keyHolders(env *driver.Env) []driver.Node {
	var ceph, rest []driver.Node
	for _, n := range env.Nodes {
		switch {
		case n.Name == env.Local.Name:
		case d.AppliesTo(env, n):
			ceph = append(ceph, n)
		default:
			rest = append(rest, n)
		}
	}
	return append(ceph, rest...)
}

// cephNodes names the other members the storage role applies to, for
// sentences that say where to run something.
func (d *Driver) cephNodes(env *driver.Env) string {
	var names []string
	for _, n := range env.Nodes {
		if n.Name != env.Local.Name && d.AppliesTo(env, n) {
			names = append(names, n.Name)
		}
	}
	if len(names) == 0 {
		return "a storage node"
	}
	return strings.Join(names, " or ")
}

// sealKeyReply is what SealKeyPath answers.
type sealKeyReply struct {
	ID  string `json:"id"`
	Key []byte `json:"key"`
}

// sealHolder is what sealHolderPath answers.
type sealHolder struct {
	Holder string `json:"holder,omitempty"`
	ID     string `json:"id,omitempty"`
}

// acquireKey returns the key this node seals and opens the Ceph secrets
// with: its own when it matches the recorded id (or none is recorded yet),
// otherwise one fetched from another member. With nothing recorded and no
// key of its own, it makes one; recordKey records its id, and if another
// node recorded first, the next round fetches that one. It answers
// errKeyGone only when every other member answered that it holds no key.
func (d *Driver) acquireKey(ctx context.Context, env *driver.Env, recorded string) (*seal.Key, error) {
	kind := storageSeal()
	k, err := kind.Load(env.Dir)
	if err != nil {
		return nil, err
	}
	switch {
	case k != nil && (recorded == "" || kind.ID(k) == recorded):
		return k, nil
	case k == nil && recorded == "":
		if k, err = seal.NewKey(); err != nil {
			return nil, err
		}
		if err := kind.Write(env.Dir, k); err != nil {
			return nil, err
		}
		env.Log.Info("storage: made the key the Ceph secrets are sealed with", "key", kind.ID(k))
		return k, nil
	}
	if env.Peers == nil {
		return nil, fmt.Errorf("the Ceph secrets are sealed with the storage seal key %s and this node cannot reach other members to fetch it", recorded)
	}
	var tried []string
	gone := true
	for _, n := range d.keyHolders(env) {
		var r sealKeyReply
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := env.Peers.Get(pctx, n.Name, SealKeyPath, &r)
		cancel()
		if err != nil {
			gone = false
			tried = append(tried, fmt.Sprintf("%s: %v", n.Name, err))
			continue
		}
		if len(r.Key) == 0 {
			tried = append(tried, n.Name+": holds no key")
			continue
		}
		got, ok := seal.KeyFrom(r.Key)
		if !ok {
			gone = false
			tried = append(tried, fmt.Sprintf("%s: a key of %d bytes", n.Name, len(r.Key)))
			continue
		}
		if kind.ID(got) != recorded {
			gone = false
			tried = append(tried, fmt.Sprintf("%s: key %s, not the recorded %s", n.Name, kind.ID(got), recorded))
			continue
		}
		if err := kind.Write(env.Dir, got); err != nil {
			return nil, err
		}
		env.Log.Info("storage: fetched the key the Ceph secrets are sealed with", "key", recorded, "from", n.Name)
		return got, nil
	}
	if gone {
		return nil, fmt.Errorf("the Ceph secrets are sealed with key %s: %w", recorded, errKeyGone)
	}
	return nil, fmt.Errorf("fetch the key the Ceph secrets are sealed with (%s) from another member: %s", recorded, strings.Join(tried, "; "))
}

// secrets gets this node the storage seal key, records it when none is
// (sealing in place what an older version stored in the clear; creating
// the Ceph secrets, sealed, when there are none yet: only the first monitor
// node gets here then), and opens st's keys with it.
func (d *Driver) secrets(ctx context.Context, env *driver.Env, st *state) (*seal.Key, error) {
	k, err := d.acquireKey(ctx, env, st.SealID)
	if errors.Is(err, errKeyGone) {
		p := storageSeal().Path(env.Dir)
		return nil, fmt.Errorf("the Ceph secrets are sealed with the storage seal key %s, which no member holds any more: restore %s from a backup of a node that ran Ceph", st.SealID, p)
	}
	if err != nil {
		return nil, err
	}
	if st.SealID == "" || !st.created() {
		if err := recordKey(ctx, env, k, !st.created()); err != nil {
			return nil, err
		}
		if *st, err = readState(ctx, env.DB); err != nil {
			return nil, err
		}
	}
	if err := st.open(k); err != nil {
		return nil, err
	}
	return k, nil
}

// recordKey records k's id as the storage seal key, once for the whole
// cluster, and in the same transaction seals the Ceph secrets an older
// version stored in the clear (storage_config and ceph_clients) and, when
// create is set, creates the fsid and the keys, sealed. If another node
// recorded its key first, this node's is deleted and the next round fetches
// that one.
func recordKey(ctx context.Context, env *driver.Env, k *seal.Key, create bool) error {
	kind := storageSeal()
	var fsid, mon, admin string
	if create {
		var err error
		if fsid, err = NewUUID(); err != nil {
			return err
		}
		if mon, err = NewKey(env.Now()); err != nil {
			return err
		}
		if admin, err = NewKey(env.Now()); err != nil {
			return err
		}
	}
	err := env.DB.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO storage_config (key, value) VALUES (?, ?)`, keySealID, kind.ID(k)); err != nil {
			return fmt.Errorf("record the storage seal key's id: %w", err)
		}
		var id string
		if err := tx.QueryRowContext(ctx, `SELECT value FROM storage_config WHERE key = ?`, keySealID).Scan(&id); err != nil {
			return fmt.Errorf("read the storage seal key's id: %w", err)
		}
		if id != kind.ID(k) {
			if err := kind.Remove(env.Dir); err != nil {
				return err
			}
			return fmt.Errorf("another node recorded the storage seal key %s first: fetching it next round", id)
		}
		for _, key := range []string{keyMonKey, keyAdminKey} {
			var val string
			err := tx.QueryRowContext(ctx, `SELECT value FROM storage_config WHERE key = ?`, key).Scan(&val)
			if errors.Is(err, sql.ErrNoRows) || err == nil && (val == "" || seal.IsSealed(val)) {
				continue
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", key, err)
			}
			sv, err := k.Seal(key, val)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `UPDATE storage_config SET value = ? WHERE key = ?`, sv, key); err != nil {
				return fmt.Errorf("seal %s: %w", key, err)
			}
		}
		err := cephclient.SealKeys(ctx, tx, func(name, key string) (string, error) {
			return k.Seal(cephclient.SealRow(name), key)
		})
		if err != nil {
			return err
		}
		if !create {
			return nil
		}
		smon, err := k.Seal(keyMonKey, mon)
		if err != nil {
			return err
		}
		sadmin, err := k.Seal(keyAdminKey, admin)
		if err != nil {
			return err
		}
		for _, kv := range [][2]string{{keyFSID, fsid}, {keyMonKey, smon}, {keyAdminKey, sadmin}} {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO storage_config (key, value) VALUES (?, ?)`, kv[0], kv[1]); err != nil {
				return fmt.Errorf("store the Ceph cluster secrets: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	env.Log.Info("storage: the Ceph secrets are sealed in the cluster database", "key", kind.ID(k))
	return nil
}

// handleSealKey hands the storage seal key to a member the storage role
// applies to, over the cluster API (the caller authenticated by its
// certificate). Nobody else gets it: not the local socket, not a member
// that runs no Ceph. Any member that holds the recorded key answers (one
// that has just stopped running Ceph too); one that does not answers an
// empty key.
func (d *Driver) handleSealKey(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	if req.Local || req.Caller == "" {
		return nil, driver.Errorf(http.StatusForbidden, "the storage seal key is handed only to nodes that run Ceph, over the cluster API")
	}
	n, ok := env.Node(req.Caller)
	if !ok || !d.AppliesTo(env, n) {
		return nil, driver.Errorf(http.StatusForbidden, "the storage seal key is handed only to nodes that run Ceph (storage nodes, and control nodes that hold a monitor), and %s is not one", req.Caller)
	}
	st, err := readState(ctx, env.DB)
	if err != nil {
		return nil, err
	}
	k, err := storageSeal().Load(env.Dir)
	if err != nil {
		return nil, err
	}
	if k == nil || st.SealID == "" || storageSeal().ID(k) != st.SealID {
		// A definite "not here", so the caller can tell that nobody holds it.
		return sealKeyReply{}, nil
	}
	env.Log.Info("storage: handed the storage seal key to a node that runs Ceph", "to", req.Caller)
	return sealKeyReply{ID: st.SealID, Key: append([]byte(nil), k[:]...)}, nil
}

// handleSealHolder says which storage seal key this node holds, by its id
// (a light endpoint: no database read).
func (d *Driver) handleSealHolder(_ context.Context, env *driver.Env, _ driver.Request) (any, error) {
	k, err := storageSeal().Load(env.Dir)
	if err != nil || k == nil {
		return sealHolder{}, err
	}
	return sealHolder{Holder: env.Local.Name, ID: storageSeal().ID(k)}, nil
}

// handleClientKey hands a client role's node the key of its Ceph user,
// opened: only over the cluster API, and only to a member holding the role
// the user is for (compute for client.lxd-remote). A node that does not
// hold the storage seal key answers 503, so the caller asks another.
func (d *Driver) handleClientKey(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	name := req.Vars["name"]
	role := cephclient.RoleOf(name)
	switch {
	case req.Local || req.Caller == "":
		return nil, driver.Errorf(http.StatusForbidden, "the key of a Ceph user is handed only to the nodes of the role it is for, over the cluster API")
	case role == "":
		return nil, driver.Errorf(http.StatusNotFound, "there is no Ceph user %q for another role", name)
	}
	if n, ok := env.Node(req.Caller); !ok || !n.Has(role) {
		return nil, driver.Errorf(http.StatusForbidden, "the key of client.%s is handed only to %s nodes, and %s is not one", name, role, req.Caller)
	}
	st, err := readState(ctx, env.DB)
	if err != nil {
		return nil, err
	}
	rec, found, err := cephclient.Get(ctx, env.DB, name)
	if err != nil {
		return nil, err
	}
	if !found || rec.Key == "" {
		return nil, driver.Errorf(http.StatusNotFound, "the storage role has not created client.%s yet", name)
	}
	k, err := storageSeal().Load(env.Dir)
	if err != nil {
		return nil, err
	}
	if st.SealID != "" && (k == nil || storageSeal().ID(k) != st.SealID) {
		return nil, driver.Errorf(http.StatusServiceUnavailable, "%s does not hold the storage seal key: ask a storage node", env.Local.Name)
	}
	key, err := storageSeal().Open(k, cephclient.SealRow(name), rec.Key, st.SealID == "")
	if err != nil {
		// A storage node's next round writes the record again from the
		// monitors' answer (ensureClients): the caller only has to wait.
		env.Log.Warn("storage: the stored key of a Ceph user does not open; a storage node writes it again", "user", rec.Entity(), "err", err)
		return nil, driver.Errorf(http.StatusServiceUnavailable, "the stored key of client.%s does not open here; a storage node writes it again within a minute: try again then", name)
	}
	env.Log.Info("storage: handed the key of a Ceph user to a node of its role", "user", rec.Entity(), "to", req.Caller)
	return cephclient.KeyReply{Name: name, Key: key}, nil
}

// Left implements driver.Leaver: a node that no longer runs Ceph (its
// storage role removed, or a control node whose monitor is no longer
// needed) deletes its copy of the storage seal key and its admin keyring,
// once another node that runs Ceph confirms it holds the recorded key (until
// then the copy stays: it may be the last one, and it serves the others),
// and its Ceph daemons' directories with their keyrings once the cluster
// has forgotten them (forgetDaemons).
func (d *Driver) Left(ctx context.Context, env *driver.Env) error {
	return errors.Join(d.dropSealKey(ctx, env), forgetDaemons(ctx, env))
}

// forgetDaemons deletes this node's monitor, manager and OSD directories
// (each holds its daemon's keyring; a file-backed OSD's data too) once no
// monitor and no OSD of this node is recorded any more: a member that runs
// Ceph removed the monitor, with the manager's key, and purged the OSDs,
// with theirs (forgetDeparted). Until then they stay, so that a role taken
// away and given back before that finds its daemons as they were.
func forgetDaemons(ctx context.Context, env *driver.Env) error {
	l := layout{dir: env.Dir}
	dirs := append(l.daemonDirs(), l.keys())
	found := false
	for _, dir := range dirs {
		found = found || exists(dir)
	}
	if !found {
		return nil
	}
	st, err := readState(ctx, env.DB)
	if err != nil {
		return err
	}
	if _, ok := st.monitor(env.Local.Name); ok || len(st.osdsOf(env.Local.Name)) > 0 {
		return nil
	}
	for _, dir := range dirs {
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("delete %s of a node that runs no Ceph: %w", dir, err)
		}
	}
	env.Log.Info("storage: this node runs no Ceph any more and the cluster forgot its daemons: their directories and keyrings are deleted")
	return nil
}

// dropSealKey is Left's part for the storage seal key and the admin keyring.
func (d *Driver) dropSealKey(ctx context.Context, env *driver.Env) error {
	kind := storageSeal()
	l := layout{dir: env.Dir}
	k, err := kind.Load(env.Dir)
	if err != nil {
		return err
	}
	if k == nil {
		if err := os.Remove(l.adminKeyring()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("delete the Ceph admin keyring of a node that runs no Ceph: %w", err)
		}
		return nil
	}
	st, err := readState(ctx, env.DB)
	if err != nil {
		return err
	}
	holder := ""
	if st.SealID == kind.ID(k) {
		for _, n := range env.Nodes {
			if n.Name == env.Local.Name || !d.AppliesTo(env, n) || env.Peers == nil {
				continue
			}
			var h sealHolder
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := env.Peers.Get(pctx, n.Name, sealHolderPath, &h)
			cancel()
			if err == nil && h.Holder == n.Name && h.ID == st.SealID {
				holder = n.Name
				break
			}
		}
		if holder == "" {
			return fmt.Errorf("keeping this node's copy of the storage seal key (%s) although it runs no Ceph any more: no node that runs Ceph confirms it holds the key yet", kind.ID(k))
		}
	}
	if err := kind.Remove(env.Dir); err != nil {
		return err
	}
	if err := os.Remove(l.adminKeyring()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete the Ceph admin keyring of a node that runs no Ceph: %w", err)
	}
	env.Log.Info("storage: this node runs no Ceph any more: its copy of the storage seal key and its admin keyring are deleted", "held by", holder)
	return nil
}
