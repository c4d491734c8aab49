// Package daemon is cloudd: a microcluster daemon with cloudctl's extended
// schema (nodes, roles, labels, plan, join-token metadata), its REST API, the
// membership hooks, the periodic join-token expiry, and one reconcile loop
// that runs the role drivers cmd/cloudd lists. It knows the driver interface
// (roles/driver), not what any role runs.
package daemon

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canonical/lxd/shared"
	mcclient "github.com/canonical/microcluster/client"
	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/config"
	"github.com/canonical/microcluster/microcluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/supervisor"
)

// Config is how cloudd is started.
type Config struct {
	// StateDir holds the database, certificates and the control socket.
	StateDir string
	// Log receives the daemon's own structured logs.
	Log *slog.Logger
	// Verbose and Debug raise microcluster's own log level.
	Verbose, Debug bool
	// TokenSweep is how often expired join tokens are looked for while
	// tokens are pending (default 2 s).
	TokenSweep time.Duration
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// Resync is how often the reconcile loop runs when no driver asked to
	// come back sooner and nothing kicked it (default 60 s).
	Resync time.Duration
	// ManifestOverlay is a manifest file overlaid on the default when this
	// node bootstraps a cluster; a bootstrap that carries a different
	// manifest is refused.
	ManifestOverlay string
	// Drivers are the role drivers, in order (cmd/cloudd lists them).
	Drivers []driver.Driver
	// MaxLogBytes bounds each log of the processes cloudd supervises
	// (default 32 MiB): checked every minute, a larger log is copied to
	// <log>.1 and emptied.
	MaxLogBytes int64
}

// Daemon is one running cloudd.
type Daemon struct {
	cfg     Config
	log     *slog.Logger
	drivers []driver.Driver

	mu    sync.Mutex
	state *state.State

	sup *supervisor.Supervisor
	// loop is the reconcile loop's state.
	loop    loopState
	memOnce sync.Once
	mem     hwprobe.Memory
	// manifests caches the parsed cluster manifest by its text.
	manifests manifestCache
	peers     *peerClient
	// sweepKick makes the token sweep look now; lastPrune is when it last
	// pruned the token history.
	sweepKick chan struct{}
	lastPrune time.Time
	// untrusted limits the endpoints reachable before trust, per source.
	untrusted attemptGuard
	// preflight remembers, for a few seconds, what the preflight endpoints
	// read from the cluster database.
	preflight preflightMemo
	// leaving is set while this node is being removed: roles stop converging.
	leaving atomic.Bool
	// apiLimits are what limitAPIServers sets on microcluster's servers.
	apiLimits serverLimits
	// memberIPs are the members' addresses as the last reconcile round
	// read them (exempt from the API's per-source connection cap).
	memberIPs atomic.Pointer[map[string]bool]
	// trustState is microcluster's state as the hooks that install the
	// API limits saw it, for the heartbeat gate's trust store lookups
	// (trustedPeer): set with the limits, so the gate never runs without it.
	trustState atomic.Pointer[state.State]
}

// trustedPeer reports whether r presents a certificate of this node's trust
// store (a member's). Before microcluster's state is known, none does.
func (d *Daemon) trustedPeer(r *http.Request) bool {
	s := d.trustState.Load()
	return s != nil && callerName(s, r) != ""
}

// callerName is the member whose trust store certificate r presents first
// (the one TLS proves), or "" for none.
func callerName(s *state.State, r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	if rem := s.Remotes().RemoteByCertificateFingerprint(shared.CertFingerprint(r.TLS.PeerCertificates[0])); rem != nil {
		return rem.Name
	}
	return ""
}

// memberCert reports whether r presents the certificate of a member in the
// cluster database: a member this node's trust store does not list yet
// (it joined while this node was down, and only heartbeats would tell this
// node of it) is still let in to send them.
func (d *Daemon) memberCert(r *http.Request) bool {
	s := d.trustState.Load()
	if s == nil || s.Database == nil || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	var members []cluster.InternalClusterMember
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		members, err = cluster.GetInternalClusterMembers(ctx, tx)
		return err
	})
	if err != nil {
		d.log.Debug("heartbeat gate: read the members' certificates", "err", err)
		return false
	}
	for _, m := range members {
		if b, _ := pem.Decode([]byte(m.Certificate)); b != nil && bytes.Equal(b.Bytes, r.TLS.PeerCertificates[0].Raw) {
			return true
		}
	}
	return false
}

// isMemberIP reports whether ip is a member's address, as last read.
func (d *Daemon) isMemberIP(ip string) bool {
	m := d.memberIPs.Load()
	return m != nil && (*m)[ip]
}

// setMemberIPs records the members' addresses of env.
func (d *Daemon) setMemberIPs(env *driver.Env) {
	m := make(map[string]bool, len(env.Nodes))
	for _, n := range env.Nodes {
		if ip := net.ParseIP(n.IP); ip != nil {
			m[ip.String()] = true
		}
	}
	d.memberIPs.Store(&m)
}

// New prepares a daemon; Run starts it.
func New(cfg Config) (*Daemon, error) {
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("cloudd needs a state directory")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.TokenSweep <= 0 {
		cfg.TokenSweep = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Resync <= 0 {
		cfg.Resync = time.Minute
	}
	if cfg.MaxLogBytes <= 0 {
		cfg.MaxLogBytes = 32 << 20
	}
	seen := map[string]bool{}
	for _, dr := range cfg.Drivers {
		if seen[dr.Name()] {
			return nil, fmt.Errorf("two role drivers are called %q", dr.Name())
		}
		seen[dr.Name()] = true
	}
	d := &Daemon{cfg: cfg, log: cfg.Log, drivers: cfg.Drivers, sup: supervisor.New(nil, cfg.Log), sweepKick: make(chan struct{}, 1)}
	d.loop.init(cfg.Drivers)
	d.apiLimits = defaultAPILimits(d.log, cfg.Now, d.isMemberIP, &d.untrusted, d.trustedPeer, d.memberCert)
	d.peers = newPeerClient(d)
	return d, nil
}

// Run starts the daemon and blocks until ctx ends or the daemon stops.
func (d *Daemon) Run(ctx context.Context) error {
	if err := os.MkdirAll(d.cfg.StateDir, 0o711); err != nil {
		return fmt.Errorf("create state directory %s: %w", d.cfg.StateDir, err)
	}
	// Role services that drop privileges must be able to reach their own
	// directories below the state directory: traverse, not read.
	if err := os.Chmod(d.cfg.StateDir, 0o711); err != nil {
		return fmt.Errorf("state directory %s: %w", d.cfg.StateDir, err)
	}
	if _, err := d.clearInterruptedBootstrap(); err != nil {
		return err
	}
	if _, err := d.clearInterruptedJoin(); err != nil {
		return err
	}
	m, err := microcluster.App(microcluster.Args{StateDir: d.cfg.StateDir, Verbose: d.cfg.Verbose, Debug: d.cfg.Debug})
	if err != nil {
		return fmt.Errorf("open microcluster state in %s: %w", d.cfg.StateDir, err)
	}
	m.AddServers(d.servers())
	d.resumeRecovery(m)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go d.sweepLoop(ctx)
	go d.finishRecovery(ctx)
	go d.trimLogsLoop(ctx)
	loopDone := make(chan struct{})
	go func() { d.reconcileLoop(ctx); close(loopDone) }()
	defer func() {
		cancel()
		<-loopDone
		d.stopDrivers(context.Background())
		d.sup.StopAll(time.Minute)
		d.peers.close()
	}()

	d.log.Info("cloudd starting", "state_dir", d.cfg.StateDir, "version", api.Version, "drivers", d.driverNames())
	if err := m.Start(ctx, schemaUpdates(d.drivers), apiExtensions(), d.hooks()); err != nil {
		return fmt.Errorf("cloudd: %w", err)
	}
	return nil
}

// trimLogsLoop keeps the supervised processes' logs bounded (a daemon that
// floods its log, keepalived logging every advert it ignores, must not
// fill the disk), once a minute until ctx ends.
func (d *Daemon) trimLogsLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		trimmed, err := d.sup.TrimLogs(d.cfg.MaxLogBytes)
		if len(trimmed) > 0 {
			d.log.Info("logs over their limit were copied to .1 and emptied", "logs", trimmed, "limit_bytes", d.cfg.MaxLogBytes)
		}
		if err != nil {
			d.log.Warn("a log could not be trimmed", "error", err)
		}
	}
}

// microclusterApp opens this node's microcluster state, to ask it.
func (d *Daemon) microclusterApp() (*microcluster.MicroCluster, error) {
	m, err := microcluster.App(microcluster.Args{StateDir: d.cfg.StateDir})
	if err != nil {
		return nil, fmt.Errorf("open microcluster state: %w", err)
	}
	return m, nil
}

// localMicrocluster is a client of this node's microcluster, over its
// control socket.
func (d *Daemon) localMicrocluster() (*mcclient.Client, error) {
	m, err := d.microclusterApp()
	if err != nil {
		return nil, err
	}
	lc, err := m.LocalClient()
	if err != nil {
		return nil, fmt.Errorf("connect to microcluster: %w", err)
	}
	return lc, nil
}

func (d *Daemon) driverNames() []string {
	out := make([]string, len(d.drivers))
	for i, dr := range d.drivers {
		out[i] = dr.Name()
	}
	return out
}

// apiExtensions are the API capabilities this cloudd offers; members must agree.
func apiExtensions() []string {
	return []string{"cloudctl_nodes", "cloudctl_tokens", "cloudctl_status"}
}

func (d *Daemon) setState(s *state.State) {
	d.mu.Lock()
	d.state = s
	d.mu.Unlock()
	if s != nil && s.Endpoints != nil {
		d.trustState.Store(s)
		d.limitAPIServers(s.Endpoints)
	}
}

func (d *Daemon) getState() *state.State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

func (d *Daemon) hooks() *config.Hooks {
	return &config.Hooks{
		OnStart: func(s *state.State) error {
			d.setState(s)
			d.kick()
			go d.finishInterruptedJoin(s.Context, s)
			return nil
		},
		PreBootstrap:  d.preBootstrap,
		PostBootstrap: d.postBootstrap,
		PostJoin:      d.postJoin,
		// The servers microcluster started for the new member get their
		// limits before the other members run their OnNewMember hooks.
		PreJoin: func(s *state.State, _ map[string]string) error {
			// A bootstrap refused midway on this node left its mark: the
			// node is a joiner now, and its state is not to be cleared.
			if err := d.bootstrapDone(); err != nil {
				return err
			}
			d.trustState.Store(s)
			d.limitAPIServers(s.Endpoints)
			return nil
		},
		OnNewMember: d.onNewMember,
		PreRemove: func(s *state.State, force bool) error {
			d.log.Info("this node is being removed from the cluster", "node", s.Name(), "force", force)
			d.leaving.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			d.stopDrivers(ctx)
			return nil
		},
		PostRemove: d.postRemove,
	}
}
