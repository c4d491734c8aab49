// Command cloudd is the cloudctl daemon: one per node, a microcluster member
// holding the cluster state and converging the node's roles.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/daemon"
	"github.com/cloudctl/cloudctl/roles/compute"
	"github.com/cloudctl/cloudctl/roles/control"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/endpoint"
	"github.com/cloudctl/cloudctl/roles/storage"
	"github.com/cloudctl/cloudctl/snap"
)

// drivers are the role drivers cloudd runs, in order. Adding a role is one
// package under roles/ and one line here; append, never reorder (each
// driver's schema updates follow the ones listed before it).
func drivers() []driver.Driver {
	return []driver.Driver{
		control.New(),
		compute.New(),
		endpoint.New(),
		storage.New(),
	}
}

func main() {
	fs := flag.NewFlagSet("cloudd", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "state directory (default $CLOUDCTL_STATE_DIR, $SNAP_COMMON/state in a snap, /var/lib/cloudctl)")
	verbose := fs.Bool("verbose", false, "log microcluster information messages")
	debug := fs.Bool("debug", false, "log debug messages")
	version := fs.Bool("version", false, "print the version and exit")
	manifest := fs.String("manifest", "", "manifest overlay applied when this node bootstraps a cluster (a bootstrap's own --manifest wins)")
	clockOffset := fs.String("clock-offset-for-tests", "", "TESTS ONLY: move this daemon's clock by a duration, or by the one in @FILE (preflight clock checks)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if *version {
		fmt.Println(api.Version)
		return
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	dir := snap.StateDir(*stateDir, os.Getenv)

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	cfg := daemon.Config{StateDir: dir, Log: log, Verbose: *verbose, Debug: *debug, ManifestOverlay: *manifest, Drivers: drivers()}
	if *clockOffset != "" {
		now, err := daemon.TestClock(*clockOffset)
		if err != nil {
			log.Error("cannot start", "error", err)
			os.Exit(2)
		}
		log.Warn("the clock is moved for tests", "offset", *clockOffset)
		cfg.Now = now
	}
	d, err := daemon.New(cfg)
	if err != nil {
		log.Error("cannot start", "error", err)
		os.Exit(1)
	}
	if err := d.Run(ctx); err != nil {
		log.Error("stopped", "error", err)
		os.Exit(1)
	}
}
