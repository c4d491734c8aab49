package daemon

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/canonical/lxd/lxd/response"
	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/control"
)

// schemaV3 holds the control role's state: credentials, Galera formation,
// each member's instance status, and full-outage recovery reports.
func schemaV3(ctx context.Context, tx *sql.Tx) error {
	const stmt = `
CREATE TABLE cloud_db_credentials (
  service     TEXT NOT NULL PRIMARY KEY,
  username    TEXT NOT NULL,
  password    TEXT NOT NULL,
  created_at  DATETIME NOT NULL
);
CREATE TABLE cloud_db_instances (
  name     TEXT NOT NULL PRIMARY KEY,
  formed   INTEGER NOT NULL DEFAULT 0,
  members  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE cloud_db_status (
  node          TEXT NOT NULL,
  instance      TEXT NOT NULL,
  state         TEXT NOT NULL,
  wsrep_status  TEXT NOT NULL,
  size          INTEGER NOT NULL,
  comment       TEXT NOT NULL,
  provisioned   INTEGER NOT NULL,
  updated_at    DATETIME NOT NULL,
  PRIMARY KEY (node, instance)
);
CREATE TABLE cloud_db_recovery (
  instance     TEXT NOT NULL,
  node         TEXT NOT NULL,
  uuid         TEXT NOT NULL,
  seqno        INTEGER NOT NULL,
  reported_at  DATETIME NOT NULL,
  PRIMARY KEY (instance, node)
);
`
	if _, err := tx.ExecContext(ctx, stmt); err != nil {
		return fmt.Errorf("create control tables: %w", err)
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

// manifestFrom decodes the effective manifest stored in the cluster database.
func manifestFrom(raw string) (*manifests.Manifest, error) {
	if raw == "" {
		return manifests.Default()
	}
	m, err := manifests.Parse("cluster manifest", []byte(raw))
	if err != nil {
		return nil, fmt.Errorf("stored manifest: %w", err)
	}
	return m, nil
}

// memory reads this machine's RAM once (installed, as the MySQL rule
// compares it, and usable); buffers and the topology decision use it.
func (d *Daemon) memory(ctx context.Context) hwprobe.Memory {
	d.memOnce.Do(func() {
		src, err := hwprobe.OpenMachine()
		if err != nil {
			d.log.Warn("cannot read this machine's memory", "error", err)
			return
		}
		defer src.Close()
		if d.mem, err = hwprobe.ReadMemory(ctx, src); err != nil {
			d.log.Warn("cannot read this machine's memory", "error", err)
		}
	})
	return d.mem
}

// controlView reads what the control decision needs, creating missing
// credentials on the way (the same values for every node, by INSERT OR IGNORE).
func (d *Daemon) controlView(ctx context.Context, s *state.State) (control.ClusterView, error) {
	v := control.ClusterView{Formed: map[string]bool{}, Recovery: map[string][]control.Position{}, Credentials: map[string]control.Credential{}, Now: d.cfg.Now(), InstalledGiB: d.memory(ctx).InstalledGiB}
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rawPlan, err := getConfig(ctx, tx, "plan")
		if err != nil {
			return err
		}
		var plan struct {
			MySQLTopology string `json:"mysql_topology"`
		}
		if rawPlan != "" {
			if err := json.Unmarshal([]byte(rawPlan), &plan); err != nil {
				return fmt.Errorf("stored plan: %w", err)
			}
		}
		v.Topology = plan.MySQLTopology
		rawManifest, err := getConfig(ctx, tx, "manifest")
		if err != nil {
			return err
		}
		if v.Manifest, err = manifestFrom(rawManifest); err != nil {
			return err
		}
		nodes, err := getNodes(ctx, tx)
		if err != nil {
			return err
		}
		addrs, err := memberAddresses(ctx, tx)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			host, _, _ := net.SplitHostPort(addrs[n.Name])
			v.Nodes = append(v.Nodes, control.NodeView{Name: n.Name, IP: host, Control: roles.Has(toRoles(n.Roles), roles.Control), JoinedAt: n.JoinedAt})
		}
		if v.DBHost, err = getConfig(ctx, tx, "db_host"); err != nil {
			return err
		}
		if err := readInstances(ctx, tx, &v); err != nil {
			return err
		}
		if err := readStatuses(ctx, tx, &v); err != nil {
			return err
		}
		if err := readRecovery(ctx, tx, &v); err != nil {
			return err
		}
		if v.Topology == "" {
			return nil
		}
		// Secrets: created once for the whole cluster.
		if v.AdminPassword, err = getConfig(ctx, tx, "mysql_admin_password"); err != nil {
			return err
		}
		if v.AdminPassword == "" {
			if v.AdminPassword, err = randomSecret(); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO cloud_config (key, value) VALUES ('mysql_admin_password', ?)`, v.AdminPassword); err != nil {
				return fmt.Errorf("record admin password: %w", err)
			}
			if v.AdminPassword, err = getConfig(ctx, tx, "mysql_admin_password"); err != nil {
				return err
			}
		}
		for _, svc := range v.Manifest.ControlPlane.Services {
			pw, err := randomSecret()
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO cloud_db_credentials (service, username, password, created_at) VALUES (?, ?, ?, ?)`, svc, svc, pw, v.Now.UTC()); err != nil {
				return fmt.Errorf("record credentials of %s: %w", svc, err)
			}
		}
		creds, err := readCredentials(ctx, tx)
		if err != nil {
			return err
		}
		v.Credentials = creds
		if v.DBHost == "" {
			if h := control.DBHost(v); h != "" {
				if err := setConfig(ctx, tx, "db_host", h); err != nil {
					return err
				}
				v.DBHost = h
			}
		}
		return nil
	})
	return v, err
}

func memberAddresses(ctx context.Context, tx *sql.Tx) (map[string]string, error) {
	members, err := cluster.GetInternalClusterMembers(ctx, tx)
	if err != nil {
		return nil, fmt.Errorf("read member addresses: %w", err)
	}
	out := map[string]string{}
	for _, m := range members {
		out[m.Name] = m.Address
	}
	return out, nil
}

func readCredentials(ctx context.Context, tx *sql.Tx) (map[string]control.Credential, error) {
	rows, err := tx.QueryContext(ctx, `SELECT service, username, password FROM cloud_db_credentials`)
	if err != nil {
		return nil, fmt.Errorf("read credentials: %w", err)
	}
	defer rows.Close()
	out := map[string]control.Credential{}
	for rows.Next() {
		var c control.Credential
		if err := rows.Scan(&c.Service, &c.User, &c.Password); err != nil {
			return nil, fmt.Errorf("read credential: %w", err)
		}
		out[c.Service] = c
	}
	return out, rows.Err()
}

func readInstances(ctx context.Context, tx *sql.Tx, v *control.ClusterView) error {
	rows, err := tx.QueryContext(ctx, `SELECT name, formed, members FROM cloud_db_instances`)
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

func readStatuses(ctx context.Context, tx *sql.Tx, v *control.ClusterView) error {
	rows, err := tx.QueryContext(ctx, `SELECT node, instance, state, wsrep_status, size, comment, provisioned, updated_at FROM cloud_db_status`)
	if err != nil {
		return fmt.Errorf("read instance status: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r control.StatusRow
		if err := rows.Scan(&r.Node, &r.Instance, &r.State, &r.WsrepStatus, &r.Size, &r.Comment, &r.Provisioned, &r.UpdatedAt); err != nil {
			return fmt.Errorf("read instance status: %w", err)
		}
		v.Statuses = append(v.Statuses, r)
	}
	return rows.Err()
}

func readRecovery(ctx context.Context, tx *sql.Tx, v *control.ClusterView) error {
	rows, err := tx.QueryContext(ctx, `SELECT instance, node, uuid, seqno FROM cloud_db_recovery`)
	if err != nil {
		return fmt.Errorf("read recovery reports: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var inst string
		var p control.Position
		if err := rows.Scan(&inst, &p.Node, &p.UUID, &p.Seqno); err != nil {
			return fmt.Errorf("read recovery report: %w", err)
		}
		v.Recovery[inst] = append(v.Recovery[inst], p)
	}
	return rows.Err()
}

// controlLoop converges this node's control role every few seconds.
func (d *Daemon) controlLoop(ctx context.Context) {
	t := time.NewTicker(d.cfg.ControlInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if d.control != nil {
				d.control.StopAll()
			}
			return
		case <-t.C:
		case <-d.kick:
		}
		s := d.getState()
		if s == nil || s.Database == nil || s.Database.IsOpen(ctx) != nil {
			continue
		}
		if err := d.convergeControl(ctx, s); err != nil && ctx.Err() == nil {
			d.log.Warn("control role", "error", err)
		}
	}
}

// kickControl asks the control loop to run now.
func (d *Daemon) kickControl() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *Daemon) convergeControl(ctx context.Context, s *state.State) error {
	d.controlMu.Lock()
	defer d.controlMu.Unlock()
	if d.leaving.Load() {
		return nil
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	v, err := d.controlView(vctx, s)
	cancel()
	if err != nil {
		return fmt.Errorf("read cluster state: %w", err)
	}
	v.Live = map[string]map[string]string{}
	for n, lc := range d.peerControl(ctx, s, v) {
		m := map[string]string{}
		for _, in := range lc.Instances {
			m[in.Instance] = in.WsrepStatus
		}
		v.Live[n] = m
	}
	des, err := control.Decide(v, s.Name())
	if err != nil {
		return err
	}
	if d.control == nil {
		if !des.Host {
			return nil
		}
		host, _, _ := net.SplitHostPort(s.Address().URL.Host)
		d.control = control.NewDriver(filepath.Join(d.cfg.StateDir, "control"), s.Name(), host, v.Manifest, d.sup, d.log)
	}
	d.control.Manifest = v.Manifest
	sts := d.control.Converge(ctx, des)
	d.mu.Lock()
	d.lastControl = localControl{Node: s.Name(), At: d.cfg.Now().UTC(), Instances: sts}
	d.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	members := ""
	if len(des.Peers) > 0 {
		names := make([]string, len(des.Peers))
		for i, p := range des.Peers {
			names[i] = p.Name
		}
		members = strings.Join(names, ",")
	}
	now := d.cfg.Now().UTC()
	return s.Database.Transaction(wctx, func(ctx context.Context, tx *sql.Tx) error {
		if !des.Host {
			_, err := tx.ExecContext(ctx, `DELETE FROM cloud_db_status WHERE node = ?`, s.Name())
			return err
		}
		for _, st := range sts {
			if _, err := tx.ExecContext(ctx, `INSERT INTO cloud_db_status (node, instance, state, wsrep_status, size, comment, provisioned, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(node, instance) DO UPDATE SET state = excluded.state, wsrep_status = excluded.wsrep_status,
size = excluded.size, comment = excluded.comment, provisioned = excluded.provisioned, updated_at = excluded.updated_at`,
				s.Name(), st.Instance, st.State, st.WsrepStatus, st.Size, st.Comment, st.Provisioned, now); err != nil {
				return fmt.Errorf("record instance status: %w", err)
			}
			if st.Formed {
				d.log.Info("control: Galera cluster formed", "instance", st.Instance, "members", members)
				if _, err := tx.ExecContext(ctx, `INSERT INTO cloud_db_instances (name, formed, members) VALUES (?, 1, ?)
ON CONFLICT(name) DO UPDATE SET formed = 1, members = excluded.members`, st.Instance, members); err != nil {
					return fmt.Errorf("record formation: %w", err)
				}
			}
			if st.WsrepStatus == "Primary" {
				if _, err := tx.ExecContext(ctx, `DELETE FROM cloud_db_recovery WHERE instance = ?`, st.Instance); err != nil {
					return fmt.Errorf("clear recovery reports: %w", err)
				}
				if members != "" {
					if _, err := tx.ExecContext(ctx, `UPDATE cloud_db_instances SET members = ? WHERE name = ? AND members != ?`, members, st.Instance, members); err != nil {
						return fmt.Errorf("record members: %w", err)
					}
				}
			}
			if st.Report != nil {
				if _, err := tx.ExecContext(ctx, `INSERT INTO cloud_db_recovery (instance, node, uuid, seqno, reported_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT(instance, node) DO UPDATE SET uuid = excluded.uuid, seqno = excluded.seqno, reported_at = excluded.reported_at`,
					st.Instance, s.Name(), st.Report.UUID, st.Report.Seqno, now); err != nil {
					return fmt.Errorf("record recovery report: %w", err)
				}
			}
		}
		return nil
	})
}

// localControl is what GET /1.0/control/local answers: this member's live view
// of its own instances, from its last convergence.
type localControl struct {
	Node      string                   `json:"node"`
	At        time.Time                `json:"at"`
	Instances []control.InstanceStatus `json:"instances"`
}

func (d *Daemon) handleControlLocal(s *state.State, r *http.Request) response.Response {
	d.mu.Lock()
	lc := d.lastControl
	d.mu.Unlock()
	return response.SyncResponse(true, lc)
}

// peerControl asks every other control node's cloudd, now, which of its
// instances are in a Primary component. Stale database rows of a node that
// just died must not make this node wait for a Primary that is gone.
func (d *Daemon) peerControl(ctx context.Context, s *state.State, v control.ClusterView) map[string]localControl {
	out := map[string]localControl{}
	hc, err := peerClient(s, 2*time.Second)
	if err != nil {
		return out
	}
	defer hc.CloseIdleConnections()
	addrs := map[string]string{}
	err = s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		addrs, err = memberAddresses(ctx, tx)
		return err
	})
	if err != nil {
		return out
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range v.Nodes {
		if !n.Control || n.Name == s.Name() || addrs[n.Name] == "" {
			continue
		}
		wg.Add(1)
		go func(name, addr string) {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/1.0/control/local", nil)
			if err != nil {
				return
			}
			resp, err := hc.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			var env struct {
				Metadata localControl `json:"metadata"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
				return
			}
			if env.Metadata.Node != name {
				return
			}
			mu.Lock()
			out[name] = env.Metadata
			mu.Unlock()
		}(n.Name, addrs[n.Name])
	}
	wg.Wait()
	return out
}
