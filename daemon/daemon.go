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
	"time"

	"github.com/canonical/microcluster/config"
	"github.com/canonical/microcluster/microcluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
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
}

// Daemon is one running cloudd.
type Daemon struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	state *state.State
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
	return &Daemon{cfg: cfg, log: cfg.Log}, nil
}

// Run starts the daemon and blocks until ctx ends or the daemon stops.
func (d *Daemon) Run(ctx context.Context) error {
	if err := os.MkdirAll(d.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("create state directory %s: %w", d.cfg.StateDir, err)
	}
	m, err := microcluster.App(microcluster.Args{StateDir: d.cfg.StateDir, Verbose: d.cfg.Verbose, Debug: d.cfg.Debug})
	if err != nil {
		return fmt.Errorf("open microcluster state in %s: %w", d.cfg.StateDir, err)
	}
	m.AddServers(d.servers())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go d.sweepLoop(ctx)

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
			return nil
		},
		PostRemove: d.postRemove,
	}
}
