// Command clouddcore is cloudd with no role drivers: the same daemon package
// (microcluster, cloudd's API, tokens, status, the reconcile loop) and
// nothing else. The benchmark harness (tests/bench) uses it for the
// control-plane-only figures, so that they measure cloudd itself now that
// every role has a driver.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloudctl/cloudctl/daemon"
)

func main() {
	fs := flag.NewFlagSet("clouddcore", flag.ContinueOnError)
	stateDir := fs.String("state-dir", "", "state directory")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	d, err := daemon.New(daemon.Config{StateDir: *stateDir, Log: log})
	if err != nil {
		log.Error("cannot start", "error", err)
		os.Exit(1)
	}
	if err := d.Run(ctx); err != nil {
		log.Error("stopped", "error", err)
		os.Exit(1)
	}
}
