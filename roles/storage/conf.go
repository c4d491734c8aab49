package storage

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// Ceph's ports: a monitor listens on the msgr2 and the legacy port; OSDs
// and managers bind in a range.
const (
	MonPortV2    = 3300
	MonPortV1    = 6789
	DaemonPortLo = 6800
	DaemonPortHi = 7300
)

// layout is where the driver keeps Ceph's files below its directory.
type layout struct{ dir string }

func (l layout) conf() string            { return filepath.Join(l.dir, "ceph.conf") }
func (l layout) keys() string            { return filepath.Join(l.dir, "keys") }
func (l layout) adminKeyring() string    { return filepath.Join(l.keys(), "ceph.client.admin.keyring") }
func (l layout) monKeyring() string      { return filepath.Join(l.keys(), "ceph.mon.keyring") }
func (l layout) run() string             { return filepath.Join(l.dir, "run") }
func (l layout) logs() string            { return filepath.Join(l.dir, "log") }
func (l layout) monData(n string) string { return filepath.Join(l.dir, "mon", "ceph-"+n) }

// daemonDirs hold the monitor's, the manager's and the OSDs' data, each
// with its daemon's keyring.
func (l layout) daemonDirs() []string {
	return []string{filepath.Join(l.dir, "mon"), filepath.Join(l.dir, "mgr"), filepath.Join(l.dir, "osd")}
}
func (l layout) mgrData(n string) string { return filepath.Join(l.dir, "mgr", "ceph-"+n) }
func (l layout) osdData(id int) string   { return filepath.Join(l.dir, "osd", "ceph-"+strconv.Itoa(id)) }

// pidFile is where a daemon ("mon.node1", "osd.3") writes its pid.
func (l layout) pidFile(entity string) string {
	return filepath.Join(l.run(), "ceph-"+entity+".pid")
}

// monAddr is a monitor's address vector, as monmaptool and mon_host take it.
func monAddr(ip string) string {
	return fmt.Sprintf("[v2:%s,v1:%s]", net.JoinHostPort(ip, strconv.Itoa(MonPortV2)), net.JoinHostPort(ip, strconv.Itoa(MonPortV1)))
}

// mgrDisabledModules are the manager modules never loaded: those neither
// always on in Pacific nor used by cloudctl.
var mgrDisabledModules = []string{"alerts", "diskprediction_local", "influx", "insights", "k8sevents", "localpool", "mds_autoscaler",
	"mirroring", "nfs", "osd_perf_query", "osd_support", "prometheus", "restful", "rook", "selftest", "snap_schedule", "stats",
	"telegraf", "test_orchestrator", "zabbix", "dashboard", "cephadm"}

// confInput is what ceph.conf is rendered from.
type confInput struct {
	FSID string
	Node string
	IP   string
	// MonIPs are the monitors' addresses, in monitor order.
	MonIPs          []string
	OSDMemoryTarget int64
	Dir             layout
}

// renderConf writes one node's ceph.conf. Secrets are never in it: each
// daemon reads its own keyring file (0600). admin_socket and pid_file are
// set per daemon section only, so that client commands do not collide.
func renderConf(in confInput) string {
	var b strings.Builder
	mons := make([]string, 0, len(in.MonIPs))
	for _, ip := range in.MonIPs {
		mons = append(mons, monAddr(ip))
	}
	l := in.Dir
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by cloudd (storage role); changes are overwritten.")
	w("[global]")
	w("fsid = %s", in.FSID)
	w("mon_host = %s", strings.Join(mons, ","))
	w("public_addr = %s", in.IP)
	w("auth_cluster_required = cephx")
	w("auth_service_required = cephx")
	w("auth_client_required = cephx")
	w("auth_allow_insecure_global_id_reclaim = false")
	// Every msgr2 connection encrypted (AES-GCM after cephx), between the
	// daemons and from clients: the default mode for data (crc) only
	// checksums it. Legacy msgr1 connections (old kernel clients) stay as
	// they are: they cannot be encrypted.
	for _, k := range []string{"ms_cluster_mode", "ms_service_mode", "ms_client_mode", "ms_mon_cluster_mode", "ms_mon_service_mode", "ms_mon_client_mode"} {
		w("%s = secure", k)
	}
	w("mon_data_avail_warn = 5")
	// One host means one copy by design; status says HA no instead.
	w("mon_warn_on_pool_no_redundancy = false")
	w("mon_allow_pool_size_one = true")
	w("osd_pool_default_size = 1")
	w("osd_pool_default_min_size = 1")
	w("osd_pool_default_pg_autoscale_mode = off")
	w("ms_bind_port_min = %d", DaemonPortLo)
	w("ms_bind_port_max = %d", DaemonPortHi)
	// The manager loads every Python module it finds at start; on a small
	// node that takes minutes of CPU. Load the always-on ones and iostat.
	w("mgr_initial_modules = iostat")
	w("mgr_disabled_modules = %s", strings.Join(mgrDisabledModules, " "))
	// Daemons report their placement groups to the manager every 5 s by
	// default, so a group that finished peering showed as peering for up
	// to 5 s more (status and HEALTH_OK wait on the manager's view).
	w("mgr_stats_period = 1")
	w("run_dir = %s", l.run())
	w("log_file = %s", filepath.Join(l.logs(), "$cluster-$name.log"))
	// The monitors' cluster and audit logs went to the host's
	// /var/log/ceph, shared by every cluster on the machine and never
	// trimmed (the audit log holds every status poll). They stay in the
	// monitors' store (`ceph log last`), which Ceph trims itself.
	w("mon_cluster_log_to_file = false")
	w("")
	w("[mon]")
	w("mon_data = %s", filepath.Join(l.dir, "mon", "$cluster-$id"))
	w("keyring = $mon_data/keyring")
	daemonFiles(w, l)
	w("")
	w("[mgr]")
	w("mgr_data = %s", filepath.Join(l.dir, "mgr", "$cluster-$id"))
	w("keyring = $mgr_data/keyring")
	daemonFiles(w, l)
	w("")
	w("[osd]")
	w("osd_data = %s", filepath.Join(l.dir, "osd", "$cluster-$id"))
	w("keyring = $osd_data/keyring")
	w("osd_objectstore = bluestore")
	w("osd_memory_target = %d", in.OSDMemoryTarget)
	w("crush_location = root=default host=%s", in.Node)
	daemonFiles(w, l)
	w("")
	w("[client.admin]")
	w("keyring = %s", l.adminKeyring())
	return b.String()
}

func daemonFiles(w func(string, ...any), l layout) {
	w("admin_socket = %s", filepath.Join(l.run(), "$cluster-$name.asok"))
	w("pid_file = %s", filepath.Join(l.run(), "$cluster-$name.pid"))
}

// keyring renders a keyring file for one entity.
func keyring(entity, key string, caps map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]\n\tkey = %s\n", entity, key)
	for _, k := range []string{"mon", "mgr", "osd", "mds"} {
		if c, ok := caps[k]; ok {
			fmt.Fprintf(&b, "\tcaps %s = %q\n", k, c)
		}
	}
	return b.String()
}

var adminCaps = map[string]string{"mon": "allow *", "mgr": "allow *", "osd": "allow *", "mds": "allow *"}
