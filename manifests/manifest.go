// Package manifests holds cloudctl's manifest: the components it runs, the
// control-plane services, and every threshold, size, name, port and timeout
// the code would otherwise hard-code.
//
// The default manifest is embedded (default.yaml). An administrator overlays
// a file of their own with Overlay at bootstrap; the effective manifest is
// serialised with Marshal, stored in the cluster database and read back with
// Parse on joining nodes, so that every node decides with the same numbers.
//
// Files are decoded strictly (package internal/strictyaml): unknown keys,
// wrong types and duplicate keys are errors, and every error, including the
// semantic ones from Validate, is reported as FILE:LINE:COL: KEY.PATH: ....
//
// Overlay semantics: mappings merge key by key (so an overlay sets only what
// it changes), scalars and lists replace, and a key given an empty value
// (`key:` or `key: null`) is removed from the result. Role groups are a
// mapping, so an overlay adds groups, replaces a group by name, or removes one.
package manifests

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cloudctl/cloudctl/internal/strictyaml"
	"github.com/cloudctl/cloudctl/roles"
)

//go:embed default.yaml
var defaultYAML string

// DefaultName is the file name errors and sources use for the embedded default.
const DefaultName = "default.yaml"

// SchemaVersion is the manifest version this code reads.
const SchemaVersion = 1

// Manifest is a decoded manifest. Build one with Default, Parse, Load or
// Overlay: the value remembers which file each key came from, for errors.
type Manifest struct {
	Version       int                  `yaml:"version" json:"version"`
	Components    map[string]Component `yaml:"components" json:"components"`
	ControlPlane  ControlPlane         `yaml:"control_plane" json:"control_plane"`
	MySQL         MySQL                `yaml:"mysql" json:"mysql"`
	Storage       Storage              `yaml:"storage" json:"storage"`
	RoleMinimums  RoleMinimums         `yaml:"role_minimums" json:"role_minimums"`
	Ports         Ports                `yaml:"ports" json:"ports"`
	VRRP          VRRP                 `yaml:"vrrp" json:"vrrp"`
	Timeouts      Timeouts             `yaml:"timeouts" json:"timeouts"`
	RoleGroupDefs map[string][]string  `yaml:"role_groups" json:"role_groups"`

	src *source
}

// Component is one Debian component: the packages that ship it and the
// programs and files the code uses, by name.
type Component struct {
	// Version is the upstream series the project is tested with.
	Version string `yaml:"version" json:"version"`
	// Roles are the roles that run this component.
	Roles []string `yaml:"roles" json:"roles"`
	// Packages are the Debian packages that ship it.
	Packages []string `yaml:"packages" json:"packages"`
	// Binaries maps a program name to its absolute path on the host.
	Binaries map[string]string `yaml:"binaries" json:"binaries"`
	// Files maps other named files (libraries, data) to absolute paths.
	Files map[string]string `yaml:"files,omitempty" json:"files,omitempty"`
}

// ControlPlane lists the control-plane services.
type ControlPlane struct {
	// Services each get a MariaDB database of the same name.
	Services []string `yaml:"services" json:"services"`
}

// MySQL holds the MariaDB topology threshold and sizing.
type MySQL struct {
	// MultiThresholdGiB: installed RAM (rounded GiB) at or above which the
	// multi topology (one instance per service) is chosen.
	MultiThresholdGiB int `yaml:"multi_threshold_gib" json:"multi_threshold_gib"`
	// BufferPool sizes the InnoDB buffer pools.
	BufferPool BufferPool `yaml:"buffer_pool" json:"buffer_pool"`
	// MaxConnections per instance.
	MaxConnections int `yaml:"max_connections" json:"max_connections"`
}

// BufferPool sizes InnoDB buffer pools from installed RAM.
type BufferPool struct {
	RAMPercent int `yaml:"ram_percent" json:"ram_percent"`
	MinMiB     int `yaml:"min_mib" json:"min_mib"`
	MaxMiB     int `yaml:"max_mib" json:"max_mib"`
}

// Storage holds the Ceph numbers and pool names.
type Storage struct {
	// MinOSDDiskBytes is the smallest disk eligible for an OSD.
	MinOSDDiskBytes int64 `yaml:"min_osd_disk_bytes" json:"min_osd_disk_bytes"`
	// PoolSizeMax caps the replica count: size = min(storage nodes, PoolSizeMax).
	PoolSizeMax int `yaml:"pool_size_max" json:"pool_size_max"`
	// MonitorsMax is how many storage nodes run a monitor and a manager.
	MonitorsMax int `yaml:"monitors_max" json:"monitors_max"`
	// OSDMemoryTargetMiB is Ceph's osd_memory_target per OSD.
	OSDMemoryTargetMiB int `yaml:"osd_memory_target_mib" json:"osd_memory_target_mib"`
	// Pools maps a purpose (PoolInstances, PoolImages, PoolVolumes or an
	// administrator's own) to a Ceph pool name.
	Pools map[string]string `yaml:"pools" json:"pools"`
	// AdmitLoopDevices names loop devices (/dev/loopN) the probe judges as
	// local disks, so tests can exercise the disk rules (partitions,
	// mounts, signatures, wipe) on real block devices. Empty by default:
	// a loop device is never offered for an OSD.
	AdmitLoopDevices []string `yaml:"admit_loop_devices" json:"admit_loop_devices"`
}

// Pool purposes the code uses.
const (
	PoolInstances = "instances"
	PoolImages    = "images"
	PoolVolumes   = "volumes"
)

// Minimum is what a machine needs for a role. RAM is installed RAM rounded
// to the nearest GiB.
type Minimum struct {
	// Cores: fewer is an error.
	Cores int `yaml:"cores" json:"cores"`
	// RAMGiB: less is an error.
	RAMGiB int `yaml:"ram_gib" json:"ram_gib"`
	// RecommendedRAMGiB: less is a warning.
	RecommendedRAMGiB int `yaml:"recommended_ram_gib" json:"recommended_ram_gib"`
}

// ComputeMinimum adds the KVM rule to the compute minimum.
type ComputeMinimum struct {
	Minimum `yaml:",inline"`
	KVM     KVMRule `yaml:"kvm" json:"kvm"`
}

// StorageMinimum adds the number of eligible disks to the storage minimum.
type StorageMinimum struct {
	Minimum       `yaml:",inline"`
	EligibleDisks int `yaml:"eligible_disks" json:"eligible_disks"`
}

// RoleMinimums holds the per-role minimums.
type RoleMinimums struct {
	Control Minimum        `yaml:"control" json:"control"`
	Compute ComputeMinimum `yaml:"compute" json:"compute"`
	Storage StorageMinimum `yaml:"storage" json:"storage"`
}

// For returns the cores and RAM minimum of a role.
func (r RoleMinimums) For(role roles.Role) (Minimum, bool) {
	switch role {
	case roles.Control:
		return r.Control, true
	case roles.Compute:
		return r.Compute.Minimum, true
	case roles.Storage:
		return r.Storage.Minimum, true
	}
	return Minimum{}, false
}

// KVMRule says what happens when a compute node has no usable KVM.
type KVMRule string

// The KVM rules.
const (
	KVMRequire KVMRule = "require" // refuse the compute role
	KVMWarn    KVMRule = "warn"    // accept it and warn that VMs run emulated
	KVMIgnore  KVMRule = "ignore"  // accept it silently
)

// UnmarshalText accepts require, warn or ignore.
func (k *KVMRule) UnmarshalText(b []byte) error {
	switch r := KVMRule(b); r {
	case KVMRequire, KVMWarn, KVMIgnore:
		*k = r
		return nil
	}
	return fmt.Errorf("unknown KVM rule %q; use require, warn or ignore", string(b))
}

// Ports are the TCP ports the layers listen on.
type Ports struct {
	Cloudd     int `yaml:"cloudd" json:"cloudd"`
	MySQLBase  int `yaml:"mysql_base" json:"mysql_base"`
	GaleraBase int `yaml:"galera_base" json:"galera_base"`
	CephMonV2  int `yaml:"ceph_mon_v2" json:"ceph_mon_v2"`
	CephMonV1  int `yaml:"ceph_mon_v1" json:"ceph_mon_v1"`
	LXD        int `yaml:"lxd" json:"lxd"`
}

// MySQLPort is the port of the MariaDB instance for the i-th service (0 for
// the single instance).
func (p Ports) MySQLPort(i int) int { return p.MySQLBase + i }

// GaleraPorts are the replication, IST and SST ports of the i-th instance.
func (p Ports) GaleraPorts(i int) (replication, ist, sst int) {
	b := p.GaleraBase + 3*i
	return b, b + 1, b + 2
}

// VRRP configures the floating control endpoint.
type VRRP struct {
	RouterID int `yaml:"router_id" json:"router_id"`
}

// Timeouts are the limits the code waits for.
type Timeouts struct {
	JoinTokenTTL Duration            `yaml:"join_token_ttl" json:"join_token_ttl"`
	DaemonReady  Duration            `yaml:"daemon_ready" json:"daemon_ready"`
	StepDefault  Duration            `yaml:"step_default" json:"step_default"`
	Steps        map[string]Duration `yaml:"steps" json:"steps"`
}

// Step returns the limit for a named step, or StepDefault.
func (t Timeouts) Step(name string) time.Duration {
	if d, ok := t.Steps[name]; ok && d > 0 {
		return d.Std()
	}
	return t.StepDefault.Std()
}

// source remembers where the manifest came from: the original documents in
// the order they were applied (the first is the base), and the effective
// node tree.
type source struct {
	docs []*strictyaml.Document
	root *yaml.Node
}

// Default returns a fresh copy of the embedded default manifest.
func Default() (*Manifest, error) {
	m, err := Parse(DefaultName, []byte(defaultYAML))
	if err != nil {
		return nil, fmt.Errorf("embedded default manifest: %w", err)
	}
	return m, nil
}

// Load reads and parses a manifest file (see Parse).
func Load(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes one manifest document strictly; name is used in errors. It
// does not check meaning or completeness (see Validate): an overlay holds only
// the keys it changes. Keys with an empty value are dropped, as in Overlay.
// Errors are a strictyaml.Errors value.
func Parse(name string, data []byte) (*Manifest, error) {
	doc, err := strictyaml.Parse(name, data)
	if doc == nil {
		return nil, err
	}
	if doc.Root.Kind != yaml.MappingNode {
		return nil, strictyaml.Errors{doc.Errorf("", "the manifest is not a mapping; write it as \"key: value\" lines")}
	}
	// Empty values mean "remove this key" (see Overlay): accept them, while
	// still checking that every key is known.
	doc.AllowNull = true
	m := &Manifest{}
	if decErr := doc.Decode(m); decErr != nil || err != nil {
		var all strictyaml.Errors
		for _, e := range []error{err, decErr} {
			var es strictyaml.Errors
			if errors.As(e, &es) {
				all = append(all, es...)
			} else if e != nil {
				return nil, e
			}
		}
		return nil, all.Err()
	}
	m.src = &source{docs: []*strictyaml.Document{doc}, root: merge(nil, doc.Root)}
	return m, nil
}

// decode decodes a tree into a new Manifest.
func decode(name string, root *yaml.Node) (*Manifest, error) {
	m := &Manifest{}
	if err := (&strictyaml.Document{File: name, Root: root}).Decode(m); err != nil {
		return nil, err
	}
	return m, nil
}

// Overlay returns base with overlay applied: mappings (sections, components,
// pools, step timeouts, role groups) merge key by key, scalars and lists
// replace, and keys the overlay gives an empty value are removed. Neither
// input changes. The result remembers both files for error positions;
// Validate it before use.
func Overlay(base, overlay *Manifest) (*Manifest, error) {
	b, err := base.source()
	if err != nil {
		return nil, err
	}
	o, err := overlay.source()
	if err != nil {
		return nil, err
	}
	root := b.root
	for _, d := range o.docs {
		root = merge(root, d.Root)
	}
	m, err := decode(b.docs[0].File, root)
	if err != nil {
		return nil, fmt.Errorf("overlay manifest: %w", err)
	}
	docs := append(append([]*strictyaml.Document{}, b.docs...), o.docs...)
	m.src = &source{docs: docs, root: root}
	return m, nil
}

// Effective returns the default manifest with the file at overlayPath
// applied (none when overlayPath is ""), validated.
func Effective(overlayPath string) (*Manifest, error) {
	m, err := Default()
	if err != nil {
		return nil, err
	}
	if overlayPath != "" {
		o, err := Load(overlayPath)
		if err != nil {
			return nil, err
		}
		if m, err = Overlay(m, o); err != nil {
			return nil, err
		}
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// source returns m's origin, rebuilding it from the values for a manifest
// built in Go rather than parsed.
func (m *Manifest) source() (*source, error) {
	if m == nil {
		return nil, errors.New("manifest: nil manifest")
	}
	if m.src != nil {
		return m.src, nil
	}
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	p, err := Parse("manifest", data)
	if err != nil {
		return nil, fmt.Errorf("manifest: re-read values: %w", err)
	}
	return p.src, nil
}

// Marshal serialises the effective manifest as YAML (keys sorted within
// maps, durations as "1h"), in the form Parse reads back: this is what is
// stored in the cluster database.
func (m *Manifest) Marshal() ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b.Bytes(), nil
}

// Sources lists the files this manifest was built from, base first.
func (m *Manifest) Sources() []string {
	if m.src == nil {
		return nil
	}
	out := make([]string, len(m.src.docs))
	for i, d := range m.src.docs {
		out[i] = d.File
	}
	return out
}

// Source names the file the value at path comes from ("" when unknown).
func (m *Manifest) Source(path string) string {
	if d := m.owner(path); d != nil {
		return d.File
	}
	return ""
}

// owner returns the last document that set the value at path. Mappings
// merge, so a document that holds the enclosing mapping but not the key does
// not own it; lists and scalars replace, so a document holding the list owns
// every item of it.
func (m *Manifest) owner(path string) *strictyaml.Document {
	if m.src == nil {
		return nil
	}
	for i := len(m.src.docs) - 1; i >= 0; i-- {
		d := m.src.docs[i]
		n, found := d.Find(path)
		if found || (n != nil && n.Kind != yaml.MappingNode && n != d.Root) {
			return d
		}
	}
	return nil
}

// find returns the node the last document to mention path holds for it
// (possibly a null that removed it), and whether any document holds it.
func (s *source) find(path string) (*yaml.Node, bool) {
	for i := len(s.docs) - 1; i >= 0; i-- {
		if n, found := s.docs[i].Find(path); found {
			return n, true
		}
	}
	return nil, false
}

// errorf reports a semantic problem at the place the value at path came from.
func (m *Manifest) errorf(path, format string, args ...any) *strictyaml.Error {
	if d := m.owner(path); d != nil {
		return d.Errorf(path, format, args...)
	}
	if m.src != nil && len(m.src.docs) > 0 {
		last := m.src.docs[len(m.src.docs)-1]
		return last.Errorf(path, format, args...)
	}
	return &strictyaml.Error{File: "manifest", Path: path, Message: fmt.Sprintf(format, args...)}
}

// RoleGroups returns the role groups, in the form roles.Parse takes. Use a
// validated manifest: roles.Parse does not check a group's contents, and
// Validate rejects groups that name something other than a role.
func (m *Manifest) RoleGroups() map[string][]roles.Role {
	out := make(map[string][]roles.Role, len(m.RoleGroupDefs))
	for name, rs := range m.RoleGroupDefs {
		g := make([]roles.Role, len(rs))
		for i, r := range rs {
			g[i] = roles.Role(strings.ToLower(strings.TrimSpace(r)))
		}
		out[name] = g
	}
	return out
}

// ParseRoles reads a comma-separated list of roles and role groups
// ("converged", "compute,storage") with this manifest's groups.
func (m *Manifest) ParseRoles(s string) ([]roles.Role, error) {
	return roles.Parse(s, m.RoleGroups())
}

// Binary returns the path of a component's program, e.g. ("mariadb", "mariadbd").
func (m *Manifest) Binary(component, name string) (string, error) {
	return m.componentPath(component, "binary", name, func(c Component) map[string]string { return c.Binaries })
}

// File returns the path of a component's named file, e.g. ("galera", "provider").
func (m *Manifest) File(component, name string) (string, error) {
	return m.componentPath(component, "file", name, func(c Component) map[string]string { return c.Files })
}

func (m *Manifest) componentPath(component, kind, name string, paths func(Component) map[string]string) (string, error) {
	c, ok := m.Components[component]
	if !ok {
		return "", fmt.Errorf("manifest has no component %q", component)
	}
	p, ok := paths(c)[name]
	if !ok || p == "" {
		return "", fmt.Errorf("manifest component %q has no %s %q", component, kind, name)
	}
	return p, nil
}

// BufferPoolMiB sizes each instance's InnoDB buffer pool for a machine with
// installedGiB of RAM running instances MariaDB instances.
func (s MySQL) BufferPoolMiB(installedGiB, instances int) int {
	if instances < 1 {
		instances = 1
	}
	per := installedGiB * 1024 * s.BufferPool.RAMPercent / 100 / instances
	return max(s.BufferPool.MinMiB, min(per, s.BufferPool.MaxMiB))
}

// merge applies the document tree over to the effective tree base (nil for
// none) and returns the result; neither input changes. Mappings merge by
// key, anything else replaces, and a key whose value is null is removed.
func merge(base, over *yaml.Node) *yaml.Node {
	if over.Kind != yaml.MappingNode {
		return over
	}
	out := &yaml.Node{Kind: yaml.MappingNode, Tag: over.Tag, Line: over.Line, Column: over.Column, Style: over.Style}
	if base != nil && base.Kind == yaml.MappingNode {
		out.Tag, out.Line, out.Column, out.Style = base.Tag, base.Line, base.Column, base.Style
		out.Content = append(out.Content, base.Content...)
	}
	for i := 0; i+1 < len(over.Content); i += 2 {
		k, v := over.Content[i], over.Content[i+1]
		at := -1
		for j := 0; j+1 < len(out.Content); j += 2 {
			if out.Content[j].Value == k.Value {
				at = j
			}
		}
		switch {
		case isNull(v):
			if at >= 0 {
				out.Content = append(out.Content[:at:at], out.Content[at+2:]...)
			}
		case at >= 0:
			out.Content[at+1] = merge(out.Content[at+1], v)
		default:
			out.Content = append(out.Content, k, merge(nil, v))
		}
	}
	return out
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}
