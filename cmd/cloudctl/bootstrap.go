package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/bootstrap"
	"github.com/cloudctl/cloudctl/render"
	"github.com/cloudctl/cloudctl/roles"
)

// nodeFlags are the per-node choices shared by bootstrap and join.
type nodeFlags struct {
	roles   string
	name    string
	address string
	region  string
	zone    string
}

func (f *nodeFlags) register(cmd *cobra.Command, defaultRoles string) {
	cmd.Flags().StringVar(&f.roles, "role", defaultRoles, "roles for this node, comma-separated: control, compute, storage")
	cmd.Flags().StringVar(&f.name, "name", "", "this node's name in the cluster (default: the hostname)")
	cmd.Flags().StringVar(&f.address, "address", "", fmt.Sprintf("address for cluster traffic, IP or IP:port (default: the address on the default route, port %d)", api.DefaultPort))
	cmd.Flags().StringVar(&f.region, "region", "", "region label for this node")
	cmd.Flags().StringVar(&f.zone, "zone", "", "availability-zone label for this node")
}

// plan builds the Plan from flags; defaultAddr supplies the address when none is given.
func (f *nodeFlags) plan(a *app, defaultAddr func() (string, error)) (bootstrap.Plan, error) {
	rs, err := roles.Parse(f.roles, a.roleGroups())
	if err != nil {
		return bootstrap.Plan{}, err
	}
	name := f.name
	if name == "" {
		name = bootstrap.DefaultName()
	}
	addr := f.address
	if addr == "" {
		if addr, err = defaultAddr(); err != nil {
			return bootstrap.Plan{}, err
		}
	}
	return bootstrap.Plan{Name: name, Address: bootstrap.WithPort(addr), Roles: rs, Region: f.region, Zone: f.zone}, nil
}

func newBootstrapCmd(a *app) *cobra.Command {
	var f nodeFlags
	var clusterName string
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Make this machine the first node of a new cloud",
		Long: `Make this machine the first node of a new cloud.

The node records its roles, name and address in the new cluster database.
Add more machines afterwards with 'cloudctl cluster add NAME' here and
'cloudctl cluster join TOKEN' there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := f.plan(a, bootstrap.DefaultAddress)
			if err != nil {
				return err
			}
			p.Cluster = clusterName
			if err := p.Validate(); err != nil {
				return err
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			step(a, "Bootstrapping %s at %s with roles %s", p.Name, p.Address, roles.Join(p.Roles))
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			res, err := bootstrap.Apply(ctx, c, p, time.Now)
			if err != nil {
				return err
			}
			return render.Write(a.out, a.format, res, func(w io.Writer) error {
				fmt.Fprintf(w, "Bootstrapped %s (%s) with roles %s in %s.\n", res.Name, res.Address, joinOrDash(res.Roles), res.Took.Round(time.Millisecond))
				fmt.Fprintf(w, "Next: add a machine with `cloudctl cluster add NAME`, then run the printed join command on it.\n")
				return nil
			})
		},
	}
	f.register(cmd, "control,compute,storage")
	cmd.Flags().StringVar(&clusterName, "cluster-name", bootstrap.DefaultClusterName, "name of the new cluster")
	return cmd
}

// step prints one progress line on stderr (stdout stays for the result).
func step(a *app, format string, args ...any) {
	if a.format != "table" {
		return
	}
	fmt.Fprintf(a.errOut, "==> "+format+"\n", args...)
}
