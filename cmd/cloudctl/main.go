// Command cloudctl is the cloudctl CLI: it parses flags, calls the packages
// that do the work, and renders results as a table, JSON or YAML.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/render"
	"github.com/cloudctl/cloudctl/snap"
)

// app carries what every command needs: where the daemon lives, the output
// format, and the streams to write to. It is built once in main.
type app struct {
	stateDirFlag string
	format       string
	out          io.Writer
	errOut       io.Writer
	in           io.Reader
	getenv       func(string) string
}

// stateDir resolves --state-dir, $CLOUDCTL_STATE_DIR, then the snap default.
func (a *app) stateDir() string { return snap.StateDir(a.stateDirFlag, a.getenv) }

func newRootCmd(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "cloudctl",
		Short:         "Turn one to fifty Linux machines into a small private cloud",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return render.CheckFormat(a.format)
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetOut(a.out)
	root.SetErr(a.errOut)
	root.SetIn(a.in)
	root.PersistentFlags().StringVar(&a.stateDirFlag, "state-dir", "", "cloudd state directory (default $CLOUDCTL_STATE_DIR, $SNAP_COMMON/state in a snap, /var/lib/cloudctl)")
	root.PersistentFlags().StringVar(&a.format, "format", "table", "output format: table, json or yaml")

	root.AddCommand(
		newVersionCmd(a),
		newBootstrapCmd(a),
		newClusterCmd(a),
		newRoleCmd(a),
		newStatusCmd(a),
		newDatabaseCmd(a),
		newComputeCmd(a),
		newStorageCmd(a),
		newManifestCmd(a),
		newProbeCmd(a),
		newPreseedCmd(a),
	)
	return root
}

func main() {
	a := &app{out: os.Stdout, errOut: os.Stderr, in: os.Stdin, getenv: os.Getenv}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	err := newRootCmd(a).ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error: "+userMessage(err))
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }
