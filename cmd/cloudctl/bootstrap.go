package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/AlecAivazis/survey/v2/terminal"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/bootstrap"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/render"
	"github.com/cloudctl/cloudctl/roles"
)

// nodeFlags are the per-node choices shared by bootstrap and join, and the
// ways of making a plan: flags (the default), --guided, --preseed,
// --accept-defaults; --dry-run prints the plan as a preseed instead.
type nodeFlags struct {
	roles    string
	name     string
	address  string
	region   string
	zone     string
	disks    string
	wipe     bool
	guided   bool
	defaults bool
	preseed  string
	dryRun   bool
	snapshot string
	manifest string
	// daemonOverlay is cloudd's own --manifest text, when the plan was made with it.
	daemonOverlay string
}

func (f *nodeFlags) register(cmd *cobra.Command, defaultRoles string) {
	fs := cmd.Flags()
	fs.StringVar(&f.roles, "role", defaultRoles, "roles for this node, comma-separated: control, compute, storage, or a role group of the manifest (converged, ...)")
	fs.StringVar(&f.name, "name", "", "this node's name in the cluster (default: the hostname); with --preseed, the entry to use")
	fs.StringVar(&f.address, "address", "", fmt.Sprintf("address for cluster traffic, IP or IP:port (default: the address on the default route, port %d)", api.DefaultPort))
	fs.StringVar(&f.region, "region", "", "region label for this node")
	fs.StringVar(&f.zone, "zone", "", "availability-zone label for this node")
	fs.StringVar(&f.disks, "disk", "", "OSD disks, comma-separated /dev paths, or none (default: every eligible disk)")
	fs.BoolVar(&f.wipe, "wipe", false, "consent to erasing the signature of a --disk that carries one")
	fs.BoolVar(&f.guided, "guided", false, "ask the questions on this terminal, show the plan, and apply it after a final confirmation")
	fs.BoolVar(&f.defaults, "accept-defaults", false, "ask nothing: take the defaults for everything not given as a flag")
	fs.StringVar(&f.preseed, "preseed", "", "take the choices from a preseed file (- for stdin); see `cloudctl preseed example`")
	fs.BoolVar(&f.dryRun, "dry-run", false, "print the plan as preseed YAML and change nothing (no daemon needed)")
	fs.StringVar(&f.snapshot, "snapshot", "", "with --dry-run: read the hardware facts from a ghw snapshot instead of this machine")
	fs.StringVar(&f.manifest, "manifest", "", "manifest file overlaid on the built-in default (thresholds, role groups); see docs/manifest.md")
}

// planRun describes the run a plan is made for.
type planRun struct {
	join     bool
	token    *api.JoinToken
	cluster  string // --cluster-name (bootstrap)
	topology string // --mysql-topology (bootstrap)
	// defaultAddress is the address used when none is chosen (join: the one
	// that reaches the cluster).
	defaultAddress string
}

// checkModes refuses flags that do not go together.
func (f *nodeFlags) checkModes(cmd *cobra.Command) error {
	n := 0
	for _, on := range []bool{f.guided, f.defaults, f.preseed != ""} {
		if on {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("--guided, --preseed and --accept-defaults are different ways of choosing: use one of them")
	}
	if f.preseed != "" {
		for _, fl := range []string{"role", "address", "region", "zone", "disk", "wipe", "cluster-name", "mysql-topology"} {
			if cmd.Flags().Changed(fl) {
				return fmt.Errorf("--%s cannot be combined with --preseed: set it in the preseed file (only --name, which picks the entry, can be given)", fl)
			}
		}
	}
	if f.snapshot != "" && !f.dryRun {
		return fmt.Errorf("--snapshot describes another machine, so it only goes with --dry-run: add --dry-run, or leave --snapshot out to use this machine")
	}
	if f.wipe && f.disks == "" {
		return fmt.Errorf("--wipe needs --disk: name the disks whose signature may be erased")
	}
	return nil
}

// makePlan probes the machine and makes the plan from the flags, the
// wizard or a preseed. Nothing is changed.
func (f *nodeFlags) makePlan(cmd *cobra.Command, a *app, run planRun) (bootstrap.Plan, bootstrap.Facts, bootstrap.Problems, error) {
	ctx := cmd.Context()
	var zero bootstrap.Plan
	if err := f.checkModes(cmd); err != nil {
		return zero, bootstrap.Facts{}, nil, err
	}
	m, err := manifests.Effective(f.manifest)
	if err != nil {
		return zero, bootstrap.Facts{}, nil, manifestProblems(a, f.manifest, err)
	}
	// A bootstrap's plan is made with the manifest the cluster will keep:
	// cloudd's own --manifest when it was started with one. cloudd is asked
	// while the hardware is probed with m; only a manifest of cloudd's that
	// replaces m (rare) has the machine probed again, with it.
	type daemonManifest struct {
		m   *manifests.Manifest
		err error
	}
	var fromDaemon chan daemonManifest
	if !run.join {
		fromDaemon = make(chan daemonManifest, 1)
		go func() {
			dm, err := f.withDaemonManifest(ctx, a, m)
			fromDaemon <- daemonManifest{dm, err}
		}()
	}
	what := "this machine"
	if f.snapshot != "" {
		what = "snapshot " + filepath.Base(f.snapshot)
	}
	step(a, "Probing the hardware of %s", what)
	facts, err := bootstrap.LiveFacts{Snapshot: f.snapshot, Manifest: m}.Facts(ctx)
	if fromDaemon != nil {
		dm := <-fromDaemon
		if dm.err != nil {
			return zero, bootstrap.Facts{}, nil, dm.err
		}
		if dm.m != m {
			m = dm.m
			facts, err = bootstrap.LiveFacts{Snapshot: f.snapshot, Manifest: m}.Facts(ctx)
		}
	}
	if err != nil {
		return zero, bootstrap.Facts{}, nil, err
	}
	groups := m.RoleGroups()
	sel := bootstrap.Selection{Join: run.join, Name: f.name, DefaultAddress: run.defaultAddress}
	if run.token != nil {
		sel.TokenName, sel.TokenCluster = run.token.Name, run.token.Cluster
	}

	switch {
	case f.guided:
		asker, err := terminalAsker(a)
		if err != nil {
			return zero, facts, nil, err
		}
		o := bootstrap.GuideOptions{Join: run.join, Name: f.name, Region: f.region, Zone: f.zone, Cluster: run.cluster,
			TokenName: sel.TokenName, TokenCluster: sel.TokenCluster, DryRun: f.dryRun}
		o.Address = hostOf(f.address)
		if o.Address == "" {
			o.Address = hostOf(run.defaultAddress)
		}
		if cmd.Flags().Changed("role") {
			if o.Roles, err = roles.Parse(f.roles, groups); err != nil {
				return zero, facts, nil, err
			}
		}
		p, warnings, err := bootstrap.Guide(ctx, asker, facts, o)
		return p, facts, warnings, err

	case f.preseed != "":
		name, data, err := readPreseed(a, f.preseed)
		if err != nil {
			return zero, facts, nil, err
		}
		ps, err := bootstrap.ParsePreseed(name, data, groups)
		if err != nil {
			return zero, facts, nil, err
		}
		p, warnings, err := ps.Plan(facts, sel)
		return p, facts, warnings, err
	}

	// Flags, with the defaults for what is not given (--accept-defaults).
	if f.roles == "" {
		return zero, facts, nil, fmt.Errorf("choose this node's roles: --role ROLES (control, compute, storage), --guided, or --preseed FILE")
	}
	rs, err := roles.Parse(f.roles, groups)
	if err != nil {
		return zero, facts, nil, err
	}
	c := bootstrap.FlagChoices{Name: f.name, Address: f.address, Roles: rs, Region: f.region, Zone: f.zone, Cluster: run.cluster, Wipe: f.wipe}
	if run.topology != "" {
		if err := c.Topology.UnmarshalText([]byte(run.topology)); err != nil {
			return zero, facts, nil, fmt.Errorf("--mysql-topology: %w", err)
		}
	}
	if c.Name == "" && run.token != nil {
		c.Name = run.token.Name
	}
	if c.Name == "" {
		c.Name = facts.Hostname
	}
	if f.disks != "" {
		c.Disks = []string{}
		if f.disks != "none" {
			for _, d := range strings.Split(f.disks, ",") {
				if d = strings.TrimSpace(d); d != "" {
					c.Disks = append(c.Disks, d)
				}
			}
		}
	}
	sel.Name = c.Name
	p, warnings, err := c.Preseed().Plan(facts, sel)
	return p, facts, warnings, err
}

// terminalAsker asks on the terminal: questions on stderr, answers from
// stdin, so that stdout carries only the result (a dry run's preseed).
func terminalAsker(a *app) (bootstrap.Asker, error) {
	in, okIn := a.in.(terminal.FileReader)
	out, okOut := a.errOut.(terminal.FileWriter)
	if !okIn || !okOut || !term.IsTerminal(int(in.Fd())) || !term.IsTerminal(int(out.Fd())) {
		return nil, fmt.Errorf("--guided needs a terminal on stdin and stderr: run it interactively, or use --preseed FILE or --accept-defaults to run unattended")
	}
	return bootstrap.SurveyAsker{In: bootstrap.TypeAhead(in), Out: out}, nil
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func readPreseed(a *app, file string) (string, []byte, error) {
	if file == "-" {
		data, err := io.ReadAll(a.in)
		if err != nil {
			return "", nil, fmt.Errorf("read the preseed from stdin: %w", err)
		}
		return "stdin", data, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", nil, fmt.Errorf("read the preseed: %w", err)
	}
	return file, data, nil
}

// showWarnings prints the plan's warnings on stderr (the wizard already
// showed them with the plan).
func (f *nodeFlags) showWarnings(a *app, ws bootstrap.Problems) {
	if f.guided {
		return
	}
	for _, w := range ws {
		fmt.Fprintf(a.errOut, "Warning: %s\n", w.Message)
	}
}

// writePlanPreseed prints (dry run) or saves the preseed that reproduces the plan.
func writePlanPreseed(w io.Writer, p bootstrap.Plan, facts bootstrap.Facts, join bool, ws bootstrap.Problems, header ...string) error {
	ps := bootstrap.PlanPreseed(p, facts, join, ws)
	ps.SetHeader(header...)
	data, err := ps.Marshal()
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

// savePreseed writes the preseed of an applied plan to <state-dir>/preseed.yaml (0600).
func savePreseed(a *app, p bootstrap.Plan, facts bootstrap.Facts, join bool, ws bootstrap.Problems, replay string) (string, error) {
	path := filepath.Join(a.stateDir(), "preseed.yaml")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return "", fmt.Errorf("save the preseed: %w", err)
	}
	werr := writePlanPreseed(f, p, facts, join, ws,
		fmt.Sprintf("cloudctl preseed of node %s, saved after `cloudctl %s` on %s.", p.Name, map[bool]string{true: "cluster join", false: "bootstrap"}[join], time.Now().UTC().Format(time.RFC3339)),
		"Replay it unattended: "+replay)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(path, 0o600)
	}
	if werr != nil {
		return "", fmt.Errorf("save the preseed to %s: %w", path, werr)
	}
	return path, nil
}

func newBootstrapCmd(a *app) *cobra.Command {
	var f nodeFlags
	var clusterName, topology string
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Make this machine the first node of a new cloud",
		Long: `Make this machine the first node of a new cloud.

The choices come from flags (unset ones take their defaults, as with
--accept-defaults), from the wizard (--guided), or from a preseed file
(--preseed FILE, see 'cloudctl preseed example'). Every way makes the same
plan, checked against this machine's hardware before anything changes;
--dry-run prints it as a preseed and changes nothing. After a bootstrap the
equivalent preseed is saved in the state directory, so the same install can
be replayed unattended.

Add more machines afterwards with 'cloudctl cluster add NAME' here and
'cloudctl cluster join TOKEN' there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			p, facts, warnings, err := f.makePlan(cmd, a, planRun{cluster: clusterName, topology: topology})
			if err != nil {
				return err
			}
			if f.daemonOverlay != "" {
				p.Manifest = f.daemonOverlay
			}
			if f.manifest != "" {
				// cloudd applies the overlay and keeps the effective manifest.
				data, err := os.ReadFile(f.manifest)
				if err != nil {
					return fmt.Errorf("read the manifest: %w", err)
				}
				p.Manifest = string(data)
			}
			f.showWarnings(a, warnings)
			if f.dryRun {
				return writePlanPreseed(a.out, p, facts, false, warnings,
					fmt.Sprintf("cloudctl preseed: the plan of a dry run of `cloudctl bootstrap` for node %s on %s.", p.Name, facts.Source),
					"Replay it unattended: sudo cloudctl bootstrap --preseed FILE")
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			if err := preflightBootstrap(cmd.Context(), c, p); err != nil {
				return err
			}
			step(a, "Bootstrapping %s at %s with roles %s", p.Name, p.Address, roles.Join(p.Roles))
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			res, err := bootstrap.Apply(ctx, c, p, time.Now)
			if err != nil {
				return err
			}
			res.Warnings = warnings.Messages()
			saved, serr := savePreseed(a, p, facts, false, warnings, "sudo cloudctl bootstrap --preseed FILE")
			if serr != nil {
				fmt.Fprintf(a.errOut, "Warning: %v\n", serr)
			}
			res.Preseed = saved
			return render.Write(a.out, a.format, res, func(w io.Writer) error {
				fmt.Fprintf(w, "Bootstrapped %s (%s) with roles %s in %s.\n", res.Name, res.Address, joinOrDash(res.Roles), res.Took.Round(time.Millisecond))
				if p.MySQLTopology != "" {
					fmt.Fprintf(w, "MySQL topology: %s (%s).\n", p.MySQLTopology, p.MySQLTopologyReason)
				}
				if saved != "" {
					fmt.Fprintf(w, "Saved the preseed of this install to %s (replay: cloudctl bootstrap --preseed %s).\n", saved, saved)
				}
				fmt.Fprintf(w, "Next: add a machine with `cloudctl cluster add NAME`, then run the printed join command on it.\n")
				return nil
			})
		},
	}
	f.register(cmd, "control,compute,storage")
	cmd.Flags().StringVar(&clusterName, "cluster-name", bootstrap.DefaultClusterName, "name of the new cluster")
	cmd.Flags().StringVar(&topology, "mysql-topology", "auto", "MySQL topology: auto (from this machine's installed RAM and the manifest's threshold), single or multi; fixed at bootstrap")
	return cmd
}

// step prints one progress line on stderr (stdout stays for the result).
func step(a *app, format string, args ...any) {
	if a.format != "table" {
		return
	}
	fmt.Fprintf(a.errOut, "==> "+format+"\n", args...)
}

// withDaemonManifest returns the manifest to plan a bootstrap with: when the
// local cloudd was started with --manifest, its overlay (which must then
// agree with this command's --manifest, if any), else m.
func (f *nodeFlags) withDaemonManifest(ctx context.Context, a *app, m *manifests.Manifest) (*manifests.Manifest, error) {
	c, err := a.connect()
	if err != nil {
		return m, nil // no daemon (a dry run): plan with what is here
	}
	dm, err := c.DaemonManifest(ctx)
	if err != nil || dm.Overlay == "" {
		return m, nil
	}
	o, err := manifests.Parse("cloudd's --manifest", []byte(dm.Overlay))
	if err != nil {
		return nil, err
	}
	base, err := manifests.Default()
	if err != nil {
		return nil, err
	}
	theirs, err := manifests.Overlay(base, o)
	if err != nil {
		return nil, err
	}
	if f.manifest != "" {
		a1, err1 := m.Marshal()
		a2, err2 := theirs.Marshal()
		if err1 != nil || err2 != nil || string(a1) != string(a2) {
			return nil, fmt.Errorf("--manifest %s differs from the manifest cloudd was started with: give the same file to both, or drop one of them", f.manifest)
		}
		return m, nil
	}
	f.daemonOverlay = dm.Overlay
	return theirs, nil
}
