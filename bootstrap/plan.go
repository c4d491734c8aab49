// Package bootstrap turns a node's choices into a Plan, validates it against
// the machine's facts, and applies it through cloudd: bootstrap a new
// cluster, or join an existing one.
//
// Every source of choices produces the same Plan type: command-line flags
// (FromFlags), the guided wizard (Guide, through an Asker), and preseed files
// (ParsePreseed, then (*Preseed).Plan). The wizard records its answers as a
// preseed and resolves it exactly like a file, so the same answers give the
// same Plan; a Plan is written back as a preseed (PlanPreseed) that replays
// the run unattended. Apply and ApplyJoin take a Plan and nothing else.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/roles"
	controlplan "github.com/cloudctl/cloudctl/roles/control/plan"
	splan "github.com/cloudctl/cloudctl/roles/storage/plan"
)

// Plan is the single input to applying a bootstrap or a join: every source
// of choices (flags, guided answers, preseed) produces one.
type Plan struct {
	// Name is this node's name in the cluster.
	Name string `json:"name" yaml:"name"`
	// Address is "host:port" for cluster traffic.
	Address string       `json:"address" yaml:"address"`
	Roles   []roles.Role `json:"roles" yaml:"roles"`
	Region  string       `json:"region,omitempty" yaml:"region,omitempty"`
	Zone    string       `json:"zone,omitempty" yaml:"zone,omitempty"`
	// Disks are this node's OSD disks, each with its consent to wipe.
	Disks []api.DiskChoice `json:"disks,omitempty" yaml:"disks,omitempty"`

	// The site settings below are set by a bootstrap only; a joining node
	// takes the cluster's.

	// Cluster names a new cluster (default "cloud").
	Cluster string `json:"cluster,omitempty" yaml:"cluster,omitempty"`
	// MySQLTopology is "single" or "multi" (controlplan.Single, controlplan.Multi);
	// fixed at bootstrap.
	MySQLTopology string `json:"mysql_topology,omitempty" yaml:"mysql_topology,omitempty"`
	// MySQLTopologyReason is the fact behind the topology.
	MySQLTopologyReason string `json:"mysql_topology_reason,omitempty" yaml:"mysql_topology_reason,omitempty"`
	// MySQLTopologyAuto means the topology was not chosen (flags, preseed
	// "auto"): MySQLTopology is what this machine's facts give with the
	// plan's manifest. Either way the decision travels in the plan and cloudd
	// only validates and stores it.
	MySQLTopologyAuto bool `json:"mysql_topology_auto,omitempty" yaml:"mysql_topology_auto,omitempty"`
	// FloatingAddress is the optional VRRP address in front of the control endpoints.
	FloatingAddress string `json:"floating_address,omitempty" yaml:"floating_address,omitempty"`
	// Manifest is a manifest overlay (YAML, from --manifest) that cloudd
	// applies over the default and keeps in the cluster database.
	Manifest string `json:"-" yaml:"-"`
}

// DefaultClusterName names a cluster when the bootstrap does not.
const DefaultClusterName = "cloud"

// Problem is one thing wrong with (or worth a warning about) a plan.
type Problem struct {
	// Field says what the problem is about: "name", "address", "roles",
	// "role:ROLE", "disks", "disk:PATH", "cluster", "mysql_topology",
	// "floating_address", "region", "zone". A preseed maps it to a key path.
	Field string
	// Message is one sentence: what is wrong; what to do.
	Message string
	// Warning problems are shown and recorded; they do not stop the plan.
	Warning bool
}

func (p Problem) Error() string { return p.Message }

// Problems is a list of problems; as an error it holds the errors only.
type Problems []Problem

// Errors returns the problems that stop the plan.
func (ps Problems) Errors() Problems {
	var out Problems
	for _, p := range ps {
		if !p.Warning {
			out = append(out, p)
		}
	}
	return out
}

// Warnings returns the problems that do not stop the plan.
func (ps Problems) Warnings() Problems {
	var out Problems
	for _, p := range ps {
		if p.Warning {
			out = append(out, p)
		}
	}
	return out
}

// Err returns the errors as one error (one sentence per line), or nil.
func (ps Problems) Err() error {
	errs := ps.Errors()
	if len(errs) == 0 {
		return nil
	}
	return errs
}

func (ps Problems) Error() string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.Message
	}
	return strings.Join(s, "\n")
}

// Messages returns the messages of the problems.
func (ps Problems) Messages() []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Message
	}
	return out
}

var labelRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,62})$`)

// Validate checks the plan on its own, without the machine's facts, and
// returns the first problem. Check adds the facts.
func (p Plan) Validate() error {
	if ps := p.validate(); len(ps) > 0 {
		return ps[0]
	}
	return nil
}

// validate returns every problem found without the facts (all errors).
func (p Plan) validate() Problems {
	var ps Problems
	add := func(field, format string, args ...any) {
		ps = append(ps, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if err := validName(p.Name); err != nil {
		add("name", "%s", err.Error())
	}
	if err := validAddress(p.Address); err != nil {
		add("address", "%s", err.Error())
	}
	if len(p.Roles) == 0 {
		add("roles", "no role chosen: give one or more of control, compute, storage")
	}
	for _, r := range p.Roles {
		if !roles.Valid(r) {
			add("roles", "unknown role %q: use control, compute or storage", r)
		}
	}
	for _, l := range []struct{ field, v string }{{"region", p.Region}, {"zone", p.Zone}} {
		if l.v != "" && !labelRE.MatchString(l.v) {
			add(l.field, "invalid %s label %q: use up to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", l.field, l.v)
		}
	}
	seen := map[string]bool{}
	for j, d := range p.Disks {
		switch {
		case splan.IsFileDisk(d.Path):
			// The same file-backed entry twice is two OSDs.
			if _, _, err := splan.ParseFileDisk(d.Path); err != nil {
				add(fmt.Sprintf("disk:%s#%d", d.Path, j), "%v", err)
			}
			continue
		case !strings.HasPrefix(d.Path, "/dev/"):
			add("disk:"+d.Path, "invalid disk path %q: name a disk by its /dev path, such as /dev/sdb, or loop:SIZE (such as loop:8GiB) for a file-backed OSD", d.Path)
		case seen[d.Path]:
			add("disk:"+d.Path, "disk %s is listed twice: list each disk once", d.Path)
		}
		seen[d.Path] = true
	}
	if len(p.Disks) > 0 && !roles.Has(p.Roles, roles.Storage) {
		add("disks", "OSD disks are listed but the node has no storage role: add the storage role or remove the disks")
	}
	if p.Cluster != "" {
		if err := validName(p.Cluster); err != nil {
			add("cluster", "invalid cluster name %q: use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit", p.Cluster)
		}
	}
	switch p.MySQLTopology {
	case "", controlplan.Single, controlplan.Multi:
	default:
		add("mysql_topology", "unknown MySQL topology %q: use single or multi", p.MySQLTopology)
	}
	if p.FloatingAddress != "" {
		ip, err := netip.ParseAddr(p.FloatingAddress)
		switch {
		case err != nil:
			add("floating_address", "invalid floating address %q: write an IP address without a port, such as 10.0.0.100", p.FloatingAddress)
		case ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast():
			add("floating_address", "invalid floating address %s: a loopback, unspecified or multicast address cannot be shared; pick a free address on the nodes' network", ip)
		default:
			if _, _, err := api.ParseFloatingAddress(p.FloatingAddress); err != nil {
				add("floating_address", "%v", err)
			}
			if host, _, err := net.SplitHostPort(p.Address); err == nil && host == ip.String() {
				add("floating_address", "floating address %s is this node's own address: pick a free address on the same network", ip)
			}
		}
	}
	return ps
}

func validAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q: use host:port, e.g. 10.0.0.1:%d", addr, api.DefaultPort)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return fmt.Errorf("invalid address %q: %q is not an IP address", addr, host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("invalid address %q: the port must be 1-65535", addr)
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return fmt.Errorf("invalid address %q: other nodes cannot reach a loopback or unspecified address; pick one of this machine's network addresses", addr)
	}
	return nil
}

// Check validates the plan against the machine's facts and returns every
// problem, errors and warnings. join leaves out the site settings, which a
// joining node takes from the cluster.
func (p Plan) Check(f Facts, join bool) Problems {
	ps := p.validate()
	warn := func(field, format string, args ...any) {
		ps = append(ps, Problem{Field: field, Message: fmt.Sprintf(format, args...), Warning: true})
	}
	fail := func(field, format string, args ...any) {
		ps = append(ps, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	var own netip.Addr // this node's address, when it is one of the machine's
	if host, _, err := net.SplitHostPort(p.Address); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil && !ip.IsLoopback() && !ip.IsUnspecified() {
			if f.HasAddress(ip) {
				own = ip
			} else {
				fail("address", "address %s is not on this machine (its addresses: %s): use one of them", host, f.addressList())
			}
		}
	}
	for _, fd := range f.Hardware.Findings {
		// Disks are checked on the plan's own choice, below.
		if !roles.Has(p.Roles, fd.Role) || fd.Check == "disks" {
			continue
		}
		switch fd.Level {
		case hwprobe.LevelError:
			fail("role:"+string(fd.Role), "this machine cannot take the %s role: %s", fd.Role, fd.Message)
		case hwprobe.LevelWarn:
			warn("role:"+string(fd.Role), "%s: %s", fd.Role, fd.Message)
		}
	}
	var files []string
	fileKey := ""
	for j, d := range p.Disks {
		if splan.IsFileDisk(d.Path) {
			key := fmt.Sprintf("disk:%s#%d", d.Path, j)
			// validate refused a bad size already.
			if _, _, err := splan.ParseFileDisk(d.Path); err == nil {
				if files = append(files, d.Path); fileKey == "" {
					fileKey = key
				}
			}
			continue
		}
		disk, ok := f.Disk(d.Path)
		switch {
		case !ok:
			fail("disk:"+d.Path, "disk %s does not exist on this machine (its disks: %s): use one of them", d.Path, f.diskList())
		case disk.Eligible:
		case disk.WipeEligible && d.Wipe:
			warn("disk:"+d.Path, "disk %s will be wiped: its %s signature is erased before it becomes an OSD", d.Path, strings.Join(disk.Signatures, ", "))
		case disk.WipeEligible:
			fail("disk:"+d.Path, "disk %s carries a signature (%s): consent to erase it (preseed \"wipe: true\", --wipe, or confirm in the wizard) or pick another disk", d.Path, strings.Join(disk.Signatures, ", "))
		default:
			fail("disk:"+d.Path, "disk %s cannot hold an OSD: %s; pick an eligible disk (`cloudctl probe` lists them)", d.Path, strings.Join(disk.Reasons, "; "))
		}
	}
	switch len(files) {
	case 0:
	case 1:
		warn(fileKey, "disk %s is a sparse file below the state directory (%s): fine for a demo or a test, it shares the state disk and is lost with it", files[0], splan.FileBackedNote)
	default:
		warn(fileKey, "disks %s are sparse files below the state directory (%s): fine for a demo or a test, they share the state disk and are lost with it", strings.Join(files, ", "), splan.FileBackedNote)
	}
	if roles.Has(p.Roles, roles.Compute) && f.RBDAbsent {
		warn("role:compute", "compute: the kernel's rbd module is absent on %s (/sys/bus/rbd): with a storage layer the remote (Ceph) LXD pool is created, but volumes on it need the rbd kernel module; instances use the local pool here", p.Name)
	}
	if roles.Has(p.Roles, roles.Storage) && len(p.Disks) == 0 {
		warn("disks", "the storage role has no OSD disk: this node runs a Ceph monitor and manager but stores no data; add a blank disk to the plan to store data here")
	}
	if join {
		return ps
	}
	if p.FloatingAddress != "" {
		if ip, err := netip.ParseAddr(p.FloatingAddress); err == nil && !ip.IsLoopback() && ip != own {
			if f.HasAddress(ip) {
				fail("floating_address", "floating address %s is already in use on this machine: pick a free address on the same network", ip)
			} else if own.IsValid() && !sameNetwork(f, p.Address, ip) {
				warn("floating_address", "floating address %s is not on the network of %s: keepalived can move it only within one network segment", ip, p.Address)
			}
		}
	}
	return ps
}

// sameNetwork reports whether ip is in the subnet of the interface holding
// the host of addr.
func sameNetwork(f Facts, addr string, ip netip.Addr) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	h, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	for _, a := range f.Addresses {
		if a.Prefix.Addr() == h && a.Prefix.Masked().Contains(ip) {
			return true
		}
	}
	return false
}

func (p Plan) nodeInit() api.NodeInit {
	return api.NodeInit{Roles: roleStrings(p.Roles), Region: p.Region, Zone: p.Zone, Disks: p.Disks}
}

// Daemon is what applying a plan needs from cloudd; *client.Client has it.
type Daemon interface {
	Info(ctx context.Context) (client.Info, error)
	Bootstrap(ctx context.Context, name, address string, ni api.NodeInit) error
	JoinIntent(ctx context.Context, name string, jt api.JoinToken, ni api.NodeInit) error
	Join(ctx context.Context, name, address string, jt api.JoinToken, ni api.NodeInit) error
}

// ErrAlreadyMember means this node is already bootstrapped or joined.
var ErrAlreadyMember = errors.New("already part of a cluster")

// memberError is a sentence about an existing membership that matches ErrAlreadyMember.
type memberError struct{ msg string }

func (e memberError) Error() string        { return e.msg }
func (e memberError) Is(target error) bool { return target == ErrAlreadyMember }

// Result says what applying did.
type Result struct {
	Name      string        `json:"name"`
	Address   string        `json:"address"`
	Roles     []string      `json:"roles"`
	Took      time.Duration `json:"took_ns"`
	Bootstrap bool          `json:"bootstrap"`
	// Preseed is the file the equivalent preseed was saved to (set by the CLI).
	Preseed string `json:"preseed,omitempty"`
	// Warnings are the plan's warnings, shown before applying.
	Warnings []string `json:"warnings,omitempty"`
	// Resumed: the token had been redeemed by an earlier run of this join,
	// cut off before it reached the cluster, and was redeemed again.
	Resumed bool `json:"resumed,omitempty"`
}

// Apply bootstraps a new cluster with this node as its first member.
// A node that is already a member is left untouched.
func Apply(ctx context.Context, d Daemon, p Plan, now func() time.Time) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	info, err := d.Info(ctx)
	if err != nil {
		return Result{}, err
	}
	if info.Initialized {
		return Result{}, memberError{fmt.Sprintf("this node is already bootstrapped, as %q (%s); nothing was changed — `cloudctl status` shows the cluster", info.Name, info.Address)}
	}
	start := now()
	ni := p.nodeInit()
	cluster := p.Cluster
	if cluster == "" {
		cluster = DefaultClusterName
	}
	ni.Manifest = p.Manifest
	ni.Plan = &api.Plan{Version: 1, Cluster: cluster, Bootstrap: p.Name, FloatingAddress: p.FloatingAddress}
	// The topology is decided once, here, with this machine's facts and the
	// manifest that travels with the plan; cloudd validates and stores it.
	ni.Plan.MySQLTopology, ni.Plan.MySQLTopologyReason = p.MySQLTopology, p.MySQLTopologyReason
	if err := d.Bootstrap(ctx, p.Name, p.Address, ni); err != nil {
		return Result{}, err
	}
	return Result{Name: p.Name, Address: p.Address, Roles: ni.Roles, Took: now().Sub(start), Bootstrap: true}, nil
}

// ApplyJoin joins the cluster that issued jn's token. The token is checked
// with the cluster first, so a bad token changes nothing on either side. The
// plan's site settings are not used: the cluster has its own.
func ApplyJoin(ctx context.Context, d Daemon, p Plan, jn client.Joiner, now func() time.Time) (Result, error) {
	jt := jn.Token
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	info, err := d.Info(ctx)
	if err != nil {
		return Result{}, err
	}
	if info.Initialized {
		return Result{}, memberError{fmt.Sprintf("this node is already a member of a cluster, as %q (%s); nothing was changed — remove it there first (`cloudctl cluster remove %s`) to join another", info.Name, info.Address, info.Name)}
	}
	if _, err := client.CheckToken(ctx, jn, p.Name, now()); err != nil {
		return Result{}, err
	}
	ni := p.nodeInit()
	// cloudd records the join before anything is spent: a join it dies in
	// is cleared or finished at its next start.
	if err := d.JoinIntent(ctx, p.Name, jt, ni); err != nil {
		return Result{}, err
	}
	// Spend the token (name, expiry, single use checked by the cluster in
	// one transaction) for the one-join secret microcluster takes.
	secret, resumed, err := client.RedeemToken(ctx, jn, p.Name)
	if err != nil {
		return Result{}, err
	}
	jt.Secret = secret
	start := now()
	if err := d.Join(ctx, p.Name, p.Address, jt, ni); err != nil {
		return Result{}, err
	}
	return Result{Name: p.Name, Address: p.Address, Roles: roleStrings(p.Roles), Took: now().Sub(start), Resumed: resumed}, nil
}

func roleStrings(rs []roles.Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}
