// Command microinit is the floor of the CLI figures of the benchmark: what
// microcluster's own example CLI (`microctl init NAME ADDRESS --bootstrap`
// or `--token TOKEN`) does, with the same cobra command line, the same
// microcluster.App and the same NewCluster / JoinCluster call to microd over
// its unix socket. microctl itself is not built because its table and i18n
// modules are not in this repository's go.sum; its init command uses neither.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/canonical/microcluster/microcluster"
	"github.com/spf13/cobra"
)

func main() {
	var stateDir, token string
	var boot bool
	root := &cobra.Command{Use: "microinit", SilenceUsage: true}
	root.PersistentFlags().StringVar(&stateDir, "state-dir", "", "microd's state directory")
	initCmd := &cobra.Command{
		Use:  "init <name> <address>",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := microcluster.App(microcluster.Args{StateDir: stateDir})
			if err != nil {
				return fmt.Errorf("open microcluster state %s: %w", stateDir, err)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			if boot {
				return m.NewCluster(ctx, args[0], args[1], nil)
			}
			return m.JoinCluster(ctx, args[0], args[1], token, nil)
		},
	}
	initCmd.Flags().BoolVar(&boot, "bootstrap", false, "make a new cluster")
	initCmd.Flags().StringVar(&token, "token", "", "join with this token")
	initCmd.MarkFlagsMutuallyExclusive("bootstrap", "token")
	root.AddCommand(initCmd)
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}
