package bootstrap

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/internal/strictyaml"
	"github.com/cloudctl/cloudctl/roles"
	splan "github.com/cloudctl/cloudctl/roles/storage/plan"
)

// PreseedVersion is the preseed format this code reads and writes.
const PreseedVersion = 1

// Preseed is a preseed file: the site settings and every node of a cluster
// by name. One file can describe the whole cluster; each machine picks its
// own entry (see (*Preseed).Plan). The wizard records its answers in the same
// type, so that guided and preseed runs resolve through the same code.
type Preseed struct {
	// Version must be 1.
	Version int `yaml:"version"`
	// Cluster holds the site settings, used by the bootstrap node.
	Cluster ClusterSpec `yaml:"cluster"`
	// Nodes are the machines, each by name.
	Nodes []NodeSpec `yaml:"nodes"`

	// doc is the parsed file, for positions; nil for a preseed built in Go.
	doc *strictyaml.Document
	// groups are the role groups the roles were read with.
	groups map[string][]roles.Role
	// comments written by Marshal: at the top and at the end of the file.
	header, footer []string
}

// ClusterSpec holds the site settings of a preseed.
type ClusterSpec struct {
	// Name names the cluster (default "cloud").
	Name string `yaml:"name"`
	// MySQLTopology is auto (decided from the bootstrap node's RAM), single or multi.
	MySQLTopology Topology `yaml:"mysql_topology"`
	// FloatingAddress is the optional VRRP address in front of the control endpoints.
	FloatingAddress string `yaml:"floating_address"`
	// Region and Zone label every node that does not set its own.
	Region string `yaml:"region"`
	Zone   string `yaml:"zone"`

	topologyNote string
}

// NodeSpec is one machine of a preseed.
type NodeSpec struct {
	Name string `yaml:"name"`
	// Address is IP or IP:port for cluster traffic; default: the address on
	// the default route (bootstrap), the one that reaches the cluster (join).
	Address string `yaml:"address"`
	// Roles are roles or role groups from the manifest (e.g. converged).
	Roles  []string `yaml:"roles"`
	Region string   `yaml:"region"`
	Zone   string   `yaml:"zone"`
	// Disks select the OSD disks. Absent: every eligible disk (storage
	// role); an empty list: none.
	Disks []DiskSpec `yaml:"disks"`

	// notes are comments written by Marshal above a key.
	notes map[string][]string
}

// DiskSpec selects OSD disks: one disk by path, or every eligible disk that
// matches a filter (min_size and/or type).
type DiskSpec struct {
	Path    string   `yaml:"path"`
	MinSize Size     `yaml:"min_size"`
	Type    DiskType `yaml:"type"`
	// Wipe consents to erasing the signature of a disk that carries one;
	// with a filter, it lets the filter pick such disks too.
	Wipe bool `yaml:"wipe"`

	note string
}

func (d DiskSpec) isFilter() bool { return d.MinSize != 0 || d.Type != "" }

// Topology is the MySQL topology setting of a preseed.
type Topology string

// The topology settings.
const (
	TopologyAuto   Topology = "auto"
	TopologySingle Topology = "single"
	TopologyMulti  Topology = "multi"
)

// UnmarshalText accepts auto, single or multi.
func (t *Topology) UnmarshalText(b []byte) error {
	switch v := Topology(b); v {
	case TopologyAuto, TopologySingle, TopologyMulti:
		*t = v
		return nil
	}
	return fmt.Errorf("unknown MySQL topology %q; use auto, single or multi", string(b))
}

// DiskType is a disk filter's drive type.
type DiskType string

// UnmarshalText accepts hdd, ssd or virtual.
func (t *DiskType) UnmarshalText(b []byte) error {
	switch v := string(b); v {
	case "hdd", "ssd", "virtual":
		*t = DiskType(v)
		return nil
	}
	return fmt.Errorf("unknown disk type %q; use hdd, ssd or virtual (NVMe disks are ssd)", string(b))
}

// File is the name the preseed was parsed from ("" when built in Go).
func (p *Preseed) File() string {
	if p.doc == nil {
		return ""
	}
	return p.doc.File
}

// ParsePreseed reads a preseed strictly and checks what can be checked
// without the machine: unknown keys, wrong types, duplicate keys, the
// version, names, roles (with the manifest's role groups), addresses, labels
// and disk entries. Every problem is a strictyaml.Error naming
// FILE:LINE:COL and the key path; the error returned is a strictyaml.Errors.
// The Preseed is nil when there is any problem.
func ParsePreseed(file string, data []byte, groups map[string][]roles.Role) (*Preseed, error) {
	doc, err := strictyaml.Parse(file, data)
	if doc == nil {
		return nil, err
	}
	var errs strictyaml.Errors
	if err != nil && !errors.As(err, &errs) {
		return nil, err
	}
	if doc.Root.Kind != yaml.MappingNode {
		errs = append(errs, doc.Errorf("", "the preseed is not a mapping; write it as \"key: value\" lines, starting with \"version: 1\""))
		return nil, errs.Err()
	}
	p := &Preseed{doc: doc, groups: groups}
	if derr := doc.Decode(p); derr != nil {
		var des strictyaml.Errors
		if !errors.As(derr, &des) {
			return nil, derr
		}
		errs = append(errs, des...)
	}
	c := newChecker(doc, errs)
	p.check(c, groups)
	if err := c.errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// checker collects semantic errors, skipping places that already have one
// (at the same path, inside it, or around it).
type checker struct {
	doc  *strictyaml.Document
	errs strictyaml.Errors
	// at holds the paths with an error; around, their enclosing paths.
	at, around map[string]bool
}

func newChecker(doc *strictyaml.Document, errs strictyaml.Errors) *checker {
	c := &checker{doc: doc, at: map[string]bool{}, around: map[string]bool{}}
	for _, e := range errs {
		c.add(e)
	}
	return c
}

func (c *checker) add(e *strictyaml.Error) {
	c.errs = append(c.errs, e)
	c.at[e.Path] = true
	for _, p := range enclosing(e.Path) {
		c.around[p] = true
	}
}

// enclosing lists the paths around path: "a.b[1].c" → "a", "a.b", "a.b[1]".
func enclosing(path string) []string {
	var out []string
	for i := 0; i < len(path); i++ {
		if (path[i] == '.' || path[i] == '[') && i > 0 {
			out = append(out, path[:i])
		}
	}
	return out
}

func (c *checker) fail(path, format string, args ...any) {
	if c.at[path] || c.around[path] {
		return
	}
	if path != "" {
		for _, p := range enclosing(path) {
			if c.at[p] {
				return
			}
		}
	}
	c.add(c.doc.Errorf(path, format, args...))
}

// missing reports that key is absent from the mapping at parent (at path),
// unless a mistyped key in that mapping already suggested it: a typo gives
// one message, not also the errors its absence causes.
func (c *checker) missing(parent, key, path, format string, args ...any) {
	hint := fmt.Sprintf("did you mean %q?", key)
	for _, e := range c.errs {
		p := e.Path
		if i := strings.LastIndexAny(p, ".["); i >= 0 && p[i] == '.' {
			p = p[:i]
		} else if i < 0 {
			p = ""
		}
		if p == parent && strings.Contains(e.Message, hint) {
			return
		}
	}
	c.fail(path, format, args...)
}

func (c *checker) has(path string) bool {
	_, ok := c.doc.Find(path)
	return ok
}

func (c *checker) line(path string) int {
	if n, ok := c.doc.Find(path); ok {
		return n.Line
	}
	return 0
}

func (p *Preseed) check(c *checker, groups map[string][]roles.Role) {
	switch {
	case !c.has("version"):
		c.missing("", "version", "", "the preseed has no version; add \"version: %d\" at the top", PreseedVersion)
	case p.Version != PreseedVersion:
		c.fail("version", "unsupported preseed version %d; this cloudctl reads version %d", p.Version, PreseedVersion)
	}
	if p.Cluster.Name != "" && validName(p.Cluster.Name) != nil {
		c.fail("cluster.name", "invalid cluster name %q; use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit", p.Cluster.Name)
	}
	var floating netip.Addr
	if p.Cluster.FloatingAddress != "" {
		ip, err := netip.ParseAddr(p.Cluster.FloatingAddress)
		switch {
		case err != nil:
			c.fail("cluster.floating_address", "invalid floating address %q; write an IP address without a port, such as 10.0.0.100", p.Cluster.FloatingAddress)
		case ip.IsLoopback() || ip.IsUnspecified() || ip.IsMulticast():
			c.fail("cluster.floating_address", "a loopback, unspecified or multicast address cannot float between nodes; pick a free address on the nodes' network")
		default:
			if _, _, err := api.ParseFloatingAddress(p.Cluster.FloatingAddress); err != nil {
				c.fail("cluster.floating_address", "%v", err)
				break
			}
			floating = ip
		}
	}
	for _, k := range []string{"region", "zone"} {
		v := p.Cluster.Region
		if k == "zone" {
			v = p.Cluster.Zone
		}
		if v != "" && !labelRE.MatchString(v) {
			c.fail("cluster."+k, "invalid %s label %q; use up to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", k, v)
		}
	}
	if len(p.Nodes) == 0 {
		c.missing("", "nodes", "nodes", "the preseed describes no node; add an entry under nodes for each machine, with its name and roles")
	}
	names := map[string]int{}
	addrs := map[string]int{}
	for i, n := range p.Nodes {
		at := func(key string) string { return fmt.Sprintf("nodes[%d]%s", i, key) }
		switch {
		case !c.has(at(".name")):
			c.fail(at(""), "this node has no name; add \"name: NAME\" (the node's name in the cluster)")
		case validName(n.Name) != nil:
			c.fail(at(".name"), "invalid node name %q; use 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit", n.Name)
		default:
			if j, dup := names[n.Name]; dup {
				c.fail(at(".name"), "node %q is already described at line %d; describe each node once", n.Name, c.line(fmt.Sprintf("nodes[%d].name", j)))
			} else {
				names[n.Name] = i
			}
		}
		if n.Address != "" {
			host, err := splitAddress(n.Address)
			switch {
			case err != nil:
				c.fail(at(".address"), "%s", err.Error())
			default:
				if j, dup := addrs[host]; dup {
					c.fail(at(".address"), "address %s is already used by node %q at line %d; give each node its own address", host, p.Nodes[j].Name, c.line(fmt.Sprintf("nodes[%d].address", j)))
				} else {
					addrs[host] = i
				}
				if floating.IsValid() && host == floating.String() {
					c.fail("cluster.floating_address", "floating address %s is the address of node %q; pick a free address on the nodes' network", floating, n.Name)
				}
			}
		}
		var rs []roles.Role
		if !c.has(at(".roles")) || len(n.Roles) == 0 {
			path := at(".roles")
			if !c.has(path) {
				path = at("")
			}
			c.missing(at(""), "roles", path, "no role for node %q; list one or more of control, compute, storage under roles", n.Name)
		}
		for k, r := range n.Roles {
			got, err := parseRole(r, groups)
			if err != nil {
				c.fail(at(fmt.Sprintf(".roles[%d]", k)), "%s", err.Error())
				continue
			}
			rs = append(rs, got...)
		}
		for _, k := range []string{"region", "zone"} {
			v := n.Region
			if k == "zone" {
				v = n.Zone
			}
			if v != "" && !labelRE.MatchString(v) {
				c.fail(at("."+k), "invalid %s label %q; use up to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", k, v)
			}
		}
		if len(n.Disks) > 0 && len(rs) > 0 && !roles.Has(rs, roles.Storage) {
			c.fail(at(".disks"), "disks are listed but node %q has no storage role; add storage to its roles or remove the disks", n.Name)
		}
		paths := map[string]int{}
		for j, d := range n.Disks {
			dp := at(fmt.Sprintf(".disks[%d]", j))
			switch {
			case d.Path != "" && d.isFilter():
				c.fail(dp, "a disk entry takes either path or a filter (min_size, type), not both; split it into two entries")
			case d.Path == "" && !d.isFilter():
				if c.has(dp + ".path") {
					c.fail(dp+".path", "the disk path is empty; write a /dev path such as /dev/sdb")
				} else {
					c.fail(dp, "empty disk entry; give path: /dev/NAME, or a filter with min_size and/or type")
				}
			case splan.IsFileDisk(d.Path):
				// A file-backed OSD; the same entry twice is two OSDs.
				if _, _, err := splan.ParseFileDisk(d.Path); err != nil {
					c.fail(dp+".path", "%v", err)
				} else if d.Wipe {
					c.fail(dp+".wipe", "wipe applies to disks, not to a file-backed OSD (%s); remove wipe from this entry", d.Path)
				}
			case d.Path != "" && !strings.HasPrefix(d.Path, "/dev/"):
				c.fail(dp+".path", "invalid disk path %q; name the disk by its /dev path, such as /dev/sdb or /dev/disk/by-id/..., or loop:SIZE (such as loop:8GiB) for a file-backed OSD, not for production", d.Path)
			case d.Path != "":
				if k, dup := paths[d.Path]; dup {
					c.fail(dp+".path", "disk %s is already listed at line %d; list each disk once", d.Path, c.line(at(fmt.Sprintf(".disks[%d].path", k))))
				} else {
					paths[d.Path] = j
				}
			}
		}
	}
}

// parseRole reads one roles entry: a role or a role group.
func parseRole(s string, groups map[string][]roles.Role) ([]roles.Role, error) {
	if strings.Contains(s, ",") {
		return nil, fmt.Errorf("%q holds several roles; write one role per list item, such as [control, compute]", s)
	}
	rs, err := roles.Parse(s, groups)
	if err != nil {
		return nil, fmt.Errorf("%s", strings.Replace(err.Error(), ": use", "; use", 1))
	}
	return rs, nil
}

// splitAddress reads IP or IP:port and returns the IP.
func splitAddress(s string) (string, error) {
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		host = h
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("invalid address %q; the port %q must be a number from 1 to 65535", s, port)
		}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", fmt.Errorf("invalid address %q; write an IP address, optionally with :port, such as 10.0.0.1", s)
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		return "", fmt.Errorf("other nodes cannot reach the loopback or unspecified address %s; use one of the machine's network addresses", ip)
	}
	return ip.String(), nil
}
