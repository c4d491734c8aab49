package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/render"
)

// recoverResult is what `cluster recover` prints with --format json.
type recoverResult struct {
	Recovery client.Recovery `json:"recovery"`
	Took     time.Duration   `json:"took"`
	HA       string          `json:"ha"`
	Layers   []api.Layer     `json:"layers"`
}

func newClusterRecoverCmd(a *app) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Rebuild the cluster from this node after a majority of the nodes is lost for good",
		Long: `Rebuild the cluster from this node after a majority of the nodes is lost for good.

Run it on the one survivor, only when the other nodes will never come back
(a partition heals by itself: do not use this then). cloudd refuses while a
majority of the cluster database voters answers. Otherwise it restarts
itself, makes this node the only cluster database voter, removes the lost
members, and each role rebuilds its layer from this node (the control
databases bootstrap a Galera cluster of one, Ceph's monitor forms a quorum
alone, LXD's database is rebuilt from this member's copy when it holds one).
Then join new nodes as usual.
docs/RELIABILITY.md describes every step.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			start := time.Now()
			rec, err := c.Recover(cmd.Context())
			if err != nil {
				return err
			}
			step(a, "Rebuilding the cluster from %s: %d of %d cluster database voters answer; dropping %s", rec.Survivor, len(rec.Reachable), rec.Voters, strings.Join(rec.Dropped, ", "))
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			rec, err = waitRecovery(ctx, c)
			if err != nil {
				return err
			}
			step(a, "The cluster database runs on %s alone; waiting for the roles to rebuild their layers", rec.Survivor)
			st, err := waitLayers(ctx, c)
			if err != nil {
				return err
			}
			res := recoverResult{Recovery: rec, Took: time.Since(start), HA: st.HA.Summary, Layers: st.Layers}
			return render.Write(a.out, a.format, res, func(w io.Writer) error {
				fmt.Fprintf(w, "Recovered in %s: %s is a cluster of one; dropped %s.\n", res.Took.Round(time.Second), rec.Survivor, strings.Join(rec.Dropped, ", "))
				for _, l := range st.Layers {
					if !l.Built {
						continue
					}
					fmt.Fprintf(w, "  %s: %s\n", l.Title, l.Health)
				}
				fmt.Fprintf(w, "%s\nAdd nodes with `cloudctl cluster add NAME` and `cloudctl cluster join TOKEN` on them.\n", st.HA.Summary)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long to wait for every layer to come back")
	return cmd
}

// waitRecovery follows the recovery while cloudd restarts; its socket goes
// away for a moment.
func waitRecovery(ctx context.Context, c *client.Client) (client.Recovery, error) {
	var last client.Recovery
	var lastErr error
	for {
		r, err := c.RecoveryState(ctx)
		if err == nil {
			last, lastErr = r, nil
			switch r.State {
			case client.RecoveryDone:
				return r, nil
			case client.RecoveryFailed:
				return r, fmt.Errorf("the recovery failed: %s", r.Error)
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("the recovery did not finish in time (last state %q, cloudd says: %v): `cloudctl cluster recover` shows it again once cloudd answers", last.State, lastErr)
			}
			return last, fmt.Errorf("the recovery did not finish in time (state %q): look at cloudd's log", last.State)
		case <-time.After(time.Second):
		}
	}
}

// waitLayers waits until every layer that runs reports no error.
func waitLayers(ctx context.Context, c *client.Client) (api.Status, error) {
	var last api.Status
	var lastErr error
	for {
		st, err := c.Status(ctx)
		if err == nil {
			last, lastErr = st, nil
			bad := ""
			for _, l := range st.Layers {
				if l.Built && l.Health == api.HealthError {
					bad = l.Title + ": " + l.Reason
					break
				}
			}
			if bad == "" {
				return st, nil
			}
			lastErr = errors.New(bad)
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("the cluster database is back on this node, but a layer did not come back in time (%v): `cloudctl status` shows it", lastErr)
		case <-time.After(2 * time.Second):
		}
	}
}
