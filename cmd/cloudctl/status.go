package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/render"
)

func newVersionCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show the cloudctl version (and the local daemon's, when it runs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := struct {
				Client string `json:"client"`
				Daemon string `json:"daemon,omitempty"`
			}{Client: api.Version}
			if c, err := a.connect(); err == nil {
				if st, err := c.Status(cmd.Context()); err == nil {
					v.Daemon = st.Version
				}
			}
			return render.Write(a.out, a.format, v, func(w io.Writer) error {
				fmt.Fprintf(w, "cloudctl %s\n", v.Client)
				if v.Daemon != "" {
					fmt.Fprintf(w, "cloudd   %s\n", v.Daemon)
				}
				return nil
			})
		},
	}
}

func newStatusCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show members, their roles, and whether each layer is highly available",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := query(a, cmd.Context(), (*client.Client).Status)
			if err != nil {
				return err
			}
			return render.Write(a.out, a.format, st, func(w io.Writer) error { return statusTable(w, st) })
		},
	}
}

func statusTable(w io.Writer, st api.Status) error {
	fmt.Fprintf(w, "Cluster %q, %d member(s), seen from %s\n\n", st.Cluster, len(st.Members), st.Local)
	if err := membersTable(w, st.Members); err != nil {
		return err
	}
	if err := layersTable(w, st.Layers); err != nil {
		return err
	}
	if err := databasesTable(w, controlInstances(st)); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s\n", st.HA.Summary)
	fmt.Fprintf(w, "Cluster database: %d of %d members are dqlite voters\n", st.HA.Voters, len(st.Members))
	for _, warn := range st.Warnings {
		fmt.Fprintf(w, "Warning: %s\n", warn)
	}
	return nil
}

func membersTable(w io.Writer, ms []api.Node) error {
	t := render.NewTable(w, "NAME", "ADDRESS", "ROLES", "STATUS", "CLUSTER DB", "REGION/ZONE")
	for _, n := range ms {
		loc := "-"
		if n.Region != "" || n.Zone != "" {
			loc = n.Region + "/" + n.Zone
		}
		t.Row(n.Name, n.Address, joinOrDash(n.Roles), n.Status, dbRole(n), loc)
	}
	return t.Flush()
}

// layersTable shows one line per layer: its HA verdict, health and members.
func layersTable(w io.Writer, ls []api.Layer) error {
	if len(ls) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	t := render.NewTable(w, "LAYER", "HA", "HEALTH", "MEMBERS", "WHY")
	for _, l := range ls {
		var ms []string
		for _, m := range l.Members {
			ms = append(ms, m.Node+":"+m.State)
		}
		ha, health := l.HA, l.Health
		if !l.Built {
			ha, health = "-", "not built"
		}
		why := l.Reason
		if why == "" {
			why = "-"
		}
		t.Row(l.Title, ha, health, joinOrDash(ms), why)
	}
	return t.Flush()
}

// controlInstances are the control layer's instances, from its details.
func controlInstances(st api.Status) []api.DBInstance {
	l := st.Layer(api.LayerControl)
	if l == nil || len(l.Details) == 0 {
		return nil
	}
	var ins []api.DBInstance
	if err := json.Unmarshal(l.Details, &ins); err != nil {
		return nil
	}
	return ins
}
