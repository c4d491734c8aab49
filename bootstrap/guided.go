package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/roles"
	controlplan "github.com/cloudctl/cloudctl/roles/control/plan"
	splan "github.com/cloudctl/cloudctl/roles/storage/plan"
)

// Asker asks a person questions. SurveyAsker asks on a terminal; tests
// script the answers. Every method returns ErrCancelled when the person
// gives up (Ctrl-C).
type Asker interface {
	// Say shows information that needs no answer.
	Say(text string) error
	// Input asks for a line of text.
	Input(q Question) (string, error)
	// Select asks for one of the options and returns its Value.
	Select(q Question, options []Option) (string, error)
	// MultiSelect asks for any number of the options, defaults selected
	// beforehand, and returns the chosen Values in the options' order.
	MultiSelect(q Question, options []Option, defaults []string, validate func([]string) error) ([]string, error)
	// Confirm asks a yes/no question.
	Confirm(q Question, def bool) (bool, error)
}

// Question is one prompt.
type Question struct {
	// ID names the question for scripts and tests: name, address, roles,
	// mysql_topology, disks, wipe:PATH, kvm, floating_address, region,
	// zone, apply.
	ID      string
	Message string
	Help    string
	// Default is the answer taken on Enter (Input, Select).
	Default string
	// Validate checks an Input answer; the person is asked again on error.
	Validate func(string) error
}

// Option is one choice of a Select or MultiSelect.
type Option struct {
	Value       string
	Description string
}

// ErrCancelled means the person stopped the wizard; nothing was changed.
var ErrCancelled = errors.New("cancelled: nothing was changed")

// GuideOptions are the wizard's starting points (from flags or a token).
type GuideOptions struct {
	// Join asks for a joining node: no site questions.
	Join bool
	// Name, Address, Roles, Region and Zone are the defaults offered
	// (flags); empty means the facts' defaults. Address is an IP.
	Name    string
	Address string
	Roles   []roles.Role
	Region  string
	Zone    string
	// Cluster names a new cluster.
	Cluster string
	// TokenName and TokenCluster come from the join token.
	TokenName    string
	TokenCluster string
	// DryRun only changes the wording of the final question.
	DryRun bool
}

// Guide asks the wizard's questions, in this order: (the probe summary and
// findings are shown first) node name, address for cluster traffic, roles,
// for control the MySQL topology, for storage the OSD disks and a wipe
// confirmation per disk that needs one, for compute a confirmation when VMs
// would run emulated, the floating address (bootstrap), region and zone;
// then it shows the whole plan and asks for a final confirmation.
//
// The answers are recorded as a preseed and resolved like a preseed file,
// so the same answers in a file give the same Plan. Nothing is changed: the
// caller applies the returned Plan.
func Guide(ctx context.Context, ask Asker, f Facts, o GuideOptions) (Plan, Problems, error) {
	g := guide{ctx: ctx, ask: ask, f: f, o: o}
	plan, warnings, err := g.run()
	if err != nil {
		return Plan{}, nil, err
	}
	return plan, warnings, nil
}

type guide struct {
	ctx context.Context
	ask Asker
	f   Facts
	o   GuideOptions
}

func (g *guide) check() error {
	if err := g.ctx.Err(); err != nil {
		return ErrCancelled
	}
	return nil
}

func (g *guide) run() (Plan, Problems, error) {
	if err := g.ask.Say(ProbeSummary(g.f)); err != nil {
		return Plan{}, nil, err
	}
	node := NodeSpec{}
	var err error
	steps := []func(*NodeSpec) error{g.name, g.address, g.roles}
	for _, s := range steps {
		if err = g.check(); err != nil {
			return Plan{}, nil, err
		}
		if err = s(&node); err != nil {
			return Plan{}, nil, err
		}
	}
	rs := parseRoleNames(node.Roles)
	site := ClusterSpec{Name: g.o.Cluster}
	if roles.Has(rs, roles.Control) && !g.o.Join {
		if site.MySQLTopology, err = g.topology(); err != nil {
			return Plan{}, nil, err
		}
	}
	if roles.Has(rs, roles.Storage) {
		if node.Disks, err = g.disks(); err != nil {
			return Plan{}, nil, err
		}
	}
	if roles.Has(rs, roles.Compute) {
		keep, err := g.kvm()
		if err != nil {
			return Plan{}, nil, err
		}
		if !keep {
			node.Roles = removeRole(node.Roles, roles.Compute)
			if len(node.Roles) == 0 {
				return Plan{}, nil, fmt.Errorf("no role is left for this node without compute: nothing was changed; run the wizard again and choose a role")
			}
		}
	}
	if !g.o.Join {
		if err = g.check(); err != nil {
			return Plan{}, nil, err
		}
		if site.FloatingAddress, err = g.floating(node.Address); err != nil {
			return Plan{}, nil, err
		}
	}
	for _, k := range []string{"region", "zone"} {
		if err = g.check(); err != nil {
			return Plan{}, nil, err
		}
		if err = g.label(&node, k); err != nil {
			return Plan{}, nil, err
		}
	}

	answers := &Preseed{Version: PreseedVersion, Cluster: site, Nodes: []NodeSpec{node}}
	plan, warnings, err := answers.Plan(g.f, Selection{Join: g.o.Join, Name: node.Name, TokenName: g.o.TokenName, TokenCluster: g.o.TokenCluster})
	if err != nil {
		return Plan{}, nil, err
	}
	if err := g.ask.Say(PlanSummary(plan, g.f, warnings, g.o.Join)); err != nil {
		return Plan{}, nil, err
	}
	msg := "Apply this plan?"
	if g.o.DryRun {
		msg = "Print this plan as a preseed? (dry run: nothing is applied)"
	}
	ok, err := g.ask.Confirm(Question{ID: "apply", Message: msg, Help: "Nothing has been changed so far. Answer no (or press Ctrl-C) to stop without changing anything."}, true)
	if err != nil {
		return Plan{}, nil, err
	}
	if !ok {
		return Plan{}, nil, ErrCancelled
	}
	return plan, warnings, nil
}

func (g *guide) name(n *NodeSpec) error {
	def := g.o.Name
	if def == "" && g.o.Join {
		def = g.o.TokenName
	}
	if def == "" {
		def = g.f.Hostname
	}
	v, err := g.ask.Input(Question{ID: "name", Message: "Node name", Default: def,
		Help: "This node's name in the cluster: 1-63 lowercase letters, digits or '-'.",
		Validate: func(s string) error {
			if err := validName(s); err != nil {
				return err
			}
			if g.o.Join && g.o.TokenName != "" && s != g.o.TokenName {
				return fmt.Errorf("the join token was issued for %q: use that name, or ask for a token for %q", g.o.TokenName, s)
			}
			return nil
		}})
	n.Name = v
	return err
}

func (g *guide) address(n *NodeSpec) error {
	if len(g.f.Addresses) == 0 {
		return fmt.Errorf("this machine has no network address other nodes could reach: configure one, then run the wizard again")
	}
	def := g.o.Address
	if def == "" {
		def = g.f.DefaultAddress
	}
	var opts []Option
	found := false
	for _, a := range g.f.Addresses {
		desc := a.Interface + ", " + a.Prefix.Masked().String()
		if a.IP() == g.f.DefaultAddress {
			desc += ", default route"
		}
		opts = append(opts, Option{Value: a.IP(), Description: desc})
		found = found || a.IP() == def
	}
	if !found {
		def = opts[0].Value
	}
	v, err := g.ask.Select(Question{ID: "address", Message: "Address for cluster traffic", Default: def,
		Help: "Other nodes reach this one at this address (port 7443)."}, opts)
	n.Address = v
	return err
}

var roleHelp = map[roles.Role]string{
	roles.Control: "MariaDB for the control-plane services; 3 control nodes make the cloud highly available",
	roles.Compute: "LXD: containers and virtual machines",
	roles.Storage: "Ceph: a monitor and manager, and one OSD per chosen disk",
}

func (g *guide) roles(n *NodeSpec) error {
	blocked := map[roles.Role]string{}
	for _, fd := range g.f.Hardware.Findings {
		if fd.Level == hwprobe.LevelError && fd.Check != "disks" {
			if _, seen := blocked[fd.Role]; !seen {
				blocked[fd.Role] = fd.Message
			}
		}
	}
	var opts []Option
	for _, r := range roles.All {
		desc := roleHelp[r]
		if why, bad := blocked[r]; bad {
			desc = "not possible here: " + why
		}
		opts = append(opts, Option{Value: string(r), Description: desc})
	}
	defs := roleStrings(g.o.Roles)
	if g.o.Roles == nil && !g.o.Join {
		defs = roleStrings(roles.All)
	}
	var keep []string
	for _, d := range defs {
		if _, bad := blocked[roles.Role(d)]; !bad {
			keep = append(keep, d)
		}
	}
	v, err := g.ask.MultiSelect(Question{ID: "roles", Message: "Roles for this node",
		Help: "Pick one or more. A node can take several roles."}, opts, keep, func(sel []string) error {
		if len(sel) == 0 {
			return fmt.Errorf("choose at least one role")
		}
		for _, s := range sel {
			if why, bad := blocked[roles.Role(s)]; bad {
				return fmt.Errorf("this machine cannot take the %s role: %s", s, why)
			}
		}
		return nil
	})
	n.Roles = v
	return err
}

// topologyFact is the short fact behind the default topology, for the prompt.
func topologyFact(f Facts) string {
	gib, th := f.Hardware.Memory.InstalledGiB, f.Policy.MySQLMultiMinGiB
	if f.Hardware.Decisions.MySQLTopology == controlplan.Multi {
		return fmt.Sprintf("%d GiB installed, at least %d GiB → one MySQL per service", gib, th)
	}
	return fmt.Sprintf("%d GiB installed, below %d GiB → one MySQL for all services", gib, th)
}

func (g *guide) topology() (Topology, error) {
	def := g.f.Hardware.Decisions.MySQLTopology
	if def == "" {
		def = controlplan.Single
	}
	v, err := g.ask.Select(Question{ID: "mysql_topology", Message: "MySQL topology (" + topologyFact(g.f) + ")", Default: def,
		Help: g.f.Hardware.Decisions.MySQLReason + ". It cannot change after bootstrap."},
		[]Option{{Value: controlplan.Single, Description: "one MariaDB instance for all services"},
			{Value: controlplan.Multi, Description: "one MariaDB instance per service"}})
	return Topology(v), err
}

// demoFileDisk is the file-backed OSD the wizard offers when no disk can
// hold one.
const demoFileDisk = "loop:8GiB"

func (g *guide) disks() ([]DiskSpec, error) {
	var b strings.Builder
	b.WriteString("Disks of this machine:\n")
	var opts []Option
	var defs []string
	wipeNeeded := map[string]hwprobe.Disk{}
	for _, d := range g.f.Hardware.Disks {
		switch {
		case d.Eligible:
			fmt.Fprintf(&b, "  %-14s %s: eligible for an OSD\n", d.Path, diskLabel(d))
			opts = append(opts, Option{Value: d.Path, Description: diskLabel(d)})
			defs = append(defs, d.Path)
		case d.WipeEligible:
			fmt.Fprintf(&b, "  %-14s %s: carries a %s signature, usable only after a wipe\n", d.Path, diskLabel(d), strings.Join(d.Signatures, ", "))
			opts = append(opts, Option{Value: d.Path, Description: diskLabel(d) + ", needs a wipe (" + strings.Join(d.Signatures, ", ") + ")"})
			wipeNeeded[d.Path] = d
		default:
			fmt.Fprintf(&b, "  %-14s %s: rejected: %s\n", d.Path, diskLabel(d), strings.Join(d.Reasons, "; "))
		}
	}
	if len(g.f.Hardware.Disks) == 0 {
		b.WriteString("  (none)\n")
	}
	if len(opts) == 0 {
		b.WriteString("No disk can hold an OSD.")
		if err := g.ask.Say(b.String()); err != nil {
			return nil, err
		}
		if err := g.check(); err != nil {
			return nil, err
		}
		file, err := g.ask.Confirm(Question{ID: "disks:file",
			Message: "Store data in a file-backed OSD instead (" + demoFileDisk + ", a sparse file in the state directory; for a demo or a test, " + splan.FileBackedNote + ")?",
			Help:    "Without an OSD the storage role runs a Ceph monitor and manager only. You can add disks later with `cloudctl storage disk add`."}, false)
		if err != nil {
			return nil, err
		}
		if file {
			return []DiskSpec{{Path: demoFileDisk}}, nil
		}
		return []DiskSpec{}, g.ask.Say("The storage role will run a Ceph monitor and manager only.")
	}
	if err := g.ask.Say(strings.TrimRight(b.String(), "\n")); err != nil {
		return nil, err
	}
	chosen, err := g.ask.MultiSelect(Question{ID: "disks", Message: "Disks to become OSDs",
		Help: "Eligible disks are selected. A disk that carries a signature is erased only after you confirm it."}, opts, defs, nil)
	if err != nil {
		return nil, err
	}
	out := []DiskSpec{}
	for _, p := range chosen {
		d, needs := wipeNeeded[p]
		if !needs {
			out = append(out, DiskSpec{Path: p})
			continue
		}
		if err := g.check(); err != nil {
			return nil, err
		}
		ok, err := g.ask.Confirm(Question{ID: "wipe:" + p,
			Message: fmt.Sprintf("Erase %s (%s)? Its %s signature and all data on it will be destroyed", p, diskLabel(d), strings.Join(d.Signatures, ", "))}, false)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, DiskSpec{Path: p, Wipe: true})
		} else if err := g.ask.Say(p + " is left alone."); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (g *guide) kvm() (bool, error) {
	k := g.f.Hardware.KVM
	if k.Verdict == hwprobe.KVMYes {
		return true, g.ask.Say("KVM: yes (" + k.Reason + "): this node runs containers and virtual machines.")
	}
	msg := "Without KVM, virtual machines would run emulated, slowly. Keep the compute role?"
	if k.Verdict != hwprobe.KVMNo {
		msg = "If KVM is missing, virtual machines would run emulated, slowly. Keep the compute role?"
	}
	if err := g.ask.Say(fmt.Sprintf("KVM: %s: %s. Containers are not affected.", k.Verdict, k.Reason)); err != nil {
		return false, err
	}
	return g.ask.Confirm(Question{ID: "kvm", Message: msg,
		Help: "Answer no to drop the compute role from this node."}, true)
}

func (g *guide) floating(addr string) (string, error) {
	return g.ask.Input(Question{ID: "floating_address", Message: "Floating address for the HA control endpoint (empty for none)",
		Help: "A free IP address on this network that keepalived moves between control nodes.",
		Validate: func(s string) error {
			if s == "" {
				return nil
			}
			ip, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("%q is not an IP address: write one such as 10.0.0.100, or leave it empty", s)
			}
			if ip.String() == addr || g.f.HasAddress(ip) {
				return fmt.Errorf("%s is already used by this machine: pick a free address", ip)
			}
			if ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast() {
				return fmt.Errorf("%s cannot float between nodes: pick a free address on the nodes' network", ip)
			}
			if _, _, err := api.ParseFloatingAddress(s); err != nil {
				return err
			}
			return nil
		}})
}

func (g *guide) label(n *NodeSpec, which string) error {
	def, msg := g.o.Region, "Region label (empty for none)"
	if which == "zone" {
		def, msg = g.o.Zone, "Availability-zone label (empty for none)"
	}
	v, err := g.ask.Input(Question{ID: which, Message: msg, Default: def,
		Validate: func(s string) error {
			if s != "" && !labelRE.MatchString(s) {
				return fmt.Errorf("use up to 63 letters, digits, '.', '_' or '-', starting with a letter or digit")
			}
			return nil
		}})
	if which == "zone" {
		n.Zone = v
	} else {
		n.Region = v
	}
	return err
}

func parseRoleNames(ss []string) []roles.Role {
	var out []roles.Role
	for _, s := range ss {
		if roles.Valid(roles.Role(s)) {
			out = append(out, roles.Role(s))
		}
	}
	return roles.Normalize(out)
}

func removeRole(ss []string, r roles.Role) []string {
	var out []string
	for _, s := range ss {
		if s != string(r) {
			out = append(out, s)
		}
	}
	return out
}
