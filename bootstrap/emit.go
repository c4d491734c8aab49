package bootstrap

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/roles"
)

// PlanPreseed writes a plan back as a preseed that reproduces it: the node's
// entry with its disks by path, and (bootstrap) the site settings with the
// MySQL topology resolved to single or multi. The facts behind each decision
// and the plan's warnings become comments.
func PlanPreseed(p Plan, f Facts, join bool, warnings Problems) *Preseed {
	ps := &Preseed{Version: PreseedVersion}
	if !join {
		ps.Cluster = ClusterSpec{Name: p.Cluster, MySQLTopology: Topology(p.MySQLTopology), FloatingAddress: p.FloatingAddress, topologyNote: p.MySQLTopologyReason}
	}
	n := NodeSpec{Name: p.Name, Address: p.Address, Roles: roleStrings(p.Roles), Region: p.Region, Zone: p.Zone, notes: map[string][]string{}}
	if roles.Has(p.Roles, roles.Storage) {
		n.Disks = []DiskSpec{}
		for _, d := range p.Disks {
			ds := DiskSpec{Path: d.Path, Wipe: d.Wipe}
			if disk, ok := f.Disk(d.Path); ok {
				ds.note = diskLabel(disk)
				if d.Wipe && len(disk.Signatures) > 0 {
					ds.note += ", its " + strings.Join(disk.Signatures, ", ") + " signature is erased"
				}
			}
			n.Disks = append(n.Disks, ds)
		}
		n.notes["disks"] = storageNote(p, f)
	}
	if roles.Has(p.Roles, roles.Compute) && f.Hardware.KVM.Verdict != "" {
		n.notes["roles"] = []string{"compute: KVM " + f.Hardware.KVM.Verdict + ": " + f.Hardware.KVM.Reason}
	}
	ps.Nodes = []NodeSpec{n}
	if len(warnings) > 0 {
		ps.footer = append(ps.footer, "Warnings when this plan was made:")
		for _, w := range warnings {
			ps.footer = append(ps.footer, "  - "+w.Message)
		}
	}
	return ps
}

// storageNote says how many disks were chosen out of what, and the pool size.
func storageNote(p Plan, f Facts) []string {
	el, wipe := len(f.EligibleDisks()), len(f.WipeDisks())
	note := fmt.Sprintf("OSD disks: %d chosen; this machine has %d eligible disk(s)", len(p.Disks), el)
	if wipe > 0 {
		note += fmt.Sprintf(" and %d usable only after a wipe", wipe)
	}
	return []string{note, "Ceph pools: " + poolNote(f, 1)}
}

func poolNote(f Facts, storageNodes int) string {
	m := f.PoolSizeMax
	if m <= 0 {
		m = 3
	}
	return fmt.Sprintf("size %d = min(storage nodes, %d) with %d storage node(s); it grows as storage nodes join", f.poolSize(storageNodes), m, storageNodes)
}

// diskLabel is "model, size" for a disk.
func diskLabel(d hwprobe.Disk) string {
	parts := []string{}
	if m := strings.TrimSpace(strings.TrimSpace(d.Vendor) + " " + strings.TrimSpace(d.Model)); m != "" {
		parts = append(parts, m)
	}
	parts = append(parts, hwprobe.HumanBytes(d.SizeBytes))
	if d.Type != "" && d.Type != "unknown" {
		parts = append(parts, d.Type)
	}
	return strings.Join(parts, ", ")
}

// SetHeader sets the comment lines written at the top of the file.
func (p *Preseed) SetHeader(lines ...string) { p.header = lines }

// Marshal writes the preseed as YAML that ParsePreseed reads back to the
// same values, with its comments. Keys left empty are not written; a node
// with an empty disk list is written "disks: []" (absent means "every
// eligible disk").
func (p *Preseed) Marshal() ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	root.HeadComment = comment(p.header)
	addKey(root, "version", intNode(p.Version), "")

	c := &yaml.Node{Kind: yaml.MappingNode}
	addStr(c, "name", p.Cluster.Name, "")
	addStr(c, "mysql_topology", string(p.Cluster.MySQLTopology), commentIf(p.Cluster.topologyNote))
	addStr(c, "floating_address", p.Cluster.FloatingAddress, "")
	addStr(c, "region", p.Cluster.Region, "")
	addStr(c, "zone", p.Cluster.Zone, "")
	if len(c.Content) > 0 {
		addKey(root, "cluster", c, "")
	}

	nodes := &yaml.Node{Kind: yaml.SequenceNode}
	for _, n := range p.Nodes {
		nm := &yaml.Node{Kind: yaml.MappingNode}
		addStr(nm, "name", n.Name, "")
		addStr(nm, "address", n.Address, "")
		if n.Roles != nil {
			rs := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
			for _, r := range n.Roles {
				rs.Content = append(rs.Content, strNode(r))
			}
			addKey(nm, "roles", rs, comment(n.notes["roles"]))
		}
		addStr(nm, "region", n.Region, "")
		addStr(nm, "zone", n.Zone, "")
		if n.Disks != nil {
			ds := &yaml.Node{Kind: yaml.SequenceNode}
			if len(n.Disks) == 0 {
				ds.Style = yaml.FlowStyle
			}
			for _, d := range n.Disks {
				dm := &yaml.Node{Kind: yaml.MappingNode}
				addStr(dm, "path", d.Path, "")
				if d.MinSize != 0 {
					addKey(dm, "min_size", strNode(d.MinSize.String()), "")
				}
				addStr(dm, "type", string(d.Type), "")
				if d.Wipe {
					addKey(dm, "wipe", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"}, "")
				}
				if d.note != "" && len(dm.Content) > 0 {
					dm.Content[len(dm.Content)-1].LineComment = "# " + oneLine(d.note)
				}
				ds.Content = append(ds.Content, dm)
			}
			addKey(nm, "disks", ds, comment(n.notes["disks"]))
		}
		nodes.Content = append(nodes.Content, nm)
	}
	addKey(root, "nodes", nodes, "")

	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}
	doc.FootComment = comment(p.footer)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("encode preseed: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode preseed: %w", err)
	}
	return b.Bytes(), nil
}

func comment(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.TrimRight("# "+oneLine(l), " ")
	}
	return strings.Join(out, "\n")
}

func commentIf(s string) string {
	if s == "" {
		return ""
	}
	return comment([]string{s})
}

func oneLine(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "\r", " "), "\n", " ") }

func strNode(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }

func intNode(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

func addStr(m *yaml.Node, key, value, head string) {
	if value == "" {
		return
	}
	addKey(m, key, strNode(value), head)
}

func addKey(m *yaml.Node, key string, value *yaml.Node, head string) {
	k := strNode(key)
	k.HeadComment = head
	m.Content = append(m.Content, k, value)
}
