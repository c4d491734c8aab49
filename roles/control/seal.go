package control

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/seal"
)

// The control secrets (the MariaDB admin password, the service passwords,
// the control CA's key) are sealed in the cluster database: AES-256-GCM
// under a key that only control nodes hold, in <state-dir>/control/seal.key
// (0600 root). The cluster database is replicated to every member, compute
// and storage nodes too; their copy, on disk and in the Raft log, holds the
// secrets only sealed. The first control node makes the key and records its
// id (keySealID); a node that takes the control role later fetches it from a
// control node over the cluster API (mutual TLS), which hands it only to a
// member holding the control role.

const (
	// keySealID is the control_config row naming the key the secrets are
	// sealed with (its id).
	keySealID = "seal_key_id"
	// SealKeyPath is the endpoint handing the key to control nodes.
	SealKeyPath = "control/seal-key"
)

// sealKey is the key the control secrets are sealed with.
type sealKey = seal.Key

// controlSeal is the control role's sealing. Its label is the one the ids
// were derived with before package seal existed: recorded ids still match.
func controlSeal() seal.Kind {
	return seal.Kind{
		Role:        "control",
		Label:       "cloudctl control seal key\x00",
		ClearRemedy: "somebody wrote it by hand; delete the row and the control role makes it anew",
	}
}

// credentialRow names a service password's row for sealing.
func credentialRow(svc string) string { return "credential:" + svc }

// sealKeyReply is what SealKeyPath answers.
type sealKeyReply struct {
	ID  string `json:"id"`
	Key []byte `json:"key"`
}

// acquireKey returns the key this control node seals and opens the control
// secrets with: its own when it matches the recorded id (or none is recorded
// yet), otherwise one fetched from another member: the control nodes first,
// then the others (a node that just left the control role keeps its copy
// until a control node confirms it holds the key). With nothing recorded
// and no key of its own, it makes one; ensureState records its id, and if
// another node recorded first, the next round fetches that one. It answers
// errKeyGone only when every other member answered that it holds no key.
func acquireKey(ctx context.Context, env *driver.Env, recorded string) (*sealKey, error) {
	k, err := controlSeal().Load(env.Dir)
	if err != nil {
		return nil, err
	}
	switch {
	case k != nil && (recorded == "" || controlSeal().ID(k) == recorded):
		return k, nil
	case k == nil && recorded == "":
		if k, err = seal.NewKey(); err != nil {
			return nil, err
		}
		if err := controlSeal().Write(env.Dir, k); err != nil {
			return nil, err
		}
		env.Log.Info("control: made the key the control secrets are sealed with", "key", controlSeal().ID(k))
		return k, nil
	}
	if env.Peers == nil {
		return nil, fmt.Errorf("the control secrets are sealed with key %s and this node cannot reach other members to fetch it", recorded)
	}
	var tried []string
	gone := true
	for _, n := range keyHolders(env) {
		var r sealKeyReply
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := env.Peers.Get(pctx, n.Name, SealKeyPath, &r)
		cancel()
		var got sealKey
		switch {
		case err != nil:
			gone = false
			tried = append(tried, fmt.Sprintf("%s: %v", n.Name, err))
			continue
		case len(r.Key) == 0:
			tried = append(tried, n.Name+": holds no key")
			continue
		case len(r.Key) != len(got):
			gone = false
			tried = append(tried, fmt.Sprintf("%s: a key of %d bytes", n.Name, len(r.Key)))
			continue
		}
		copy(got[:], r.Key)
		if controlSeal().ID(&got) != recorded {
			gone = false
			tried = append(tried, fmt.Sprintf("%s: key %s, not the recorded %s", n.Name, controlSeal().ID(&got), recorded))
			continue
		}
		if err := controlSeal().Write(env.Dir, &got); err != nil {
			return nil, err
		}
		env.Log.Info("control: fetched the key the control secrets are sealed with", "key", recorded, "from", n.Name)
		return &got, nil
	}
	if gone {
		return nil, fmt.Errorf("the control secrets are sealed with key %s: %w", recorded, errKeyGone)
	}
	return nil, fmt.Errorf("fetch the key the control secrets are sealed with (%s) from another member: %s", recorded, strings.Join(tried, "; "))
}

// keyHolders are the other members that may hold the seal key, control
// nodes first.
func keyHolders(env *driver.Env) []driver.Node {
	var ctl, rest []driver.Node
	for _, n := range env.Nodes {
		switch {
		case n.Name == env.Local.Name:
		case n.Has(roles.Control):
			ctl = append(ctl, n)
		default:
			rest = append(rest, n)
		}
	}
	return append(ctl, rest...)
}

// handleSealKey hands the key to a member holding the control role, over
// the cluster API (the caller authenticated by its certificate). Nobody
// else gets it: not the local socket, not a member without the role. Any
// member that holds the recorded key answers (a node that just left the
// control role too); one that does not answers an empty key.
func (d *Driver) handleSealKey(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	if req.Local || req.Caller == "" {
		return nil, driver.Errorf(http.StatusForbidden, "the control seal key is handed only to control nodes, over the cluster API")
	}
	n, ok := env.Node(req.Caller)
	if !ok || !n.Has(roles.Control) {
		return nil, driver.Errorf(http.StatusForbidden, "the control seal key is handed only to control nodes, and %s is not one", req.Caller)
	}
	v, err := readView(ctx, env)
	if err != nil {
		return nil, err
	}
	k, err := controlSeal().Load(env.Dir)
	if err != nil {
		return nil, err
	}
	if k == nil || v.SealID == "" || controlSeal().ID(k) != v.SealID {
		// A definite "not here", so the caller can tell that nobody holds it.
		return sealKeyReply{}, nil
	}
	env.Log.Info("control: handed the control seal key to a control node", "to", req.Caller)
	return sealKeyReply{ID: controlSeal().ID(k), Key: bytes.Clone(k[:])}, nil
}

// secrets gets this control node the seal key and opens v's secrets with
// it. When every control node that held the key has left the cluster (the
// last one removed by force: the control databases went with them) and
// this node holds no control database either, the sealed secrets can never
// be opened again and protect nothing: they are forgotten and this node
// makes a new key, so the control role starts afresh instead of waiting for
// ever. A node that holds databases needs the same secrets: it refuses and
// says to restore its key file.
func (d *Driver) secrets(ctx context.Context, env *driver.Env, v *ClusterView) (*sealKey, error) {
	k, err := acquireKey(ctx, env, v.SealID)
	if errors.Is(err, errKeyGone) {
		if dirs, _ := filepath.Glob(filepath.Join(env.Dir, "*", "data")); len(dirs) > 0 {
			return nil, fmt.Errorf("the control secrets are sealed with key %s, %s is missing or holds another key, and no other member holds it; this node holds control databases (%s) that need those secrets: restore %s from a backup of this node", v.SealID, filepath.Join(env.Dir, seal.File), strings.Join(dirs, ", "), filepath.Join(env.Dir, seal.File))
		}
		env.Log.Warn("control: no control node holds the key the control secrets were sealed with; they are lost with the control databases and made anew", "key", v.SealID)
		if err := forgetSecrets(ctx, env, v.SealID); err != nil {
			return nil, err
		}
		nv, rerr := readView(ctx, env)
		if rerr != nil {
			return nil, fmt.Errorf("read the control state: %w", rerr)
		}
		*v = nv
		k, err = acquireKey(ctx, env, v.SealID)
	}
	if err != nil {
		return nil, err
	}
	if err := v.open(k); err != nil {
		return nil, err
	}
	return k, nil
}

// errKeyGone: the secrets are sealed with a key no other member holds:
// every other member answered so.
var errKeyGone = errors.New("no other member holds the seal key")

// forgetSecrets deletes the secrets sealed with the key id, if they still
// are (another node may have made them anew meanwhile).
func forgetSecrets(ctx context.Context, env *driver.Env, id string) error {
	return env.DB.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		cur, err := getConfig(ctx, tx, keySealID)
		if err != nil || cur != id {
			return err
		}
		for _, q := range []string{
			`DELETE FROM control_config WHERE key IN ('` + keySealID + `', '` + keyAdminPassword + `', '` + keyCA + `')`,
			`DELETE FROM control_credentials`,
		} {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("forget the lost control secrets: %w", err)
			}
		}
		return nil
	})
}

// openHere opens v's secrets with the key this node holds, for a request
// on its local socket. A node without the control role holds no key: the
// answer names the nodes that do.
func openHere(env *driver.Env, v *ClusterView) error {
	k, err := controlSeal().Load(env.Dir)
	if err != nil {
		return err
	}
	if v.SealID != "" && (k == nil || controlSeal().ID(k) != v.SealID) {
		if !env.Local.Has(roles.Control) {
			var names []string
			for _, n := range env.WithRole(roles.Control) {
				names = append(names, n.Name)
			}
			if len(names) == 0 {
				return driver.Errorf(http.StatusConflict, "the database credentials are kept sealed, and only control nodes hold their key: this cloud has no control node now")
			}
			return driver.Errorf(http.StatusConflict, "the database credentials are kept sealed, and only control nodes hold their key: run this on %s", strings.Join(names, " or "))
		}
		return driver.Errorf(http.StatusServiceUnavailable, "%s has not fetched the key of the database credentials yet: the control role is still starting, try again in a moment", env.Local.Name)
	}
	return v.open(k)
}

// Left implements driver.Leaver: a node that no longer has the control role
// deletes its copy of the seal key, once a control node confirms it holds
// the recorded key (its control/local answer names it). Until then the copy
// stays: it may be the last one (every control role removed, or control
// moved to new nodes that have not fetched it yet), and it serves them.
func (d *Driver) Left(ctx context.Context, env *driver.Env) error {
	p := filepath.Join(env.Dir, seal.File)
	k, err := controlSeal().Load(env.Dir)
	if err != nil || k == nil {
		return err
	}
	v, err := readView(ctx, env)
	if err != nil {
		return err
	}
	holder := ""
	if v.SealID == controlSeal().ID(k) {
		for _, n := range env.WithRole(roles.Control) {
			if n.Name == env.Local.Name || env.Peers == nil {
				continue
			}
			var lc localControl
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			err := env.Peers.Get(pctx, n.Name, "control/local", &lc)
			cancel()
			if err == nil && lc.SealKeyHolder == n.Name && lc.SealKeyID == v.SealID {
				holder = n.Name
				break
			}
		}
		if holder == "" {
			return fmt.Errorf("keeping this node's copy of the control seal key (%s) although it has left the control role: no control node confirms it holds the key yet", controlSeal().ID(k))
		}
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete the control seal key of a node without the control role: %w", err)
	}
	env.Log.Info("control: this node no longer has the control role: its copy of the seal key is deleted", "held by", holder)
	return nil
}
