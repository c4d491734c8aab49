package control

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/seal"
)

// Keys of control_config.
const (
	keyAdminPassword = "mysql_admin_password"
	keyDBHost        = "db_host"
	// keyCA is the control databases' CA (ClusterCA as JSON): certificate
	// and key in one value, so two members recording at once cannot mix them.
	keyCA = "ca"
	// SettingClientNetworks is the plan setting naming extra networks
	// (comma-separated CIDRs) the service accounts may connect from.
	SettingClientNetworks = "control.client_networks"
)

// readView reads what the control decision needs from the cluster database.
// It only reads: secrets and the database host are recorded by ensureState
// on the converge path.
func readView(ctx context.Context, env *driver.Env) (ClusterView, error) {
	v := ClusterView{Formed: map[string]bool{}, Recovery: map[string][]Position{}, Credentials: map[string]Credential{},
		Topology: env.Plan.MySQLTopology, Manifest: env.Manifest, InstalledGiB: env.InstalledGiB, Now: env.Now()}
	if fa := env.Plan.FloatingAddress; fa != "" {
		if ip, _, err := net.ParseCIDR(fa); err == nil {
			v.FloatingIP = ip.String()
		} else if ip := net.ParseIP(fa); ip != nil {
			v.FloatingIP = ip.String()
		}
	}
	if nets := env.Plan.Settings[SettingClientNetworks]; nets != "" {
		v.ClientNetworks = strings.Split(nets, ",")
	}
	for _, n := range env.Nodes {
		v.Nodes = append(v.Nodes, NodeView{Name: n.Name, IP: n.IP, Control: n.Has(roles.Control), JoinedAt: n.JoinedAt})
	}
	err := env.DB.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if v.DBHost, err = getConfig(ctx, tx, keyDBHost); err != nil {
			return err
		}
		if err := readSecrets(ctx, tx, &v); err != nil {
			return err
		}
		if err := readInstances(ctx, tx, &v); err != nil {
			return err
		}
		return readRecovery(ctx, tx, &v)
	})
	return v, err
}

// ensureState records, once for the whole cluster, what the decision needs
// and nobody has recorded yet: the id of the key the secrets are sealed
// with, the admin password, each service's credentials, the control CA, and
// the node hosting the databases before they replicate. Secrets are written
// sealed with k; secrets an older version stored in the clear are sealed
// too. It writes only when something is missing, and leaves v opened.
func ensureState(ctx context.Context, env *driver.Env, v *ClusterView, k *sealKey) error {
	if v.Topology == "" || v.Manifest == nil {
		return nil
	}
	missing := v.SealID == "" || v.AdminPassword == "" || v.CA.CertPEM == "" || (v.DBHost == "" && DBHost(*v) != "")
	for _, svc := range v.Manifest.ControlPlane.Services {
		if _, ok := v.Credentials[svc]; !ok {
			missing = true
		}
	}
	if !missing {
		return nil
	}
	return env.DB.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO control_config (key, value) VALUES (?, ?)`, keySealID, controlSeal().ID(k)); err != nil {
			return fmt.Errorf("record the seal key's id: %w", err)
		}
		id, err := getConfig(ctx, tx, keySealID)
		if err != nil {
			return err
		}
		if id != controlSeal().ID(k) {
			// Another control node recorded its key first: drop ours and
			// fetch that one in the next round.
			if err := os.Remove(filepath.Join(env.Dir, seal.File)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("drop this node's seal key: %w", err)
			}
			return fmt.Errorf("another control node recorded the seal key %s first: fetching it next round", id)
		}
		if err := sealClear(ctx, tx, k); err != nil {
			return err
		}
		pw, err := randomSecret()
		if err != nil {
			return err
		}
		if pw, err = k.Seal(keyAdminPassword, pw); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO control_config (key, value) VALUES (?, ?)`, keyAdminPassword, pw); err != nil {
			return fmt.Errorf("record admin password: %w", err)
		}
		if v.CA.CertPEM == "" {
			ca, err := NewCA(v.Now)
			if err != nil {
				return err
			}
			enc, err := ca.encode()
			if err != nil {
				return err
			}
			if enc, err = k.Seal(keyCA, enc); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO control_config (key, value) VALUES (?, ?)`, keyCA, enc); err != nil {
				return fmt.Errorf("record the control CA: %w", err)
			}
		}
		for _, svc := range v.Manifest.ControlPlane.Services {
			pw, err := randomSecret()
			if err != nil {
				return err
			}
			if pw, err = k.Seal(credentialRow(svc), pw); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO control_credentials (service, username, password, created_at) VALUES (?, ?, ?, ?)`, svc, svc, pw, v.Now.UTC()); err != nil {
				return fmt.Errorf("record credentials of %s: %w", svc, err)
			}
		}
		if h := DBHost(*v); v.DBHost == "" && h != "" {
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO control_config (key, value) VALUES (?, ?)`, keyDBHost, h); err != nil {
				return fmt.Errorf("record database host: %w", err)
			}
		}
		// Read back what won: another member may have recorded first.
		if v.DBHost, err = getConfig(ctx, tx, keyDBHost); err != nil {
			return err
		}
		if err := readSecrets(ctx, tx, v); err != nil {
			return err
		}
		return v.open(k)
	})
}

// sealedValues are the secrets as stored: sealed (or, from an older
// version, in the clear).
type sealedValues struct {
	admin, ca string
	// creds are the service passwords by service.
	creds map[string]string
}

// readSecrets reads the seal key's id and the stored secrets into v,
// without opening them.
func readSecrets(ctx context.Context, tx *sql.Tx, v *ClusterView) error {
	var err error
	if v.SealID, err = getConfig(ctx, tx, keySealID); err != nil {
		return err
	}
	if v.sealed.admin, err = getConfig(ctx, tx, keyAdminPassword); err != nil {
		return err
	}
	if v.sealed.ca, err = getConfig(ctx, tx, keyCA); err != nil {
		return err
	}
	if v.Credentials, err = readCredentials(ctx, tx); err != nil {
		return err
	}
	v.sealed.creds = map[string]string{}
	for svc, c := range v.Credentials {
		v.sealed.creds[svc] = c.Password
		c.Password = ""
		v.Credentials[svc] = c
	}
	v.AdminPassword, v.CA = "", ClusterCA{}
	return nil
}

// open fills in v's secrets from their stored values with k. Values in the
// clear are taken only while no key is recorded (an older version's).
func (v *ClusterView) open(k *sealKey) error {
	var err error
	clearOK := v.SealID == ""
	if v.AdminPassword, err = controlSeal().Open(k, keyAdminPassword, v.sealed.admin, clearOK); err != nil {
		return err
	}
	ca, err := controlSeal().Open(k, keyCA, v.sealed.ca, clearOK)
	if err != nil {
		return err
	}
	if v.CA, err = decodeCA(ca); err != nil {
		return err
	}
	for svc, c := range v.Credentials {
		if c.Password, err = controlSeal().Open(k, credentialRow(svc), v.sealed.creds[svc], clearOK); err != nil {
			return err
		}
		v.Credentials[svc] = c
	}
	return nil
}

// sealClear seals, in place, the secrets an older version stored in the clear.
func sealClear(ctx context.Context, tx *sql.Tx, k *sealKey) error {
	for _, key := range []string{keyAdminPassword, keyCA} {
		val, err := getConfig(ctx, tx, key)
		if err != nil {
			return err
		}
		if val == "" || seal.IsSealed(val) {
			continue
		}
		sv, err := k.Seal(key, val)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE control_config SET value = ? WHERE key = ?`, sv, key); err != nil {
			return fmt.Errorf("seal %s: %w", key, err)
		}
	}
	creds, err := readCredentials(ctx, tx)
	if err != nil {
		return err
	}
	for svc, c := range creds {
		if c.Password == "" || seal.IsSealed(c.Password) {
			continue
		}
		sv, err := k.Seal(credentialRow(svc), c.Password)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE control_credentials SET password = ? WHERE service = ?`, sv, svc); err != nil {
			return fmt.Errorf("seal the credentials of %s: %w", svc, err)
		}
	}
	return nil
}

func randomSecret() (string, error) {
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func getConfig(ctx context.Context, tx *sql.Tx, key string) (string, error) {
	var v string
	err := tx.QueryRowContext(ctx, `SELECT value FROM control_config WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read control setting %q: %w", key, err)
	}
	return v, nil
}

func readCredentials(ctx context.Context, tx *sql.Tx) (map[string]Credential, error) {
	rows, err := tx.QueryContext(ctx, `SELECT service, username, password FROM control_credentials`)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	defer rows.Close()
	out := map[string]Credential{}
	for rows.Next() {
		var c Credential
		if err := rows.Scan(&c.Service, &c.User, &c.Password); err != nil {
			return nil, fmt.Errorf("read credential: %w", err)
		}
		out[c.Service] = c
	}
	return out, rows.Err()
}

func readInstances(ctx context.Context, tx *sql.Tx, v *ClusterView) error {
	rows, err := tx.QueryContext(ctx, `SELECT name, formed, members FROM control_instances`)
	if err != nil {
		return fmt.Errorf("read instances: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, members string
		var formed bool
		if err := rows.Scan(&name, &formed, &members); err != nil {
			return fmt.Errorf("read instance: %w", err)
		}
		v.Formed[name] = formed
		if members != "" && len(v.Members) == 0 {
			v.Members = strings.Split(members, ",")
		}
	}
	return rows.Err()
}

func readRecovery(ctx context.Context, tx *sql.Tx, v *ClusterView) error {
	rows, err := tx.QueryContext(ctx, `SELECT instance, node, uuid, seqno FROM control_recovery`)
	if err != nil {
		return fmt.Errorf("read recovery reports: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var inst string
		var p Position
		if err := rows.Scan(&inst, &p.Node, &p.UUID, &p.Seqno); err != nil {
			return fmt.Errorf("read recovery report: %w", err)
		}
		v.Recovery[inst] = append(v.Recovery[inst], p)
	}
	return rows.Err()
}
