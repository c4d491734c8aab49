// Package daemon is cloudd: a microcluster daemon with cloudctl's extended
// schema (nodes, roles, labels, plan, join-token metadata), its REST API, the
// membership hooks, and the periodic join-token expiry.
package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/canonical/microcluster/config"
	"github.com/canonical/microcluster/microcluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/roles/control"
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
	// TokenSweep is how often expired join tokens are revoked (default 2 s).
	TokenSweep time.Duration
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// ControlInterval is how often the control role converges (default 2 s).
	ControlInterval time.Duration
	// ManifestOverlay is a manifest file overlaid on the default when this
	// node bootstraps a cluster and the bootstrap request carries none.
	ManifestOverlay string
}

// Daemon is one running cloudd.
type Daemon struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	state *state.State

	sup *supervisor.Supervisor
	// controlMu serialises convergence and stopping of the control role.
	controlMu   sync.Mutex
	control     *control.Driver
	kick        chan struct{}
	lastControl localControl
	memOnce     sync.Once
	mem         hwprobe.Memory
	// leaving is set while this node is being removed: roles stop converging.
	leaving atomic.Bool
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
	if cfg.ControlInterval <= 0 {
		cfg.ControlInterval = 2 * time.Second
	}
	return &Daemon{cfg: cfg, log: cfg.Log, sup: supervisor.New(nil, cfg.Log), kick: make(chan struct{}, 1)}, nil
}

// Run starts the daemon and blocks until ctx ends or the daemon stops.
func (d *Daemon) Run(ctx context.Context) error {
	if err := os.MkdirAll(d.cfg.StateDir, 0o711); err != nil {
		return fmt.Errorf("create state directory %s: %w", d.cfg.StateDir, err)
	}
	// Role services (mariadbd runs as the mysql user) must be able to reach
	// their own directories below the state directory: traverse, not read.
	if err := os.Chmod(d.cfg.StateDir, 0o711); err != nil {
		return fmt.Errorf("state directory %s: %w", d.cfg.StateDir, err)
	}
	m, err := microcluster.App(microcluster.Args{StateDir: d.cfg.StateDir, Verbose: d.cfg.Verbose, Debug: d.cfg.Debug})
	if err != nil {
		return fmt.Errorf("open microcluster state in %s: %w", d.cfg.StateDir, err)
	}
	m.AddServers(d.servers())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go d.sweepLoop(ctx)
	controlDone := make(chan struct{})
	go func() { d.controlLoop(ctx); close(controlDone) }()
	defer func() { cancel(); <-controlDone; d.sup.StopAll(time.Minute) }()

	d.log.Info("cloudd starting", "state_dir", d.cfg.StateDir, "version", api.Version)
	if err := m.Start(ctx, schemaUpdates(), apiExtensions(), d.hooks()); err != nil {
		return fmt.Errorf("cloudd: %w", err)
	}
	return nil
}

// apiExtensions are the API capabilities this cloudd offers; members must agree.
func apiExtensions() []string {
	return []string{"cloudctl_nodes", "cloudctl_tokens", "cloudctl_status"}
}

func (d *Daemon) setState(s *state.State) {
	d.mu.Lock()
	d.state = s
	d.mu.Unlock()
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
			return nil
		},
		PostBootstrap: d.postBootstrap,
		PostJoin:      d.postJoin,
		OnNewMember:   d.onNewMember,
		PreRemove: func(s *state.State, force bool) error {
			d.log.Info("this node is being removed from the cluster", "node", s.Name(), "force", force)
			d.leaving.Store(true)
			d.controlMu.Lock()
			if d.control != nil {
				d.control.StopAll()
			}
			d.controlMu.Unlock()
			return nil
		},
		PostRemove: d.postRemove,
	}
}
