package control

import (
	"bufio"
	"context"
	"database/sql"
	sqldriver "database/sql/driver"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/supervisor"
)

// AdminUser is the MariaDB account cloudd provisions with (localhost only).
const AdminUser = "cloudd"

// Credential is one service's database account.
type Credential struct {
	Service  string `json:"service"`
	User     string `json:"user"`
	Password string `json:"-"`
}

// Desired is what this node should run, decided by cloudd from the cluster state.
type Desired struct {
	// Host is false when this node runs no MariaDB (not a control node, or a
	// control node beyond the Galera members).
	Host          bool
	Topology      string
	Instances     []Instance
	AdminPassword string
	Credentials   map[string]Credential
	// Peers are the Galera members (this node among them); nil when standalone.
	Peers []Peer
	// Seed is the node whose data seeds a new Galera cluster.
	Seed string
	// Formed tells, per instance, whether its Galera cluster has formed.
	Formed map[string]bool
	// PrimaryElsewhere tells, per instance, whether another member reports a Primary component now.
	PrimaryElsewhere map[string]bool
	// Recovery holds, per instance, the positions members reported after a full outage.
	Recovery map[string][]Position
	// CA is the cluster's control CA; CertIPs the addresses this node's
	// certificate names (its own, the floating address).
	CA      ClusterCA
	CertIPs []string
	// ClientHosts are the MariaDB host patterns the service accounts may
	// connect from: every member's address, and the networks the plan names.
	ClientHosts []string
	// GaleraAllow are the addresses this node's Galera members accept
	// replication and state transfers from (mysql.wsrep_allowlist): the
	// peers' own, so a node removed from the cluster, whose certificate
	// the control CA still signs, is refused.
	GaleraAllow []string
}

// Position is a Galera member's last committed position.
type Position struct {
	Node  string `json:"node"`
	UUID  string `json:"uuid"`
	Seqno int64  `json:"seqno"`
}

// InstanceStatus is what the driver observed about one instance.
type InstanceStatus struct {
	Instance string `json:"instance"`
	// State: stopped, starting, running, waiting (for Galera to form or a Primary), recovering, failed.
	State string `json:"state"`
	// WsrepStatus is "Primary", "non-Primary", "Disconnected", or "" standalone.
	WsrepStatus string `json:"wsrep_status"`
	Size        int    `json:"size"`
	Comment     string `json:"comment,omitempty"`
	// Formed is set when this node just formed the Galera cluster of the instance.
	Formed bool `json:"-"`
	// Report is this node's position, when it waits for a full-outage recovery.
	Report *Position `json:"-"`
	// Provisioned is true once every service database and user exist on it.
	Provisioned bool `json:"provisioned"`
}

// Commands runs one-off programs (mariadb-install-db, mariadbd --wsrep-recover).
type Commands = supervisor.Commands

// ExecCommands is the real Commands.
type ExecCommands = supervisor.Exec

// Engine converges this node's MariaDB instances: it writes their configuration, starts them under the supervisor, forms and rejoins Galera, and provisions service databases.
type Engine struct {
	Dir      string // <state-dir>/control
	Node     string
	IP       string
	Manifest *manifests.Manifest
	Sup      *supervisor.Supervisor
	Cmd      Commands
	Log      *slog.Logger

	mu sync.Mutex
	// provisioned holds, per instance, the client hosts it was provisioned for.
	provisioned map[string]string
	// sslLoaded holds, per instance, the fingerprint of the TLS files it serves.
	sslLoaded map[string]string
	// allowed holds, per instance, the Galera allowlist it was given.
	allowed   map[string]string
	tlsPrint  string
	lastStart map[string]time.Time
	failures  map[string]int
	started   map[string]startMode
}

type startMode int

const (
	modeStandalone startMode = iota + 1
	modeNewCluster
	modeJoin
)

// NewEngine prepares an engine; nothing starts until Converge.
func NewEngine(dir, node, ip string, m *manifests.Manifest, sup *supervisor.Supervisor, log *slog.Logger) *Engine {
	return &Engine{Dir: dir, Node: node, IP: ip, Manifest: m, Sup: sup, Cmd: ExecCommands{}, Log: log,
		provisioned: map[string]string{}, sslLoaded: map[string]string{}, allowed: map[string]string{}, lastStart: map[string]time.Time{}, failures: map[string]int{}, started: map[string]startMode{}}
}

func svcName(in Instance) string { return "mariadb-" + strings.TrimPrefix(in.Name, "mysql-") }

func (d *Engine) bin(name string) string {
	if p, err := d.Manifest.Binary("mariadb", name); err == nil {
		return p
	}
	return name
}

// Converge brings every instance towards des and reports what it saw.
func (d *Engine) Converge(ctx context.Context, des Desired) []InstanceStatus {
	if !des.Host {
		d.StopAll()
		return nil
	}
	want := map[string]bool{}
	var out []InstanceStatus
	print, err := d.ensureTLS(des, time.Now())
	if err != nil {
		d.Log.Warn("control: no TLS certificate for the databases", "error", err)
		for _, in := range des.Instances {
			out = append(out, InstanceStatus{Instance: in.Name, State: "failed", Comment: err.Error()})
		}
		return out
	}
	d.mu.Lock()
	d.tlsPrint = print
	d.mu.Unlock()
	for _, in := range des.Instances {
		want[svcName(in)] = true
		st, err := d.convergeInstance(ctx, des, in)
		if err != nil {
			d.Log.Warn("control: instance not converged", "instance", in.Name, "error", err)
			st.State, st.Comment = "failed", err.Error()
		}
		st.Instance = in.Name
		out = append(out, st)
	}
	for _, n := range d.Sup.Names() {
		if strings.HasPrefix(n, "mariadb-") && !want[n] {
			_ = d.Sup.Stop(n, time.Minute)
		}
	}
	return out
}

// StopAll stops every MariaDB instance this driver started.
func (d *Engine) StopAll() {
	for _, n := range d.Sup.Names() {
		if strings.HasPrefix(n, "mariadb-") {
			_ = d.Sup.Stop(n, time.Minute)
		}
	}
	d.mu.Lock()
	d.provisioned = map[string]string{}
	d.sslLoaded = map[string]string{}
	d.allowed = map[string]string{}
	d.started = map[string]startMode{}
	d.mu.Unlock()
}

func (d *Engine) convergeInstance(ctx context.Context, des Desired, in Instance) (InstanceStatus, error) {
	st := InstanceStatus{State: "stopped"}
	p := instancePaths(d.Dir, in)
	if _, err := d.ensureData(ctx, p); err != nil {
		return st, err
	}
	// An init file of an older cloudd held the admin password: it goes.
	_ = os.Remove(p.initSQL)
	provider, _ := d.Manifest.File("galera", "provider")
	cfg := renderConfig(configInput{Inst: in, Paths: p, NodeName: d.Node, IP: d.IP, Peers: des.Peers, Provider: provider, MaxConnections: d.Manifest.MySQL.MaxConnections, TLS: tlsFiles(d.Dir), Allow: des.GaleraAllow})
	changed, err := writeIfChanged(p.cnf, cfg)
	if err != nil {
		return st, err
	}
	name := svcName(in)
	_, running := d.Sup.Status(name)
	d.mu.Lock()
	mode := d.started[name]
	d.mu.Unlock()
	galera := len(des.Peers) > 0

	if !galera {
		if running && (changed || mode != modeStandalone) {
			_ = d.Sup.Stop(name, time.Minute)
			running = false
		}
		if !running {
			if err := d.start(in, p, modeStandalone); err != nil {
				return st, err
			}
		}
		return d.observe(ctx, des, in, p, st)
	}

	formed := des.Formed[in.Name]
	switch {
	case !formed && des.Seed == d.Node:
		// This node's data seeds the new Galera cluster.
		if running && mode != modeNewCluster {
			_ = d.Sup.Stop(name, time.Minute)
			running = false
		}
		if !running {
			if err := setSafeToBootstrap(p.grastate); err != nil {
				return st, err
			}
			if err := d.start(in, p, modeNewCluster); err != nil {
				return st, err
			}
		}
		st, err = d.observe(ctx, des, in, p, st)
		if err == nil && st.WsrepStatus == "Primary" {
			st.Formed = true
		}
		return st, err
	case !formed:
		if running {
			_ = d.Sup.Stop(name, time.Minute)
		}
		st.State, st.Comment = "waiting", "waiting for "+des.Seed+" to form the Galera cluster"
		return st, nil
	}

	// Formed: keep running, or rejoin, or recover from a full outage.
	if running {
		st, err := d.observe(ctx, des, in, p, st)
		d.mu.Lock()
		since := time.Since(d.lastStart[name])
		d.mu.Unlock()
		// A joiner that finds no Primary component never opens: once no
		// member is Primary any more, give up and take part in recovery.
		if err == nil && st.State == "starting" && mode == modeJoin && !des.PrimaryElsewhere[in.Name] && since > 30*time.Second {
			d.Log.Warn("control: no Primary component to join; stopping to recover", "instance", in.Name)
			_ = d.Sup.Stop(name, time.Minute)
			st.State, st.Comment = "stopped", "no Primary component to join"
		}
		return st, err
	}
	if des.PrimaryElsewhere[in.Name] {
		if !d.backoffOver(name) {
			st.State, st.Comment = "starting", "waiting before the next start attempt"
			return st, nil
		}
		if err := d.start(in, p, modeJoin); err != nil {
			return st, err
		}
		st.State, st.Comment = "starting", "joining the Galera cluster"
		return st, nil
	}
	// No member is Primary: every member reports its position and the one
	// with the most recent state bootstraps.
	pos, err := d.recoverPosition(ctx, in, p)
	if err != nil {
		return st, err
	}
	st.Report = &pos
	st.State, st.Comment = "recovering", fmt.Sprintf("no Primary component: reported seqno %d, waiting for the other members", pos.Seqno)
	if w, ok := RecoveryWinner(des.Recovery[in.Name], len(des.Peers)); ok && w.Node == d.Node {
		if err := setSafeToBootstrap(p.grastate); err != nil {
			return st, err
		}
		if err := d.start(in, p, modeNewCluster); err != nil {
			return st, err
		}
		st.State, st.Comment = "starting", fmt.Sprintf("bootstrapping the Galera cluster from this node (seqno %d, the most recent)", pos.Seqno)
	}
	return st, nil
}

// RecoveryWinner picks the member that bootstraps after a full outage: the
// highest seqno, ties broken by name. It waits until all members reported.
func RecoveryWinner(reports []Position, members int) (Position, bool) {
	if members == 0 || len(reports) < members {
		return Position{}, false
	}
	best := reports[0]
	for _, r := range reports[1:] {
		if r.Seqno > best.Seqno || r.Seqno == best.Seqno && r.Node < best.Node {
			best = r
		}
	}
	return best, true
}

func (d *Engine) backoffOver(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	wait := time.Duration(1<<min(d.failures[name], 5)) * time.Second
	return time.Since(d.lastStart[name]) >= wait
}

// start launches mariadbd. modeNewCluster bootstraps a Galera cluster.
//
// No secret is handed to it: cloudd's admin account is created afterwards
// over the unix socket (ensureAdmin), so a crash at any point leaves no
// password file behind and the next round finishes the job.
func (d *Engine) start(in Instance, p paths, mode startMode) error {
	name := svcName(in)
	args := []string{"--defaults-file=" + p.cnf}
	if mode == modeNewCluster {
		args = append(args, "--wsrep-new-cluster")
	}
	d.mu.Lock()
	if time.Since(d.lastStart[name]) < 2*time.Minute {
		d.failures[name]++
	} else {
		d.failures[name] = 0
	}
	d.lastStart[name] = time.Now()
	d.started[name] = mode
	delete(d.provisioned, name)
	delete(d.allowed, name) // a state transfer brings the donor's
	d.sslLoaded[name] = d.tlsPrint
	d.mu.Unlock()
	if found, err := supervisor.StopStray(p.pid, "--defaults-file="+p.cnf, time.Minute); err != nil {
		return fmt.Errorf("%s: %w", in.Name, err)
	} else if found {
		d.Log.Warn("control: stopped a MariaDB left running by an earlier cloudd", "instance", in.Name)
	}
	// Its error log (log-error), which mariadbd opens for appending: the
	// supervisor bounds it with its output.
	spec := supervisor.Spec{Name: name, Path: d.bin("mariadbd"), Args: args, LogPath: filepath.Join(p.dir, "mariadbd.out"), Logs: []string{p.errlog}, OneShot: mode != modeStandalone}
	d.Log.Info("control: starting MariaDB", "instance", in.Name, "port", in.Port, "mode", map[startMode]string{modeStandalone: "standalone", modeNewCluster: "new Galera cluster", modeJoin: "join Galera"}[mode])
	if err := d.Sup.Start(spec); err != nil {
		return fmt.Errorf("start %s: %w", in.Name, err)
	}
	return nil
}

// ensureAdmin creates (or resets) cloudd's admin account when it cannot log
// in: connected as MariaDB's root over the unix socket, which MariaDB
// authenticates by the connecting process's user (root, as cloudd runs).
// It covers a first start, a start that crashed before the account existed,
// and a datadir an older cloudd made.
func ensureAdmin(ctx context.Context, sock, pw string) error {
	if pw == "" {
		return errors.New("no admin password recorded yet")
	}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "unix", sock
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 10*time.Second, 10*time.Second
	cfg.InterpolateParams = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("mysql connector: %w", err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	stmts := []struct {
		q    string
		args []any
	}{
		{"CREATE USER IF NOT EXISTS '" + AdminUser + "'@'localhost' IDENTIFIED BY ?", []any{pw}},
		{"ALTER USER '" + AdminUser + "'@'localhost' IDENTIFIED BY ?", []any{pw}},
		{"GRANT ALL PRIVILEGES ON *.* TO '" + AdminUser + "'@'localhost' WITH GRANT OPTION", nil},
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s.q, s.args...); err != nil {
			return fmt.Errorf("create the admin account as root over the socket: %w", err)
		}
	}
	return nil
}

func accessDenied(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1045 || me.Number == 1698)
}

// observe connects as the admin user, reads wsrep status, and provisions.
func (d *Engine) observe(ctx context.Context, des Desired, in Instance, p paths, st InstanceStatus) (InstanceStatus, error) {
	name := svcName(in)
	db, err := openAdmin(p.sock, des.AdminPassword)
	if err != nil {
		return st, err
	}
	defer db.Close()
	// A freshly started server takes a moment (and a Galera joiner a state
	// transfer): wait a little right after a start, not on every round.
	var pingErr error
	d.mu.Lock()
	deadline := d.lastStart[name].Add(15 * time.Second)
	d.mu.Unlock()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		pingErr = db.PingContext(pctx)
		if accessDenied(pingErr) {
			if err := ensureAdmin(pctx, p.sock, des.AdminPassword); err != nil {
				cancel()
				return st, err
			}
			d.Log.Info("control: created cloudd's admin account", "instance", in.Name)
			pingErr = db.PingContext(pctx)
		}
		cancel()
		if pingErr == nil || time.Now().After(deadline) {
			break
		}
		if _, running := d.Sup.Status(name); !running {
			return st, fmt.Errorf("mariadbd exited: %s", tail(p.errlog, 3))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if pingErr != nil {
		st.State, st.Comment = "starting", "not answering yet"
		return st, nil
	}
	st.State = "running"
	ws, err := wsrepStatus(ctx, db)
	if err != nil {
		return st, err
	}
	if len(des.Peers) > 0 {
		st.WsrepStatus, st.Size, st.Comment = ws.status, ws.size, ws.comment
		if ws.status != "Primary" {
			return st, nil
		}
		// The allowlist is this server's own (no replication): kept
		// while it is a donor or catching up too, and whatever the
		// provisioning below does, so that a member stepping in is
		// let in by every member that answers.
		if err := d.syncAllowlist(ctx, db, in, des.GaleraAllow); err != nil {
			return st, err
		}
		if ws.comment != "Synced" {
			return st, nil
		}
	}
	d.mu.Lock()
	hosts := strings.Join(des.ClientHosts, ",")
	done := d.provisioned[name] == hosts
	reload := d.sslLoaded[name] != d.tlsPrint
	tlsPrint := d.tlsPrint
	d.mu.Unlock()
	if reload {
		// A renewed certificate (a new floating address): reload it without a restart.
		if _, err := db.ExecContext(ctx, "FLUSH SSL"); err != nil {
			return st, fmt.Errorf("reload the TLS certificate: %w", err)
		}
		d.mu.Lock()
		d.sslLoaded[name] = tlsPrint
		d.mu.Unlock()
	}
	if !done {
		if err := provision(ctx, db, in, des.Credentials, des.ClientHosts); err != nil {
			return st, err
		}
		d.mu.Lock()
		d.provisioned[name] = hosts
		d.mu.Unlock()
	}
	st.Provisioned = true
	return st, nil
}

// syncAllowlist brings the allowlist of in's server to ips once per start
// and change (the memo allowed).
func (d *Engine) syncAllowlist(ctx context.Context, db *sql.DB, in Instance, ips []string) error {
	if len(ips) == 0 {
		return nil
	}
	name := svcName(in)
	allow := strings.Join(ips, ",")
	d.mu.Lock()
	done := d.allowed[name] == allow
	d.mu.Unlock()
	if done {
		return nil
	}
	if err := syncAllowlist(ctx, db, ips); err != nil {
		return err
	}
	d.mu.Lock()
	d.allowed[name] = allow
	d.mu.Unlock()
	d.Log.Info("control: Galera accepts replication from these addresses only", "instance", in.Name, "addresses", allow)
	return nil
}

// syncAllowlist makes this server's Galera allowlist (mysql.wsrep_allowlist,
// which Galera reads at every incoming replication or state-transfer
// connection) exactly ips. The change stays on this server (wsrep_on=OFF
// for the session): each member keeps its own from its own view of the
// members, so two members with views a moment apart never undo each
// other's writes, nor conflict at certification. The addresses are added
// before the stale ones go: an empty table lets every address in.
func syncAllowlist(ctx context.Context, db *sql.DB, ips []string) error {
	if len(ips) == 0 {
		return errors.New("an empty Galera allowlist would let every address in")
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("the Galera allowlist: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET SESSION wsrep_on = OFF"); err != nil {
		return fmt.Errorf("the Galera allowlist: %w", err)
	}
	// The connection goes back to the pool with replication on again, or
	// is discarded.
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), "SET SESSION wsrep_on = ON"); err != nil {
			_ = conn.Raw(func(any) error { return sqldriver.ErrBadConn })
		}
	}()
	rows, err := conn.QueryContext(ctx, "SELECT ip FROM mysql.wsrep_allowlist")
	if err != nil {
		return fmt.Errorf("read the Galera allowlist: %w", err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var ip string
		if err := rows.Scan(&ip); err != nil {
			rows.Close()
			return fmt.Errorf("read the Galera allowlist: %w", err)
		}
		have[ip] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the Galera allowlist: %w", err)
	}
	want := map[string]bool{}
	for _, ip := range ips {
		want[ip] = true
		if !have[ip] {
			if _, err := conn.ExecContext(ctx, "INSERT IGNORE INTO mysql.wsrep_allowlist (ip) VALUES (?)", ip); err != nil {
				return fmt.Errorf("allow %s in the Galera allowlist: %w", ip, err)
			}
		}
	}
	for ip := range have {
		if !want[ip] {
			if _, err := conn.ExecContext(ctx, "DELETE FROM mysql.wsrep_allowlist WHERE ip = ?", ip); err != nil {
				return fmt.Errorf("remove %s from the Galera allowlist: %w", ip, err)
			}
		}
	}
	return nil
}

func openAdmin(sock, pw string) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = AdminUser, pw, "unix", sock
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 10*time.Second, 10*time.Second
	cfg.InterpolateParams = true
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql connector: %w", err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(2)
	return db, nil
}

type wsrep struct {
	status, comment string
	size            int
}

func wsrepStatus(ctx context.Context, db *sql.DB) (wsrep, error) {
	var w wsrep
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_status','wsrep_cluster_size','wsrep_local_state_comment')")
	if err != nil {
		return w, fmt.Errorf("read wsrep status: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return w, fmt.Errorf("read wsrep status: %w", err)
		}
		switch k {
		case "wsrep_cluster_status":
			w.status = v
		case "wsrep_cluster_size":
			w.size, _ = strconv.Atoi(v)
		case "wsrep_local_state_comment":
			w.comment = v
		}
	}
	return w, rows.Err()
}

var identRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)

var hostRE = regexp.MustCompile(`^[0-9a-fA-F:.]+(/[0-9.]+)?$`)

// provision creates each service's database and its accounts, one per client
// host (REQUIRE SSL), and drops the accounts of hosts no longer listed (and
// the '%' accounts of older releases). It is idempotent.
func provision(ctx context.Context, db *sql.DB, in Instance, creds map[string]Credential, hosts []string) error {
	if len(hosts) == 0 {
		return errors.New("no client hosts for the service accounts")
	}
	for _, h := range hosts {
		if !hostRE.MatchString(h) {
			return fmt.Errorf("client host %q: not an address or address/netmask", h)
		}
	}
	for _, svc := range in.Services {
		c, ok := creds[svc]
		if !ok {
			return fmt.Errorf("no credentials for service %q yet", svc)
		}
		if !identRE.MatchString(svc) || !identRE.MatchString(c.User) {
			return fmt.Errorf("service %q: not a valid MySQL identifier", svc)
		}
		type stmt struct {
			q    string
			args []any
		}
		stmts := []stmt{{"CREATE DATABASE IF NOT EXISTS `" + svc + "`", nil}}
		want := map[string]bool{}
		for _, h := range hosts {
			want[h] = true
			acct := "'" + c.User + "'@'" + h + "'"
			stmts = append(stmts,
				stmt{"CREATE USER IF NOT EXISTS " + acct + " IDENTIFIED BY ? REQUIRE SSL", []any{c.Password}},
				stmt{"ALTER USER " + acct + " IDENTIFIED BY ? REQUIRE SSL", []any{c.Password}},
				stmt{"GRANT ALL PRIVILEGES ON `" + svc + "`.* TO " + acct, nil})
		}
		for _, s := range stmts {
			if _, err := db.ExecContext(ctx, s.q, s.args...); err != nil {
				return fmt.Errorf("provision %s: %w", svc, err)
			}
		}
		stale, err := accountHosts(ctx, db, c.User)
		if err != nil {
			return err
		}
		for _, h := range stale {
			if want[h] {
				continue
			}
			if _, err := db.ExecContext(ctx, "DROP USER IF EXISTS '"+c.User+"'@'"+strings.ReplaceAll(h, "'", "")+"'"); err != nil {
				return fmt.Errorf("drop %s@%s: %w", c.User, h, err)
			}
		}
	}
	return nil
}

func accountHosts(ctx context.Context, db *sql.DB, user string) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SELECT Host FROM mysql.user WHERE User = ?", user)
	if err != nil {
		return nil, fmt.Errorf("read accounts of %s: %w", user, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("read accounts of %s: %w", user, err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// ensureData creates the instance directory and, on first use, its datadir.
func (d *Engine) ensureData(ctx context.Context, p paths) (bool, error) {
	// The mysql user must traverse the driver's directory to reach its own.
	if err := os.MkdirAll(d.Dir, 0o711); err != nil {
		return false, fmt.Errorf("create %s: %w", d.Dir, err)
	}
	if err := os.Chmod(d.Dir, 0o711); err != nil {
		return false, fmt.Errorf("chmod %s: %w", d.Dir, err)
	}
	if err := os.MkdirAll(p.dir, 0o750); err != nil {
		return false, fmt.Errorf("create %s: %w", p.dir, err)
	}
	if err := chownMySQL(p.dir); err != nil {
		return false, err
	}
	if _, err := os.Stat(filepath.Join(p.data, "mysql")); err == nil {
		return false, nil
	}
	if err := os.RemoveAll(p.data); err != nil {
		return false, fmt.Errorf("clear half-made datadir: %w", err)
	}
	// mariadb-install-db takes seconds; run it once per node into a template
	// and copy that for each instance.
	if err := d.ensureTemplate(ctx); err != nil {
		return false, err
	}
	if _, err := d.Cmd.Run(ctx, "cp", "-a", d.templateDir(), p.data); err != nil {
		_ = os.RemoveAll(p.data)
		return false, fmt.Errorf("copy datadir template: %w", err)
	}
	return true, nil
}

func (d *Engine) templateDir() string { return filepath.Join(d.Dir, ".datadir-template") }

func (d *Engine) ensureTemplate(ctx context.Context) error {
	tpl := d.templateDir()
	if _, err := os.Stat(filepath.Join(tpl, "mysql")); err == nil {
		return nil
	}
	if err := os.RemoveAll(tpl); err != nil {
		return fmt.Errorf("clear half-made template: %w", err)
	}
	// A minimal defaults-file for the installer.
	tmp := filepath.Join(d.Dir, "install.cnf")
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("[mysqld]\nuser=mysql\ndatadir=%s\n", tpl)), 0o644); err != nil {
		return fmt.Errorf("write installer config: %w", err)
	}
	defer os.Remove(tmp)
	ictx, cancel := context.WithTimeout(ctx, d.Manifest.Timeouts.Step("mysql_init"))
	defer cancel()
	start := time.Now()
	if _, err := d.Cmd.Run(ictx, d.bin("mariadb-install-db"), "--defaults-file="+tmp, "--auth-root-authentication-method=socket", "--skip-test-db"); err != nil {
		_ = os.RemoveAll(tpl)
		return fmt.Errorf("initialise datadir: %w", err)
	}
	d.Log.Info("control: initialised datadir template", "dir", tpl, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// recoverPosition reads the last committed position from grastate.dat, or
// asks mariadbd --wsrep-recover when the shutdown was not clean.
func (d *Engine) recoverPosition(ctx context.Context, in Instance, p paths) (Position, error) {
	pos := Position{Node: d.Node}
	uuid, seqno, err := readGrastate(p.grastate)
	if err == nil && seqno >= 0 {
		pos.UUID, pos.Seqno = uuid, seqno
		return pos, nil
	}
	logf := filepath.Join(p.dir, "wsrep-recover.log")
	_ = os.Remove(logf)
	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := d.Cmd.Run(rctx, d.bin("mariadbd"), "--defaults-file="+p.cnf, "--wsrep-recover", "--log-error="+logf); err != nil {
		return pos, fmt.Errorf("wsrep-recover %s: %w", in.Name, err)
	}
	b, err := os.ReadFile(logf)
	if err != nil {
		return pos, fmt.Errorf("read wsrep-recover log: %w", err)
	}
	m := regexp.MustCompile(`Recovered position: ([0-9a-f-]+):(-?\d+)`).FindAllStringSubmatch(string(b), -1)
	if len(m) == 0 {
		return pos, fmt.Errorf("wsrep-recover %s printed no position: %s", in.Name, supervisor.LastLines(b, 3))
	}
	pos.UUID = m[len(m)-1][1]
	pos.Seqno, _ = strconv.ParseInt(m[len(m)-1][2], 10, 64)
	return pos, nil
}

func readGrastate(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", -1, err
	}
	defer f.Close()
	var uuid string
	seqno := int64(-1)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "uuid":
			uuid = strings.TrimSpace(v)
		case "seqno":
			seqno, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return uuid, seqno, sc.Err()
}

// setSafeToBootstrap marks grastate.dat so mariadbd accepts --wsrep-new-cluster.
func setSafeToBootstrap(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read grastate: %w", err)
	}
	s := regexp.MustCompile(`(?m)^safe_to_bootstrap:\s*0`).ReplaceAllString(string(b), "safe_to_bootstrap: 1")
	if err := os.WriteFile(path, []byte(s), 0o660); err != nil {
		return fmt.Errorf("write grastate: %w", err)
	}
	return chownMySQL(path)
}

func writeIfChanged(path, content string) (bool, error) {
	if b, err := os.ReadFile(path); err == nil && string(b) == content {
		return false, nil
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}

func chownMySQL(path string) error {
	u, err := user.Lookup("mysql")
	if err != nil {
		return fmt.Errorf("the mysql system user is missing (install mariadb-server): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		return fmt.Errorf("chown %s to mysql: %w", path, err)
	}
	return nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no error log)"
	}
	return supervisor.LastLines(b, n)
}
