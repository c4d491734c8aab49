package bootstrap

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/internal/strictyaml"
	"github.com/cloudctl/cloudctl/roles"
	controlplan "github.com/cloudctl/cloudctl/roles/control/plan"
	splan "github.com/cloudctl/cloudctl/roles/storage/plan"
)

// Selection says which entry of a preseed is this machine's, and what the
// run is.
type Selection struct {
	// Join is true for `cluster join`: the site settings are the cluster's.
	Join bool
	// Name picks the entry by name (--name); empty: see (*Preseed).Plan.
	Name string
	// TokenName is the node name a join token is bound to.
	TokenName string
	// TokenCluster is the cluster a join token is for.
	TokenCluster string
	// DefaultAddress is used for an entry without an address; empty means
	// the facts' address on the default route.
	DefaultAddress string
}

// Plan resolves this machine's entry of the preseed against the facts into
// a Plan and validates it. The entry is the one named sel.Name; else the one
// whose address is on this machine; else (join) the one named after the
// token; else the only entry; else the one named after the hostname.
//
// Errors stop the plan: for a parsed file they are strictyaml.Errors naming
// FILE:LINE:COL and the key path, else Problems. Warnings are returned for
// showing and recording.
func (p *Preseed) Plan(f Facts, sel Selection) (Plan, Problems, error) {
	r := &resolver{p: p, f: f, sel: sel, origin: map[string]string{}}
	plan, ok := r.resolve()
	if ok {
		ps := plan.Check(f, sel.Join)
		for _, pr := range ps.Errors() {
			r.fail(r.path(pr.Field), "%s", pr.Message)
		}
		r.warnings = append(r.warnings, ps.Warnings()...)
	}
	if err := r.err(); err != nil {
		return Plan{}, r.warnings, err
	}
	return plan, r.warnings, nil
}

type resolver struct {
	p        *Preseed
	f        Facts
	sel      Selection
	base     string
	origin   map[string]string
	errs     strictyaml.Errors
	problems Problems
	warnings Problems
}

func (r *resolver) fail(path, format string, args ...any) {
	if r.p.doc != nil {
		r.errs = append(r.errs, r.p.doc.Errorf(path, format, args...))
		return
	}
	r.problems = append(r.problems, Problem{Field: path, Message: fmt.Sprintf(format, args...)})
}

func (r *resolver) err() error {
	if r.p.doc != nil {
		return r.errs.Err()
	}
	return r.problems.Err()
}

// path maps a Problem field to the key path of the entry it came from.
func (r *resolver) path(field string) string {
	if p, ok := r.origin[field]; ok {
		return p
	}
	switch {
	case strings.HasPrefix(field, "role:"):
		return r.base + ".roles"
	case strings.HasPrefix(field, "disk:"):
		return r.base + ".disks"
	}
	return r.base
}

// set records where a field came from, when the document has it.
func (r *resolver) set(field, path, fallback string) {
	if r.p.doc != nil {
		if _, ok := r.p.doc.Find(path); !ok {
			path = fallback
		}
	}
	r.origin[field] = path
}

func (r *resolver) pick() (int, bool) {
	nodes := r.p.Nodes
	names := make([]string, len(nodes))
	for i, n := range nodes {
		names[i] = n.Name
	}
	byName := func(name string) int {
		for i, n := range nodes {
			if n.Name == name {
				return i
			}
		}
		return -1
	}
	if r.sel.Name != "" {
		if i := byName(r.sel.Name); i >= 0 {
			return i, true
		}
		r.fail("nodes", "no entry in nodes is named %q (it has %s); add one, or pass the --name of an entry", r.sel.Name, strings.Join(names, ", "))
		return 0, false
	}
	var mine []int
	for i, n := range nodes {
		if host, err := splitAddress(n.Address); err == nil && n.Address != "" {
			if ip, err := netip.ParseAddr(host); err == nil && r.f.HasAddress(ip) {
				mine = append(mine, i)
			}
		}
	}
	switch len(mine) {
	case 1:
		return mine[0], true
	case 0:
	default:
		var ns []string
		for _, i := range mine {
			ns = append(ns, nodes[i].Name)
		}
		r.fail("nodes", "several entries have an address of this machine (%s); pass --name to pick one", strings.Join(ns, ", "))
		return 0, false
	}
	if r.sel.Join && r.sel.TokenName != "" {
		if i := byName(r.sel.TokenName); i >= 0 {
			return i, true
		}
	}
	if len(nodes) == 1 {
		return 0, true
	}
	if i := byName(r.f.Hostname); i >= 0 && r.f.Hostname != "" {
		return i, true
	}
	why := fmt.Sprintf("none has one of its addresses (%s) or its hostname (%s)", r.f.addressList(), r.f.Hostname)
	if r.sel.Join && r.sel.TokenName != "" {
		why = fmt.Sprintf("none has one of its addresses (%s) or the token's name (%s)", r.f.addressList(), r.sel.TokenName)
	}
	r.fail("nodes", "no entry in nodes is for this machine: %s; pass --name to pick one", why)
	return 0, false
}

func (r *resolver) resolve() (Plan, bool) {
	i, ok := r.pick()
	if !ok {
		return Plan{}, false
	}
	n := r.p.Nodes[i]
	r.base = fmt.Sprintf("nodes[%d]", i)
	at := func(k string) string { return r.base + "." + k }
	plan := Plan{Name: n.Name}
	r.set("name", at("name"), r.base)

	addr := n.Address
	r.set("address", at("address"), r.base)
	if addr == "" {
		addr = r.sel.DefaultAddress
		if addr == "" {
			addr = r.f.DefaultAddress
		}
		if addr == "" {
			r.fail(at("address"), "this machine has no usable network address to default to; configure one, or set address")
			return Plan{}, false
		}
	}
	plan.Address = WithPort(addr)

	r.set("roles", at("roles"), r.base)
	var rs []roles.Role
	for k, s := range n.Roles {
		got, err := parseRole(s, r.p.groups)
		if err != nil {
			r.fail(fmt.Sprintf("%s[%d]", at("roles"), k), "%s", err.Error())
			return Plan{}, false
		}
		for _, role := range got {
			if _, seen := r.origin["role:"+string(role)]; !seen {
				r.set("role:"+string(role), fmt.Sprintf("%s[%d]", at("roles"), k), at("roles"))
			}
		}
		rs = append(rs, got...)
	}
	plan.Roles = roles.Normalize(rs)

	plan.Region, plan.Zone = n.Region, n.Zone
	r.set("region", at("region"), r.base)
	r.set("zone", at("zone"), r.base)
	if plan.Region == "" && r.p.Cluster.Region != "" {
		plan.Region = r.p.Cluster.Region
		r.set("region", "cluster.region", "cluster")
	}
	if plan.Zone == "" && r.p.Cluster.Zone != "" {
		plan.Zone = r.p.Cluster.Zone
		r.set("zone", "cluster.zone", "cluster")
	}

	r.set("disks", at("disks"), r.base)
	plan.Disks = r.disks(n, plan.Roles)

	if r.sel.Join {
		if r.sel.TokenCluster != "" && r.p.Cluster.Name != "" && r.p.Cluster.Name != r.sel.TokenCluster {
			r.fail("cluster.name", "this preseed describes cluster %q but the token is for cluster %q; use that cluster's preseed, or a token from this one", r.p.Cluster.Name, r.sel.TokenCluster)
		}
		return plan, true
	}
	plan.Cluster = r.p.Cluster.Name
	if plan.Cluster == "" {
		plan.Cluster = DefaultClusterName
	}
	r.set("cluster", "cluster.name", "cluster")
	plan.MySQLTopology, plan.MySQLTopologyReason = decideTopology(r.f, r.p.Cluster.MySQLTopology)
	plan.MySQLTopologyAuto = r.p.Cluster.MySQLTopology == "" || r.p.Cluster.MySQLTopology == TopologyAuto
	r.set("mysql_topology", "cluster.mysql_topology", "cluster")
	plan.FloatingAddress = r.p.Cluster.FloatingAddress
	r.set("floating_address", "cluster.floating_address", "cluster")
	return plan, true
}

// disks turns the entry's disk selection into OSD disks.
func (r *resolver) disks(n NodeSpec, rs []roles.Role) []api.DiskChoice {
	var out []api.DiskChoice
	chosen := map[string]bool{} // by /dev path
	canonical := func(path string) string {
		if d, ok := r.f.Disk(path); ok {
			return d.Path
		}
		return path
	}
	if n.Disks == nil {
		if !roles.Has(rs, roles.Storage) {
			return nil
		}
		for _, d := range r.f.EligibleDisks() {
			out = append(out, api.DiskChoice{Path: d.Path})
			r.set("disk:"+d.Path, r.base, r.base)
		}
		return out
	}
	for j, ds := range n.Disks {
		entry := fmt.Sprintf("%s.disks[%d]", r.base, j)
		if splan.IsFileDisk(ds.Path) {
			// Keyed by its place in the plan: the same entry twice is two OSDs.
			r.set(fmt.Sprintf("disk:%s#%d", ds.Path, len(out)), entry+".path", entry)
			out = append(out, api.DiskChoice{Path: ds.Path})
			continue
		}
		if ds.Path != "" {
			c := canonical(ds.Path)
			if chosen[c] {
				r.fail(entry+".path", "%s is a disk already selected above (%s); list each disk once", ds.Path, c)
				continue
			}
			chosen[c] = true
			out = append(out, api.DiskChoice{Path: ds.Path, Wipe: ds.Wipe})
			r.set("disk:"+ds.Path, entry+".path", entry)
			continue
		}
		matched := 0
		for _, d := range r.f.Hardware.Disks {
			if !diskMatches(d, ds) || (!d.Eligible && !(ds.Wipe && d.WipeEligible)) {
				continue
			}
			matched++
			if chosen[d.Path] {
				continue
			}
			chosen[d.Path] = true
			out = append(out, api.DiskChoice{Path: d.Path, Wipe: !d.Eligible})
			r.set("disk:"+d.Path, entry, entry)
		}
		if matched == 0 {
			r.fail(entry, "no disk of this machine that can hold an OSD matches %s (eligible: %s); change the filter or list disks by path", filterText(ds), diskNames(r.f.EligibleDisks()))
		}
	}
	if out == nil {
		out = []api.DiskChoice{}
	}
	return out
}

func diskMatches(d hwprobe.Disk, ds DiskSpec) bool {
	if ds.Type != "" && d.Type != string(ds.Type) {
		return false
	}
	return d.SizeBytes >= uint64(ds.MinSize)
}

func filterText(ds DiskSpec) string {
	var parts []string
	if ds.MinSize != 0 {
		parts = append(parts, "min_size "+ds.MinSize.String())
	}
	if ds.Type != "" {
		parts = append(parts, "type "+string(ds.Type))
	}
	if ds.Wipe {
		parts = append(parts, "wipe")
	}
	return strings.Join(parts, ", ")
}

func diskNames(ds []hwprobe.Disk) string {
	if len(ds) == 0 {
		return "none"
	}
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Path
	}
	return strings.Join(s, ", ")
}

// decideTopology returns the MySQL topology and the fact behind it. auto
// (or unset) takes the hardware's decision; a forced value that differs says
// what the hardware alone would have chosen.
func decideTopology(f Facts, set Topology) (string, string) {
	dc := f.Hardware.Decisions
	hw, why := dc.MySQLTopology, dc.MySQLReason
	if hw == "" {
		hw, why = controlplan.DecideTopology(0, 0, "")
	}
	return controlplan.Override(hw, why, string(set))
}
