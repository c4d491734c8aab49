package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/render"
	"github.com/cloudctl/cloudctl/roles"
)

func newRoleCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "role", Short: "Add or remove roles of a member"}
	change := func(add bool) *cobra.Command {
		verb := "remove"
		if add {
			verb = "add"
		}
		return &cobra.Command{
			Use:   verb + " NODE ROLE[,ROLE...]",
			Short: fmt.Sprintf("%s roles (control, compute, storage) %s a member", map[bool]string{true: "Add", false: "Remove"}[add], map[bool]string{true: "to", false: "from"}[add]),
			Args:  exactArgs(2, "cloudctl role "+verb+" NODE ROLE"),
			RunE: func(cmd *cobra.Command, args []string) error {
				// Role groups come from the cluster's manifest, so groups an
				// administrator added in the bootstrap overlay work here.
				m, _, err := a.effectiveManifest(cmd.Context(), "")
				if err != nil {
					return err
				}
				rs, err := roles.Parse(args[1], m.RoleGroups())
				if err != nil {
					return err
				}
				c, err := a.connect()
				if err != nil {
					return err
				}
				ch := api.RolesChange{}
				for _, r := range rs {
					if add {
						ch.Add = append(ch.Add, string(r))
					} else {
						ch.Remove = append(ch.Remove, string(r))
					}
				}
				ctx := cmd.Context()
				if !add {
					// The roles' guards may move data before a role goes.
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, roleRemoveWait)
					defer cancel()
				}
				n, err := c.ChangeRoles(ctx, args[0], ch)
				if err != nil {
					return err
				}
				return render.Write(a.out, a.format, n, func(w io.Writer) error {
					fmt.Fprintf(w, "%s now has roles: %s\n", n.Name, joinOrDash(n.Roles))
					return nil
				})
			},
		}
	}
	cmd.AddCommand(change(true), change(false))
	return cmd
}

// roleRemoveWait bounds `role remove`: cloudd gives the roles' guards 12
// minutes (a storage node's OSDs drain first, at most 10).
const roleRemoveWait = 13 * time.Minute
