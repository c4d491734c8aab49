package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/render"
)

func newComputeCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "compute", Short: "The compute role's LXD cluster: access for lxc clients"}
	var name, revoke string
	var list bool
	access := &cobra.Command{
		Use:   "access",
		Short: "Issue a trust token for `lxc remote add` (single use, expires; --list, --revoke NAME)",
		Long: "Issue a trust token that lets an lxc client on your own machine drive the cluster's LXD:\n" +
			"`lxc remote add cloud TOKEN`. The token works once and expires (LXD's core.remote_token_expiry);\n" +
			"lxc connects to the floating address when the cluster has one, else to this node's cluster address.\n" +
			"Run it as root on a compute node.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if list && revoke != "" {
				return errors.New("--list and --revoke go alone: use one of them")
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			switch {
			case list:
				toks, err := c.ComputeAccessTokens(cmd.Context())
				if err != nil {
					return err
				}
				return render.Write(a.out, a.format, toks, func(w io.Writer) error {
					if len(toks) == 0 {
						fmt.Fprintln(w, "No unused trust tokens on this node.")
						return nil
					}
					t := render.NewTable(w, "NAME", "EXPIRES")
					for _, tk := range toks {
						t.Row(tk.Name, tk.ExpiresAt.UTC().Format(time.RFC3339))
					}
					return t.Flush()
				})
			case revoke != "":
				if err := c.RevokeComputeAccess(cmd.Context(), revoke); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "Trust token %s revoked.\n", revoke)
				return nil
			}
			acc, err := c.IssueComputeAccess(cmd.Context(), name)
			if err != nil {
				return err
			}
			return render.Write(a.out, a.format, acc, func(w io.Writer) error { return writeAccess(w, acc) })
		},
	}
	access.Flags().StringVar(&name, "name", "", "client name the token is issued for (default: cloudctl-<time>)")
	access.Flags().BoolVar(&list, "list", false, "list unused trust tokens issued on this node")
	access.Flags().StringVar(&revoke, "revoke", "", "revoke the unused trust token issued for this client name")
	cmd.AddCommand(access)
	return cmd
}

func writeAccess(w io.Writer, acc api.ComputeAccess) error {
	fmt.Fprintf(w, "Trust token for %s (single use, expires %s; revoke with `cloudctl compute access --revoke %s`):\n\n",
		acc.Name, acc.ExpiresAt.UTC().Format(time.RFC3339), acc.Name)
	fmt.Fprintf(w, "  %s\n\n", acc.Token)
	fmt.Fprintf(w, "On your machine (lxc connects to %s):\n\n  lxc remote add cloud %s\n", acc.Address, acc.Token)
	return nil
}
