package manifests

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/internal/strictyaml"
	"github.com/cloudctl/cloudctl/roles"
)

// Required names the components, programs and files the code looks up by
// name; Validate reports any that the manifest lacks.
var required = []struct{ component, binary, file string }{
	{component: "mariadb", binary: "mariadbd"},
	{component: "mariadb", binary: "mariadb-install-db"},
	{component: "galera", file: "provider"},
	{component: "ceph", binary: "ceph-mon"},
	{component: "ceph", binary: "ceph-mgr"},
	{component: "ceph", binary: "ceph-osd"},
	{component: "ceph", binary: "ceph"},
	{component: "lxd", binary: "lxd"},
	{component: "keepalived", binary: "keepalived"},
}

var (
	componentName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	debianPackage = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	serviceName   = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	stepName      = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	groupName     = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	poolName      = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
)

// Limits Validate enforces.
const (
	minOSDDiskBytes = 1 << 30 // BlueStore needs about 1 GiB before it can hold any data
	maxJoinTokenTTL = 7 * 24 * time.Hour
	minJoinTokenTTL = time.Minute
)

// Validate checks the meaning of an effective manifest: every required
// setting present, numbers in range, names well formed and known, ports
// unique, role groups sound. Problems are reported as a strictyaml.Errors
// value, each at the file, line and column the value came from.
func (m *Manifest) Validate() error {
	v := validator{m: m}
	v.version()
	v.components()
	v.controlPlane()
	v.mysql()
	v.storage()
	v.roleMinimums()
	v.ports()
	v.timeouts()
	v.roleGroups()
	return v.errs.Err()
}

type validator struct {
	m    *Manifest
	errs strictyaml.Errors
}

func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, v.m.errorf(path, format, args...))
}

// between checks lo <= n <= hi; what explains the unit or purpose.
func (v *validator) between(path string, n, lo, hi int64, what string) {
	if n < lo || n > hi {
		if v.missing(path) {
			v.fail(path, "missing; set %s between %d and %d", what, lo, hi)
			return
		}
		v.fail(path, "%d is out of range; set %s between %d and %d", n, what, lo, hi)
	}
}

// missing reports whether no document sets path (or the last one to
// mention it removed it with an empty value).
func (v *validator) missing(path string) bool {
	if v.m.src == nil {
		return false
	}
	n, found := v.m.src.find(path)
	return !found || isNull(n)
}

func (v *validator) version() {
	if v.m.Version != SchemaVersion {
		v.fail("version", "unsupported manifest version %d; this cloudctl reads version %d", v.m.Version, SchemaVersion)
	}
}

func (v *validator) components() {
	for _, name := range sortedKeys(v.m.Components) {
		c := v.m.Components[name]
		p := "components." + name
		if !componentName.MatchString(name) {
			v.fail(p, "component name %q is not valid; use lower-case letters, digits and \"-\"", name)
		}
		if len(c.Packages) == 0 {
			v.fail(p+".packages", "no Debian package given; list the packages that ship %s", name)
		}
		for i, pkg := range c.Packages {
			if !debianPackage.MatchString(pkg) {
				v.fail(fmt.Sprintf("%s.packages[%d]", p, i), "%q is not a Debian package name; use lower-case letters, digits, \"+\", \"-\" and \".\"", pkg)
			}
		}
		for i, r := range c.Roles {
			if !roles.Valid(roles.Role(r)) {
				v.fail(fmt.Sprintf("%s.roles[%d]", p, i), "unknown role %q%s", r, roleHint(r))
			}
		}
		for _, kind := range []struct {
			key   string
			paths map[string]string
		}{{"binaries", c.Binaries}, {"files", c.Files}} {
			for _, bn := range sortedKeys(kind.paths) {
				fp := kind.paths[bn]
				if !path.IsAbs(fp) || path.Clean(fp) != fp {
					v.fail(p+"."+kind.key+"."+bn, "%q is not a clean absolute path; write the full path, such as /usr/bin/%s", fp, bn)
				}
			}
		}
	}
	for _, r := range required {
		c, ok := v.m.Components[r.component]
		switch {
		case !ok:
			v.fail("components."+r.component, "component %s is missing; cloudctl needs it, restore it from the default manifest", r.component)
		case r.binary != "" && c.Binaries[r.binary] == "":
			v.fail("components."+r.component+".binaries."+r.binary, "the path of %s is missing; set it, e.g. as in the default manifest", r.binary)
		case r.file != "" && c.Files[r.file] == "":
			v.fail("components."+r.component+".files."+r.file, "the path of the %s %s file is missing; set it, e.g. as in the default manifest", r.component, r.file)
		}
	}
}

func (v *validator) controlPlane() {
	s := v.m.ControlPlane.Services
	if len(s) == 0 {
		v.fail("control_plane.services", "no control-plane service listed; list at least one")
	}
	seen := map[string]int{}
	for i, name := range s {
		p := fmt.Sprintf("control_plane.services[%d]", i)
		if !serviceName.MatchString(name) {
			v.fail(p, "service name %q is not a valid database name; use lower-case letters, digits and \"_\", starting with a letter", name)
		}
		if j, dup := seen[name]; dup {
			v.fail(p, "service %q is listed twice (also item %d); remove one", name, j)
		}
		seen[name] = i
	}
}

func (v *validator) mysql() {
	my := v.m.MySQL
	v.between("mysql.multi_threshold_gib", int64(my.MultiThresholdGiB), 1, 65536, "the RAM threshold in GiB")
	v.between("mysql.buffer_pool.ram_percent", int64(my.BufferPool.RAMPercent), 1, 90, "the share of RAM in percent")
	v.between("mysql.buffer_pool.min_mib", int64(my.BufferPool.MinMiB), 8, 1<<20, "the smallest buffer pool in MiB")
	v.between("mysql.buffer_pool.max_mib", int64(my.BufferPool.MaxMiB), 8, 1<<20, "the largest buffer pool in MiB")
	if my.BufferPool.MinMiB > 0 && my.BufferPool.MaxMiB > 0 && my.BufferPool.MinMiB > my.BufferPool.MaxMiB {
		v.fail("mysql.buffer_pool.max_mib", "max_mib %d is below min_mib %d; raise max_mib or lower min_mib", my.BufferPool.MaxMiB, my.BufferPool.MinMiB)
	}
	v.between("mysql.max_connections", int64(my.MaxConnections), 10, 100000, "the connection limit")
}

var loopDevice = regexp.MustCompile(`^/dev/loop[0-9]+$`)

func (v *validator) storage() {
	st := v.m.Storage
	if st.MinOSDDiskBytes < minOSDDiskBytes {
		v.fail("storage.min_osd_disk_bytes", "%d bytes is too small for an OSD; set at least %d (1 GiB)", st.MinOSDDiskBytes, int64(minOSDDiskBytes))
	}
	v.between("storage.pool_size_max", int64(st.PoolSizeMax), 1, 10, "the largest replica count")
	if m := st.MonitorsMax; m != 1 && m != 3 && m != 5 {
		v.fail("storage.monitors_max", "%d monitors cannot form a useful quorum; use 1, 3 or 5", m)
	}
	v.between("storage.osd_memory_target_mib", int64(st.OSDMemoryTargetMiB), 512, 1<<20, "the OSD memory target in MiB")
	for i, d := range st.AdmitLoopDevices {
		if !loopDevice.MatchString(d) {
			v.fail(fmt.Sprintf("storage.admit_loop_devices[%d]", i), "%q is not a loop device; write /dev/loopN (this setting is for tests: it lets the probe judge a loop device as a disk)", d)
		}
	}
	for _, purpose := range []string{PoolInstances, PoolImages, PoolVolumes} {
		if st.Pools[purpose] == "" {
			v.fail("storage.pools."+purpose, "no pool name for %s; set one, e.g. %q", purpose, purpose)
		}
	}
	byName := map[string]string{}
	for _, purpose := range sortedKeys(st.Pools) {
		name := st.Pools[purpose]
		p := "storage.pools." + purpose
		if name == "" {
			continue
		}
		if !poolName.MatchString(name) || len(name) > 128 {
			v.fail(p, "%q is not a valid Ceph pool name; use letters, digits, \"_\", \"-\" and \".\", not starting with \".\" or \"-\"", name)
		}
		other, dup := byName[name]
		if !dup {
			byName[name] = purpose
			continue
		}
		// Report the clash at the entry set last (the one an overlay changed).
		here, there := purpose, other
		if v.rank("storage.pools."+other) > v.rank(p) {
			here, there = other, purpose
		}
		v.fail("storage.pools."+here, "pool %q is also used for %s; give each purpose its own pool", name, there)
	}
}

func (v *validator) roleMinimums() {
	rm := v.m.RoleMinimums
	for _, r := range []struct {
		role string
		min  Minimum
	}{{"control", rm.Control}, {"compute", rm.Compute.Minimum}, {"storage", rm.Storage.Minimum}} {
		p := "role_minimums." + r.role
		v.between(p+".cores", int64(r.min.Cores), 1, 4096, "the number of cores")
		v.between(p+".ram_gib", int64(r.min.RAMGiB), 1, 65536, "the RAM in GiB")
		if r.min.RecommendedRAMGiB < r.min.RAMGiB {
			v.fail(p+".recommended_ram_gib", "%d GiB is below the minimum of %d GiB; recommend at least ram_gib", r.min.RecommendedRAMGiB, r.min.RAMGiB)
		}
	}
	if rm.Compute.KVM == "" {
		v.fail("role_minimums.compute.kvm", "missing; set require, warn or ignore")
	}
	v.between("role_minimums.storage.eligible_disks", int64(rm.Storage.EligibleDisks), 1, 1024, "the number of disks")
}

type portUse struct {
	path   string
	lo, hi int
}

func (v *validator) ports() {
	pt := v.m.Ports
	n := max(len(v.m.ControlPlane.Services), 1)
	uses := []portUse{
		{"ports.cloudd", pt.Cloudd, pt.Cloudd},
		{"ports.mysql_base", pt.MySQLBase, pt.MySQLPort(n - 1)},
		{"ports.galera_base", pt.GaleraBase, pt.GaleraBase + 3*n - 1},
		{"ports.ceph_mon_v2", pt.CephMonV2, pt.CephMonV2},
		{"ports.ceph_mon_v1", pt.CephMonV1, pt.CephMonV1},
		{"ports.lxd", pt.LXD, pt.LXD},
	}
	var ok []portUse
	for _, u := range uses {
		switch {
		case v.missing(u.path):
			v.fail(u.path, "missing; set a TCP port between 1 and 65535")
		case u.lo < 1 || u.hi > 65535:
			if u.hi != u.lo {
				v.fail(u.path, "%d is out of range: the ports %d-%d for %d services must lie between 1 and 65535; choose a lower port", u.lo, u.lo, u.hi, n)
			} else {
				v.fail(u.path, "%d is out of range; set a TCP port between 1 and 65535", u.lo)
			}
		default:
			ok = append(ok, u)
		}
	}
	// Two ports (or ranges) that overlap are reported at the one set last,
	// which is the one an overlay changed.
	for i := 0; i < len(ok); i++ {
		for j := i + 1; j < len(ok); j++ {
			a, b := ok[i], ok[j]
			if a.lo > b.hi || b.lo > a.hi {
				continue
			}
			if v.rank(a.path) > v.rank(b.path) {
				a, b = b, a
			}
			v.fail(b.path, "%s clashes with %s (%s); choose a port nobody else uses", portText(b), a.path, portText(a))
		}
	}
	v.between("vrrp.router_id", int64(v.m.VRRP.RouterID), 1, 255, "the VRRP router ID")
}

func portText(u portUse) string {
	if u.lo == u.hi {
		return fmt.Sprintf("port %d", u.lo)
	}
	return fmt.Sprintf("ports %d-%d", u.lo, u.hi)
}

// rank orders paths by the document that set them (later documents rank higher).
func (v *validator) rank(p string) int {
	d := v.m.owner(p)
	if d == nil || v.m.src == nil {
		return -1
	}
	for i, x := range v.m.src.docs {
		if x == d {
			return i
		}
	}
	return -1
}

func (v *validator) timeouts() {
	t := v.m.Timeouts
	if ttl := t.JoinTokenTTL.Std(); ttl < minJoinTokenTTL || ttl > maxJoinTokenTTL {
		if v.missing("timeouts.join_token_ttl") {
			v.fail("timeouts.join_token_ttl", "missing; set a join token lifetime between 1m and 168h, such as \"1h\"")
		} else {
			v.fail("timeouts.join_token_ttl", "%s is out of range; set a join token lifetime between 1m and 168h (tokens must expire)", t.JoinTokenTTL)
		}
	}
	v.positive("timeouts.daemon_ready", t.DaemonReady)
	v.positive("timeouts.step_default", t.StepDefault)
	for _, name := range sortedKeys(t.Steps) {
		p := "timeouts.steps." + name
		if !stepName.MatchString(name) {
			v.fail(p, "step name %q is not valid; use lower-case letters, digits and \"_\"", name)
		}
		v.positive(p, t.Steps[name])
	}
}

func (v *validator) positive(p string, d Duration) {
	switch {
	case d > 0:
	case v.missing(p):
		v.fail(p, "missing; set a positive duration such as \"30s\" or \"5m\"")
	default:
		v.fail(p, "%s is not a usable limit; set a positive duration such as \"30s\" or \"5m\"", d)
	}
}

func (v *validator) roleGroups() {
	for _, name := range sortedKeys(v.m.RoleGroupDefs) {
		rs := v.m.RoleGroupDefs[name]
		p := "role_groups." + name
		switch {
		case roles.Valid(roles.Role(name)):
			v.fail(p, "group %q has the name of a role, so --role %s would be ambiguous; rename the group", name, name)
		case !groupName.MatchString(name):
			v.fail(p, "group name %q is not valid; use lower-case letters, digits and \"-\", starting with a letter", name)
		}
		if len(rs) == 0 {
			v.fail(p, "group %q has no roles; list at least one role, or remove the group with an empty value in an overlay", name)
		}
		seen := map[string]bool{}
		for i, r := range rs {
			ip := fmt.Sprintf("%s[%d]", p, i)
			switch {
			case seen[r]:
				v.fail(ip, "role %q is listed twice in group %q; remove one", r, name)
			case roles.Valid(roles.Role(r)):
			case v.m.RoleGroupDefs[r] != nil:
				v.fail(ip, "%q is a role group, and groups cannot contain groups; list its roles (%s) instead", r, strings.Join(v.m.RoleGroupDefs[r], ", "))
			default:
				v.fail(ip, "unknown role %q%s", r, roleHint(r))
			}
			seen[r] = true
		}
	}
}

// roleHint finishes an "unknown role" message with what to do.
func roleHint(r string) string {
	best, bestD := "", 1<<30
	for _, k := range roles.All {
		if d := distance(strings.ToLower(r), string(k)); d < bestD {
			best, bestD = string(k), d
		}
	}
	if bestD <= 2 {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return "; use control, compute or storage"
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
