package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
)

// Facts is what a plan is decided from and validated against: the hardware
// facts of the machine (hwprobe), and the network view of the process that
// runs cloudctl (which, in a network namespace, is the namespace's own).
type Facts struct {
	// Hardware holds memory, CPU, KVM verdict, disks with their OSD
	// eligibility, NICs, decisions and findings.
	Hardware hwprobe.Facts
	// Source names where the hardware facts come from ("this machine",
	// "snapshot x.tar.gz").
	Source string
	// Hostname is the default node name.
	Hostname string
	// Addresses are this machine's non-loopback, non-link-local addresses.
	Addresses []HostAddress
	// DefaultAddress is the address on the default route ("" when none).
	DefaultAddress string
	// DiskAliases maps other paths of a disk (/dev/disk/by-id/...) to its
	// /dev/NAME path.
	DiskAliases map[string]string
	// Policy holds the thresholds the hardware facts were decided with.
	Policy hwprobe.Policy
	// PoolSizeMax caps the Ceph pool size (manifest storage.pool_size_max).
	PoolSizeMax int
	// RBDAbsent: this (live) machine's kernel has no rbd module
	// (/sys/bus/rbd missing), so LXD's Ceph volumes cannot be used here.
	// False when unknown (a snapshot).
	RBDAbsent bool
}

// HostAddress is one address of an interface of this machine.
type HostAddress struct {
	Interface string
	Prefix    netip.Prefix
}

// IP is the address without its prefix length.
func (h HostAddress) IP() string { return h.Prefix.Addr().String() }

// FactsSource reads the facts a plan is made from. LiveFacts reads this
// machine (or a ghw snapshot); tests use fixed facts.
type FactsSource interface {
	Facts(ctx context.Context) (Facts, error)
}

// FixedFacts is a FactsSource that returns the same facts every time.
type FixedFacts Facts

// Facts implements FactsSource.
func (f FixedFacts) Facts(context.Context) (Facts, error) { return Facts(f), nil }

// LiveFacts probes this machine's hardware, or a ghw snapshot's when
// Snapshot is set. Network addresses always come from this machine: a
// snapshot has none.
type LiveFacts struct {
	// Snapshot is a ghw snapshot (.tar.gz or directory); "" for this machine.
	Snapshot string
	// Manifest supplies the thresholds; nil means the default manifest.
	Manifest *manifests.Manifest
}

// Facts implements FactsSource.
func (l LiveFacts) Facts(ctx context.Context) (Facts, error) {
	m := l.Manifest
	if m == nil {
		var err error
		if m, err = manifests.Default(); err != nil {
			return Facts{}, err
		}
	}
	pol := PolicyFromManifest(m)
	var src hwprobe.Source
	if l.Snapshot != "" {
		s, err := hwprobe.OpenSnapshot(l.Snapshot)
		if err != nil {
			return Facts{}, err
		}
		defer s.Close()
		src = s
	} else {
		mc, err := hwprobe.OpenMachine()
		if err != nil {
			return Facts{}, err
		}
		defer mc.Close()
		src = mc
	}
	hw, err := hwprobe.Probe(ctx, src, pol, roles.All)
	if err != nil {
		return Facts{}, fmt.Errorf("probe %s: %w", src.Describe(), err)
	}
	f := Facts{Hardware: *hw, Source: src.Describe(), Hostname: DefaultName(), Policy: pol, PoolSizeMax: m.Storage.PoolSizeMax}
	if f.Addresses, err = LocalAddresses(); err != nil {
		return Facts{}, err
	}
	f.DefaultAddress, _ = DefaultAddress()
	if l.Snapshot == "" {
		f.DiskAliases = diskAliases("/dev/disk")
		if _, err := os.Stat("/sys/bus/rbd"); errors.Is(err, fs.ErrNotExist) {
			f.RBDAbsent = true
		}
	}
	return f, nil
}

// PolicyFromManifest is the manifest's probe policy without the storage
// disk minimum: a plan checks the disks it chose itself.
func PolicyFromManifest(m *manifests.Manifest) hwprobe.Policy {
	p := m.ProbePolicy()
	st := p.Roles[roles.Storage]
	st.MinOSDDisks = 0
	p.Roles[roles.Storage] = st
	return p
}

// LocalAddresses lists the addresses of this machine's (this network
// namespace's) interfaces, without loopback and link-local ones.
func LocalAddresses() ([]HostAddress, error) {
	ifcs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	var out []HostAddress
	for _, ifc := range ifcs {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			p, err := netip.ParsePrefix(ipn.String())
			if err != nil {
				continue
			}
			ip := p.Addr()
			if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
				continue
			}
			out = append(out, HostAddress{Interface: ifc.Name, Prefix: p})
		}
	}
	return out, nil
}

// diskAliases maps the links under dir (by-id, by-path, ...) to /dev/NAME.
func diskAliases(dir string) map[string]string {
	out := map[string]string{}
	subs, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, s := range subs {
		links, err := os.ReadDir(filepath.Join(dir, s.Name()))
		if err != nil {
			continue
		}
		for _, l := range links {
			p := filepath.Join(dir, s.Name(), l.Name())
			if target, err := filepath.EvalSymlinks(p); err == nil {
				out[p] = target
			}
		}
	}
	return out
}

// HasAddress reports whether ip is one of this machine's addresses.
func (f Facts) HasAddress(ip netip.Addr) bool {
	for _, a := range f.Addresses {
		if a.Prefix.Addr() == ip.Unmap() {
			return true
		}
	}
	return false
}

// addressList is this machine's addresses for messages.
func (f Facts) addressList() string {
	if len(f.Addresses) == 0 {
		return "none"
	}
	s := make([]string, len(f.Addresses))
	for i, a := range f.Addresses {
		s[i] = a.IP()
	}
	return strings.Join(s, ", ")
}

// Disk finds a disk by its /dev path or one of its aliases.
func (f Facts) Disk(path string) (hwprobe.Disk, bool) {
	if t, ok := f.DiskAliases[path]; ok {
		path = t
	}
	for _, d := range f.Hardware.Disks {
		if d.Path == path || "/dev/"+d.Name == path {
			return d, true
		}
	}
	return hwprobe.Disk{}, false
}

// diskList names the disks of this machine for messages.
func (f Facts) diskList() string {
	if len(f.Hardware.Disks) == 0 {
		return "none"
	}
	s := make([]string, len(f.Hardware.Disks))
	for i, d := range f.Hardware.Disks {
		s[i] = d.Path
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// EligibleDisks are the disks that can hold an OSD as they are.
func (f Facts) EligibleDisks() []hwprobe.Disk {
	var out []hwprobe.Disk
	for _, d := range f.Hardware.Disks {
		if d.Eligible {
			out = append(out, d)
		}
	}
	return out
}

// WipeDisks are the disks that can hold an OSD only after their signature is erased.
func (f Facts) WipeDisks() []hwprobe.Disk {
	var out []hwprobe.Disk
	for _, d := range f.Hardware.Disks {
		if !d.Eligible && d.WipeEligible {
			out = append(out, d)
		}
	}
	return out
}

// poolSize is the Ceph pool size with n storage nodes.
func (f Facts) poolSize(n int) int {
	m := f.PoolSizeMax
	if m <= 0 {
		m = 3
	}
	return min(max(n, 1), m)
}
