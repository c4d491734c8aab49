package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/bootstrap"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/preflight"
	"github.com/cloudctl/cloudctl/render"
	"github.com/cloudctl/cloudctl/roles"
)

// preflightTimeout bounds the checks before a join or a bootstrap.
const preflightTimeout = 2 * time.Minute

// newClusterCheckCmd is `cloudctl cluster check`: every member checks every
// other (reach, role ports, path MTU, clock offset, versions).
func newClusterCheckCmd(a *app) *cobra.Command {
	var problems bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Check the network, ports, MTU, clocks and versions between every pair of members",
		Long: `Check the network, ports, MTU, clocks and versions between every pair of members.

Every member checks every other: cloudd's cluster port with a large exchange
(a path that drops large packets is reported with the largest size that
passes), the ports of the roles they share, the clock offset (a warning above
0.05 s, a failure above 5 s) and the cloudctl versions. The same checks run
before 'cloudctl cluster join' changes anything. Exit status 1 when a check
failed. See docs/preflight.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), preflightTimeout)
			defer cancel()
			rep, err := query(a, ctx, (*client.Client).CheckCluster)
			if err != nil {
				return err
			}
			shown := rep.Findings
			if problems {
				shown = append(rep.Findings.Of(preflight.Fail), rep.Findings.Of(preflight.Warn)...)
			}
			err = render.Write(a.out, a.format, rep, func(w io.Writer) error {
				t := render.NewTable(w, "RESULT", "FROM", "TO", "CHECK", "PORT", "FIGURE", "MESSAGE")
				for _, f := range shown {
					port := "-"
					if f.Port != 0 {
						port = strconv.Itoa(f.Port) + "/" + f.Proto
					}
					t.Row(string(f.Severity), dash(f.From), dash(f.To), f.Check, port, dash(f.Figure), f.Text())
				}
				if err := t.Flush(); err != nil {
					return err
				}
				fails, warns := len(rep.Findings.Of(preflight.Fail)), len(rep.Findings.Of(preflight.Warn))
				if fails == 0 && warns == 0 {
					fmt.Fprintf(w, "All %d checks between %d members passed.\n", len(rep.Findings), len(rep.Members))
				} else {
					fmt.Fprintf(w, "%d failed, %d warnings, of %d checks between %d members.\n", fails, warns, len(rep.Findings), len(rep.Members))
				}
				return nil
			})
			if err != nil {
				return err
			}
			if n := len(rep.Findings.Of(preflight.Fail)); n > 0 {
				return exitError{code: 1, err: fmt.Errorf("%d check(s) failed: fix what the MESSAGE column says and run `cloudctl cluster check` again", n)}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&problems, "problems", false, "show only failures and warnings")
	return cmd
}

// preflightJoin runs the checks between this machine and the cluster before
// a join: a failure refuses the join with nothing changed; warnings are
// printed and returned, to be recorded in the saved preseed. A node that is
// already a member is left to ApplyJoin, which says so.
func preflightJoin(ctx context.Context, a *app, c *client.Client, p bootstrap.Plan, jn client.Joiner) (bootstrap.Problems, error) {
	if info, err := c.Info(ctx); err != nil || info.Initialized {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	step(a, "Checking the network, ports and clocks between %s and the cluster", p.Name)
	fs, err := client.PreflightJoin(ctx, jn, preflight.NodeSpec{Name: p.Name, Address: p.Address, Roles: roleStrs(p.Roles)}, time.Now)
	if err != nil {
		return nil, err
	}
	if err := fs.Err(fmt.Sprintf("the preflight checks refused the join of %s; nothing was changed on either side (the token is still pending):", p.Name)); err != nil {
		return nil, err
	}
	var ws bootstrap.Problems
	for _, f := range fs.Of(preflight.Warn) {
		fmt.Fprintf(a.errOut, "Warning: %s\n", f.Text())
		ws = append(ws, bootstrap.Problem{Field: "preflight", Message: "preflight: " + f.Text(), Warning: true})
	}
	return ws, nil
}

// preflightBootstrap checks what a bootstrap can check alone: the address
// is this machine's and the ports the roles need are free.
func preflightBootstrap(ctx context.Context, c *client.Client, p bootstrap.Plan) error {
	if info, err := c.Info(ctx); err != nil || info.Initialized {
		return nil
	}
	fs, err := c.PreflightBootstrap(ctx, preflight.PortsRequest{Node: preflight.NodeSpec{Name: p.Name, Address: p.Address, Roles: roleStrs(p.Roles)},
		MySQLTopology: p.MySQLTopology, FloatingAddress: p.FloatingAddress, Manifest: p.Manifest})
	if err != nil {
		return err
	}
	return fs.Err(fmt.Sprintf("the preflight checks refused the bootstrap of %s; nothing was changed:", p.Name))
}

func roleStrs(rs []roles.Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}
