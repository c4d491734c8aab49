package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/render"
)

func newDatabaseCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "database", Short: "Control-plane databases: list, credentials, check"}
	list := &cobra.Command{
		Use:   "list",
		Short: "Show each service's database: endpoint, user, topology and replication state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			dbs, err := query(a, cmd.Context(), (*client.Client).Databases)
			if err != nil {
				return err
			}
			return render.Write(a.out, a.format, dbs, func(w io.Writer) error {
				if dbs.Topology == "" {
					fmt.Fprintln(w, "No control databases: no node has the control role yet.")
					return nil
				}
				fmt.Fprintf(w, "MySQL topology: %s", dbs.Topology)
				if dbs.Reason != "" {
					fmt.Fprintf(w, " (%s)", dbs.Reason)
				}
				fmt.Fprintln(w)
				if dbs.EndpointNote != "" {
					fmt.Fprintf(w, "Endpoint: %s.\n", dbs.EndpointNote)
				}
				fmt.Fprintln(w)
				t := render.NewTable(w, "SERVICE", "DATABASE", "USER", "INSTANCE", "ENDPOINTS", "REPLICATION")
				state := map[string]string{}
				for _, in := range dbs.Instances {
					state[in.Name] = instanceState(in)
				}
				for _, s := range dbs.Services {
					eps := joinOrDash(s.Endpoints)
					if s.Floating != "" {
						// Clients use the floating endpoint; the members serve behind it.
						eps = s.Floating + " (floating; members " + eps + ")"
					}
					t.Row(s.Service, s.Database, s.User, s.Instance, eps, state[s.Instance])
				}
				return t.Flush()
			})
		},
	}
	var caFile string
	creds := &cobra.Command{
		Use:   "credentials SERVICE",
		Short: "Print a service's database DSN (root only, on a cluster member)",
		Long: `Print a service's database DSN (root only, on a cluster member).

The servers accept TLS connections only, with certificates from the cluster's
own CA. The DSN names the floating endpoint (the floating address and the
database's port on it) when the cluster has one and a control node holds it;
otherwise a member's own address, and a note on standard error says the
endpoint is not highly available. The DSN ends in ?tls=cloudctl: a go-sql-driver/mysql client registers
that name with mysql.RegisterTLSConfig("cloudctl", &tls.Config{RootCAs: pool})
where pool holds the CA (--ca-file FILE writes it; --format json carries it as
"ca"). Other clients: --ssl-ca=FILE --ssl-verify-server-cert.`,
		Args: exactArgs(1, "cloudctl database credentials SERVICE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			cr, err := c.Credentials(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if caFile != "" {
				if err := os.WriteFile(caFile, []byte(cr.CA), 0o644); err != nil {
					return fmt.Errorf("could not write the CA certificate to %s (%v): choose a writable path for --ca-file", caFile, err)
				}
			}
			return render.Write(a.out, a.format, cr, func(w io.Writer) error {
				fmt.Fprintln(w, cr.DSN)
				if cr.Note != "" {
					// Standard error: standard output stays the DSN alone.
					fmt.Fprintf(a.errOut, "Note: %s.\n", cr.Note)
				}
				return nil
			})
		},
	}
	creds.Flags().StringVar(&caFile, "ca-file", "", "also write the CA certificate the servers' certificates chain to (PEM) to this file")
	check := &cobra.Command{
		Use:   "check [SERVICE...]",
		Short: "Connect as each service (or the ones named) and write and read a row",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			results, err := c.CheckDatabases(cmd.Context(), args)
			if err != nil {
				return err
			}
			var failed []string
			for _, r := range results {
				if r.Error != "" {
					failed = append(failed, r.Service+" at "+r.Endpoint+": "+r.Error)
				}
			}
			if err := render.Write(a.out, a.format, results, func(w io.Writer) error {
				t := render.NewTable(w, "SERVICE", "ENDPOINT", "ROWS", "TOOK")
				for _, r := range results {
					if r.Error != "" {
						t.Row(r.Service, r.Endpoint, "-", "failed")
						continue
					}
					t.Row(r.Service, r.Endpoint, fmt.Sprint(r.Rows), time.Duration(r.TookNS).Round(time.Millisecond).String())
				}
				return t.Flush()
			}); err != nil {
				return err
			}
			if len(failed) > 0 {
				return fmt.Errorf("%d check(s) failed: %s", len(failed), strings.Join(failed, "; "))
			}
			return nil
		},
	}
	cmd.AddCommand(list, creds, check)
	return cmd
}

func instanceState(in api.DBInstance) string {
	s := in.Replication
	if in.Replication == "galera" {
		s = fmt.Sprintf("galera %d/%d", in.Size, in.Expected)
	}
	if !in.Primary {
		return s + ", DOWN"
	}
	if in.Degraded != "" && in.Replication == "galera" {
		return s + ", degraded"
	}
	return s
}

func databasesTable(w io.Writer, ins []api.DBInstance) error {
	if len(ins) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	t := render.NewTable(w, "INSTANCE", "PORT", "REPLICATION", "MEMBERS", "PRIMARY", "SIZE", "DEGRADED")
	for _, in := range ins {
		var ms []string
		for _, m := range in.Members {
			st := m.State
			if m.WsrepStatus != "" && m.State == "running" {
				st = m.WsrepStatus
			}
			ms = append(ms, m.Node+":"+st)
		}
		deg := in.Degraded
		if deg == "" {
			deg = "-"
		}
		t.Row(in.Name, fmt.Sprint(in.Port), in.Replication, joinOrDash(ms), fmt.Sprint(in.Primary), fmt.Sprintf("%d/%d", in.Size, in.Expected), deg)
	}
	return t.Flush()
}
