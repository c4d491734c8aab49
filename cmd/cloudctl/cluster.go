package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/bootstrap"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/render"
	"github.com/cloudctl/cloudctl/roles"
)

func newClusterCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Add, join, list and remove cluster members; manage join tokens",
	}
	cmd.AddCommand(newClusterAddCmd(a), newClusterJoinCmd(a), newClusterListCmd(a), newClusterRemoveCmd(a), newTokensCmd(a), newClusterPlanCmd(a), newClusterSetCmd(a), newClusterRecoverCmd(a))
	cmd.AddCommand(newClusterCheckCmd(a))
	return cmd
}

func newClusterAddCmd(a *app) *cobra.Command {
	var ttl time.Duration
	var quiet bool
	cmd := &cobra.Command{
		Use:   "add NAME",
		Short: "Print a single-use join token for the machine that will be called NAME",
		Args:  exactArgs(1, "cloudctl cluster add NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			t, err := c.IssueToken(cmd.Context(), args[0], ttl)
			if err != nil {
				return err
			}
			if quiet {
				fmt.Fprintln(a.out, t.Token)
				return nil
			}
			return render.Write(a.out, a.format, t, func(w io.Writer) error {
				fmt.Fprintf(w, "Join token for %s (single use, expires %s, %s):\n\n%s\n\n", t.Name, t.ExpiresAt.UTC().Format(time.RFC3339), ago(t.ExpiresAt, time.Now()), t.Token)
				fmt.Fprintf(w, "On %s, pass it on standard input (or in a file with --token-file FILE), not as an argument:\n  sudo cloudctl cluster join - --role compute   # or control, storage, or several; then paste the token\n", t.Name)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", api.DefaultTokenTTL, "how long the token stays valid")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the token")
	return cmd
}

func newClusterJoinCmd(a *app) *cobra.Command {
	var f nodeFlags
	var tokenFile string
	cmd := &cobra.Command{
		Use:   "join - | --token-file FILE",
		Short: "Join this machine to a cloud with a token from `cloudctl cluster add`",
		Long: `Join this machine to a cloud with a token from 'cloudctl cluster add'.

The node's choices come from flags (--role is then required), from the
wizard (--guided), or from a preseed file (--preseed FILE): the entry named by
--name, else the one with an address of this machine, else the one named like
the token. The token is read from standard input ("-") or from --token-file
FILE; a token given as the argument still works but is visible to other
users of the machine. The plan is checked against this machine's hardware and the token
against the cluster before anything changes; --dry-run prints the plan as a
preseed and changes nothing. After the join the equivalent preseed is saved in
the state directory.`,
		Args: maxArgs(1, "cloudctl cluster join - --role ROLES   (the token on standard input), or --token-file FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			text, err := joinTokenText(a, args, tokenFile)
			if err != nil {
				return err
			}
			jt, err := api.DecodeJoinToken(text)
			if err != nil {
				return fmt.Errorf("this is not a valid join token (%v): copy the whole token printed by `cloudctl cluster add`", strings.TrimPrefix(err.Error(), api.ErrTokenMalformed.Error()+": "))
			}
			run := planRun{join: true, token: &jt}
			if f.address == "" {
				// The address that reaches the cluster; the facts' default otherwise.
				run.defaultAddress, _ = client.LocalAddressFor(jt.Addresses[0])
			}
			p, facts, warnings, err := f.makePlan(cmd, a, run)
			if err != nil {
				return err
			}
			f.showWarnings(a, warnings)
			if f.dryRun {
				return writePlanPreseed(a.out, p, facts, true, warnings,
					fmt.Sprintf("cloudctl preseed: the plan of a dry run of `cloudctl cluster join` for node %s on %s.", p.Name, facts.Source),
					"Replay it unattended: sudo cloudctl cluster join --token-file TOKENFILE --preseed FILE")
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			// This node presents its cloudd's certificate to the cluster:
			// a join of it cut off before it reached the cluster resumes.
			jn, err := client.NewJoiner(jt, a.stateDir())
			if err != nil {
				return err
			}
			pw, err := preflightJoin(cmd.Context(), a, c, p, jn)
			if errors.Is(err, client.ErrTokenRejected) {
				// A join of this node cut off midway spent the token: the
				// cluster gives it back within a minute, and this run waits.
				back, werr := client.AwaitTokenBack(cmd.Context(), jn, p.Name, time.Now, func(at time.Time) {
					step(a, "A join of %s with this token stopped midway: the cluster gives the token back at %s; waiting", p.Name, at.Local().Format("15:04:05"))
				})
				if werr != nil {
					return werr
				}
				if back {
					pw, err = preflightJoin(cmd.Context(), a, c, p, jn)
				}
			}
			if err != nil {
				return err
			}
			warnings = append(warnings, pw...)
			step(a, "Joining cluster %q as %s (%s) with roles %s", jt.Cluster, p.Name, p.Address, roles.Join(p.Roles))
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			res, err := bootstrap.ApplyJoin(ctx, c, p, jn, time.Now)
			if errors.Is(err, client.ErrTokenRejected) {
				// Another join of this name redeemed the token between
				// the preflight and this redemption (two machines with
				// one token): wait for its outcome. Finished, the token is
				// used for good and that is the answer; cut off, the
				// cluster gives the token back and this run goes on.
				back, werr := client.AwaitJoinOutcome(cmd.Context(), jn, p.Name, time.Now, joinOutcomeWait, func() {
					step(a, "Another join of %s redeemed this token a moment ago: waiting up to %s for its outcome", p.Name, joinOutcomeWait)
				})
				switch {
				case werr != nil:
					return werr
				case back:
					res, err = bootstrap.ApplyJoin(ctx, c, p, jn, time.Now)
				}
			}
			if err != nil {
				return err
			}
			res.Warnings = warnings.Messages()
			saved, serr := savePreseed(a, p, facts, true, warnings, "sudo cloudctl cluster join --token-file TOKENFILE --preseed FILE")
			if serr != nil {
				fmt.Fprintf(a.errOut, "Warning: %v\n", serr)
			}
			res.Preseed = saved
			return render.Write(a.out, a.format, res, func(w io.Writer) error {
				fmt.Fprintf(w, "Joined as %s (%s) with roles %s in %s.\n", res.Name, res.Address, joinOrDash(res.Roles), res.Took.Round(time.Millisecond))
				if res.Resumed {
					fmt.Fprintf(w, "An earlier run of this join had redeemed the token and stopped before it reached the cluster: this run redeemed it again.\n")
				}
				if saved != "" {
					fmt.Fprintf(w, "Saved the preseed of this node to %s.\n", saved)
				}
				fmt.Fprintf(w, "`cloudctl status` shows the whole cluster.\n")
				return nil
			})
		},
	}
	f.register(cmd, "")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "read the join token from this file (keep it 0600)")
	return cmd
}

// joinOutcomeWait bounds the wait of a join that lost the redemption of
// its token to another join of the same name for that join's outcome.
const joinOutcomeWait = 30 * time.Second

// newClusterPlanCmd is `cloudctl cluster plan`: the plan recorded at bootstrap.
func newClusterPlanCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "plan",
		Short: "Show the cluster's plan: MySQL topology and the fact behind it, floating address",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := query(a, cmd.Context(), (*client.Client).Plan)
			if err != nil {
				return err
			}
			return render.Write(a.out, a.format, p, func(w io.Writer) error {
				t := render.NewTable(w, "SETTING", "VALUE", "BECAUSE")
				t.Row("cluster", p.Cluster, "")
				t.Row("bootstrap node", p.Bootstrap, "")
				t.Row("mysql topology", dash(p.MySQLTopology), p.MySQLTopologyReason)
				t.Row("floating address", dash(p.FloatingAddress), "")
				keys := make([]string, 0, len(p.Settings))
				for k := range p.Settings {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					t.Row(k, p.Settings[k], "")
				}
				return t.Flush()
			})
		},
	}
}

func newClusterListCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List cluster members with their addresses, roles and state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := query(a, cmd.Context(), (*client.Client).Status)
			if err != nil {
				return err
			}
			return render.Write(a.out, a.format, st.Members, func(w io.Writer) error { return membersTable(w, st.Members) })
		},
	}
}

func newClusterRemoveCmd(a *app) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a member from the cluster (--force when it is unreachable)",
		Long: `Remove a member from the cluster.

Each role is asked first. A member whose role can hand its work over gives
that role up before it goes (a compute node's instances move to the other
compute nodes): the command waits, at most 15 minutes, printing why, and
run again it picks up where it stopped. A removal that would lose data or
break a layer is refused with the reason and changes nothing.

--force removes the member at once, without asking its roles: what only it
held is lost. Use it for a member that is gone for good.`,
		Args: exactArgs(1, "cloudctl cluster remove NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			var target *api.Node
			for i := range st.Members {
				if st.Members[i].Name == args[0] {
					target = &st.Members[i]
				}
			}
			if target == nil {
				return fmt.Errorf("there is no member %q in this cluster: `cloudctl cluster list` shows the members", args[0])
			}
			if target.Status != "online" && !force {
				return fmt.Errorf("%s is offline, so it cannot be told to leave: run `cloudctl cluster remove %s --force` to drop it from the cluster anyway", args[0], args[0])
			}
			if len(st.Members) == 1 {
				return fmt.Errorf("%s is the last member: removing it would destroy the cluster; stop cloudd and delete its state directory instead", args[0])
			}
			step(a, "Removing %s", args[0])
			if err := removeNode(cmd.Context(), a, c, args[0], force); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "Removed %s from the cluster.\n", args[0])
			return nil
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "remove even if the member is unreachable")
	return cmd
}

// removeWait bounds how long `cluster remove` waits for a node to give up
// a role first (LXD evacuates for at most 10 minutes).
const removeWait = 15 * time.Minute

// removeNode asks cloudd to remove name until it is removed: a node that
// must first give up a role (its instances move to other compute nodes)
// is asked again every few seconds, the reason shown each time it changes.
// Interrupted, it says how to go on; nothing is half-done (the node has
// given up the role and is removed by the next `cluster remove`).
func removeNode(ctx context.Context, a *app, c *client.Client, name string, force bool) error {
	ctx, cancel := context.WithTimeout(ctx, removeWait)
	defer cancel()
	last, role := "", ""
	stopped := func(err error) error {
		return fmt.Errorf("%s has given up its %s role but is not removed yet (%v): run `cloudctl cluster remove %s` again to finish, or `cloudctl role add %s %s` to keep it", name, role, err, name, name, role)
	}
	for {
		r, err := c.Remove(ctx, name, force)
		if err != nil {
			if role != "" {
				if ctx.Err() != nil {
					err = errors.New("stopped waiting")
				}
				return stopped(err)
			}
			return err
		}
		if r.Removed || r.Waiting == "" {
			return nil
		}
		if r.Reason != last {
			last, role = r.Reason, r.Waiting
			step(a, "%s", r.Reason)
		}
		select {
		case <-ctx.Done():
			return stopped(errors.New("stopped waiting"))
		case <-time.After(2 * time.Second):
		}
	}
}

func newTokensCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "tokens", Short: "List and revoke join tokens"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List join tokens: pending ones, and recently used, revoked or expired ones",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ts, err := query(a, cmd.Context(), (*client.Client).Tokens)
			if err != nil {
				return err
			}
			now := time.Now()
			return render.Write(a.out, a.format, ts, func(w io.Writer) error {
				if len(ts) == 0 {
					fmt.Fprintln(w, "No join tokens. Create one with `cloudctl cluster add NAME`.")
					return nil
				}
				t := render.NewTable(w, "NAME", "STATE", "ISSUED", "EXPIRES")
				for _, tk := range ts {
					exp := "-"
					if tk.State == api.TokenPending {
						exp = ago(tk.ExpiresAt, now)
					}
					state := tk.State
					if tk.State == api.TokenUsed && tk.UsedBy != "" {
						state += " by " + tk.UsedBy
					}
					t.Row(tk.Name, state, tk.IssuedAt.UTC().Format(time.RFC3339), exp)
				}
				return t.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke the pending join token for NAME",
		Args:  exactArgs(1, "cloudctl cluster tokens revoke NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			if err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "Revoked the join token for %s.\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(list, revoke)
	return cmd
}

// exactArgs is cobra.ExactArgs with a usage sentence.
func exactArgs(n int, usage string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return fmt.Errorf("expected %d argument(s), got %d: usage: %s", n, len(args), usage)
		}
		return nil
	}
}
