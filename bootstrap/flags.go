package bootstrap

import (
	_ "embed"

	"github.com/cloudctl/cloudctl/roles"
)

// FlagChoices are the choices given on the command line. Empty fields take
// the defaults, as with --accept-defaults.
type FlagChoices struct {
	Name    string
	Address string // IP or IP:port
	Roles   []roles.Role
	Region  string
	Zone    string
	// Cluster names a new cluster (bootstrap).
	Cluster string
	// Topology is the MySQL topology (bootstrap); "" is auto.
	Topology Topology
	// Disks are the OSD disks by path; nil means every eligible disk, an
	// empty list none.
	Disks []string
	// Wipe consents to erasing a signature on any of Disks.
	Wipe bool
}

// Preseed records the choices as a one-node preseed, resolved like any other
// (see (*Preseed).Plan with Selection.Name set to the node's name).
func (c FlagChoices) Preseed() *Preseed {
	n := NodeSpec{Name: c.Name, Address: c.Address, Roles: roleStrings(c.Roles), Region: c.Region, Zone: c.Zone}
	if c.Disks != nil {
		n.Disks = []DiskSpec{}
		for _, d := range c.Disks {
			n.Disks = append(n.Disks, DiskSpec{Path: d, Wipe: c.Wipe})
		}
	}
	return &Preseed{Version: PreseedVersion, Cluster: ClusterSpec{Name: c.Cluster, MySQLTopology: c.Topology}, Nodes: []NodeSpec{n}}
}

//go:embed example.yaml
var exampleYAML string

// ExampleYAML is a full, commented preseed describing a three-node cluster
// (`cloudctl preseed example`, docs/preseed.md).
func ExampleYAML() string { return exampleYAML }
