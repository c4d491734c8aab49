package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/render"
)

// newClusterSetCmd groups the cluster-wide settings that can change after bootstrap.
func newClusterSetCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Change a cluster-wide setting after bootstrap (floating-address)",
	}
	cmd.AddCommand(newSetFloatingAddressCmd(a))
	return cmd
}

func newSetFloatingAddressCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "floating-address ADDR|none",
		Short: "Set, change or remove the floating address in front of the control plane",
		Long: `Set, change or remove the floating address in front of the control plane.

ADDR is a free IPv4 address on the control nodes' network, bare (10.0.0.100,
the prefix length of the network is used) or with a prefix length
(10.0.0.100/24); "none" removes it. One healthy control node holds the
address (keepalived) and forwards the databases and the cluster API to
their members (HAProxy); with a single control node it holds it alone, not
highly available until a second one joins. Nothing else is restarted.`,
		Args: exactArgs(1, "cloudctl cluster set floating-address ADDR|none"),
		RunE: func(cmd *cobra.Command, args []string) error {
			addr, err := floatingArg(args[0])
			if err != nil {
				return err
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			p, err := c.SetFloatingAddress(cmd.Context(), addr)
			if err != nil {
				return err
			}
			return render.Write(a.out, a.format, p, func(w io.Writer) error {
				if p.FloatingAddress == "" {
					fmt.Fprintln(w, "Floating address removed: clients use each control node's own address.")
					return nil
				}
				fmt.Fprintf(w, "Floating address set to %s. `cloudctl status` shows which control node holds it.\n", p.FloatingAddress)
				return nil
			})
		},
	}
}

// floatingArg checks the argument's form; cloudd checks the rest (the
// network, the nodes' own addresses).
func floatingArg(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "none") {
		return client.FloatingAddressNone, nil
	}
	if _, _, err := api.ParseFloatingAddress(s); err != nil {
		return "", fmt.Errorf("%w (or none to remove it)", err)
	}
	return s, nil
}
