// Package control is the control role's driver: MariaDB instances in the
// chosen topology (one for all services, or one per service), a database and
// user per control-plane service, and Galera replication across the first
// three control nodes. cloudd decides what this node should run (Decide) and
// the Driver converges the node to it.
package control

import (
	"fmt"
	"path/filepath"
	"sort"

	"github.com/cloudctl/cloudctl/manifests"
)

// Topologies.
const (
	Single = "single"
	Multi  = "multi"
)

// GaleraMembers is how many control nodes form the Galera cluster.
const GaleraMembers = 3

// Instance is one MariaDB server on a control node.
type Instance struct {
	// Name is "mysql" (single) or "mysql-<service>" (multi).
	Name string `json:"name"`
	// Services are the control-plane services whose databases it holds.
	Services []string `json:"services"`
	Port     int      `json:"port"`
	// Galera ports: replication, incremental state transfer, snapshot state transfer.
	GaleraPort    int `json:"galera_port"`
	ISTPort       int `json:"ist_port"`
	SSTPort       int `json:"sst_port"`
	BufferPoolMiB int `json:"buffer_pool_mib"`
}

// Layout returns the instances of a topology. installedGiB sizes the buffers.
func Layout(topology string, m *manifests.Manifest, installedGiB int) ([]Instance, error) {
	services := append([]string(nil), m.ControlPlane.Services...)
	if len(services) == 0 {
		return nil, fmt.Errorf("the manifest lists no control-plane services")
	}
	mk := func(i int, name string, svcs []string, n int) Instance {
		g, ist, sst := m.Ports.GaleraPorts(i)
		return Instance{Name: name, Services: svcs, Port: m.Ports.MySQLPort(i), GaleraPort: g, ISTPort: ist, SSTPort: sst,
			BufferPoolMiB: m.MySQL.BufferPoolMiB(installedGiB, n)}
	}
	switch topology {
	case Single:
		sort.Strings(services)
		return []Instance{mk(0, "mysql", services, 1)}, nil
	case Multi:
		out := make([]Instance, len(services))
		for i, s := range services {
			out[i] = mk(i, "mysql-"+s, []string{s}, len(services))
		}
		return out, nil
	default:
		return nil, fmt.Errorf("unknown MySQL topology %q: use single or multi", topology)
	}
}

// ServiceInstance maps each service to its instance.
func ServiceInstance(insts []Instance) map[string]Instance {
	out := map[string]Instance{}
	for _, in := range insts {
		for _, s := range in.Services {
			out[s] = in
		}
	}
	return out
}

// paths of one instance under the driver's directory.
type paths struct {
	dir, data, cnf, sock, pid, errlog, initSQL, grastate string
}

func instancePaths(root string, in Instance) paths {
	d := filepath.Join(root, in.Name)
	return paths{
		dir:      d,
		data:     filepath.Join(d, "data"),
		cnf:      filepath.Join(d, "my.cnf"),
		sock:     filepath.Join(d, "mysqld.sock"),
		pid:      filepath.Join(d, "mysqld.pid"),
		errlog:   filepath.Join(d, "error.log"),
		initSQL:  filepath.Join(d, "init.sql"),
		grastate: filepath.Join(d, "data", "grastate.dat"),
	}
}
