package storage

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// Failure domains of the CRUSH rules the pools use.
const (
	DomainOSD  = "osd"
	DomainHost = "host"
)

// CRUSH rule names, one per failure domain.
const (
	RuleOSD  = "cloudctl-osd"
	RuleHost = "cloudctl-host"
)

// DiskSlot is one disk entry of a node's plan, numbered so that two equal
// file-backed entries ("loop:8GiB" twice) stay two OSDs.
type DiskSlot struct {
	Path string
	Slot int
	Wipe bool
}

// Slots numbers a node's disk entries: the n-th occurrence of a path gets slot n.
func Slots(disks []api.DiskChoice) []DiskSlot {
	seen := map[string]int{}
	out := make([]DiskSlot, 0, len(disks))
	for _, d := range disks {
		out = append(out, DiskSlot{Path: d.Path, Slot: seen[d.Path], Wipe: d.Wipe})
		seen[d.Path]++
	}
	return out
}

// MonitorNodes are the nodes that run a monitor and a manager: storage
// nodes oldest first, then control nodes while fewer than max, at most max.
func MonitorNodes(nodes []driver.Node, max int) []string {
	if max <= 0 {
		max = 3
	}
	// A cloud without a storage node runs no Ceph at all: control nodes
	// only fill in monitors for a storage layer that exists.
	anyStorage := false
	for _, n := range nodes {
		anyStorage = anyStorage || n.Has(roles.Storage)
	}
	if !anyStorage {
		return nil
	}
	sorted := append([]driver.Node(nil), nodes...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].JoinedAt.Before(sorted[j].JoinedAt) })
	var out []string
	for _, want := range []roles.Role{roles.Storage, roles.Control} {
		for _, n := range sorted {
			if len(out) >= max {
				return out
			}
			if n.Has(want) && !contains(out, n.Name) && (want == roles.Storage || !n.Has(roles.Storage)) {
				out = append(out, n.Name)
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// PoolShape is what every pool should be for a number of hosts with OSDs.
type PoolShape struct {
	Size    int
	MinSize int
	Domain  string
	Rule    string
}

// ShapeFor is the replication of the pools with hosts hosts holding OSDs:
// size min(hosts, max), min_size 2 from size 3 on, failure domain host from
// three hosts on (OSD below).
func ShapeFor(hosts, max int) PoolShape {
	if max <= 0 {
		max = 3
	}
	size := min(hosts, max)
	if size < 1 {
		size = 1
	}
	s := PoolShape{Size: size, MinSize: 1, Domain: DomainOSD, Rule: RuleOSD}
	if size >= 3 {
		s.MinSize = 2
	}
	if hosts >= 3 {
		s.Domain, s.Rule = DomainHost, RuleHost
	}
	return s
}

// PoolUse is what the guard knows of one pool.
type PoolUse struct {
	Name    string
	Size    int
	Objects int64
	Bytes   int64
}

// GuardRemoval decides whether taking node's OSDs away is safe. hosts are
// the member nodes that hold OSDs now (node among them or not). It returns
// nil when nothing would be lost, and otherwise says what would be.
func GuardRemoval(node string, hosts []string, pools []PoolUse) error {
	if !contains(hosts, node) {
		return nil
	}
	left := len(hosts) - 1
	var lost, below []string
	for _, p := range pools {
		switch {
		case left == 0:
			lost = append(lost, fmt.Sprintf("%s (%d objects, %s)", p.Name, p.Objects, humanBytes(p.Bytes)))
		case left < p.Size:
			below = append(below, fmt.Sprintf("%s (%d copies)", p.Name, p.Size))
		}
	}
	switch {
	case len(lost) > 0:
		return fmt.Errorf("removing %s would lose the last copy of the data in pool(s) %s: %s holds the only OSDs; add another storage node first or use --force to discard the data", node, strings.Join(lost, ", "), node)
	case len(below) > 0:
		return fmt.Errorf("removing %s would leave pool(s) %s below their size: only %d host(s) with OSDs would remain; add a storage node first or use --force to lower the size to %d", node, strings.Join(below, ", "), left, left)
	}
	return nil
}

func humanBytes(b int64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := int64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}
