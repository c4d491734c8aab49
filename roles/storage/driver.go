package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/cephclient"
	"github.com/cloudctl/cloudctl/roles/driver"
	splan "github.com/cloudctl/cloudctl/roles/storage/plan"
	"github.com/cloudctl/cloudctl/supervisor"
)

// Name is the driver's and its status layer's name.
const Name = api.LayerStorage

// Commands runs the one-off Ceph programs (monmaptool, mkfs of a monitor or
// an OSD). Tests of the decisions pass their own.
type Commands = supervisor.Commands

// ExecCommands is the real Commands.
type ExecCommands = supervisor.Exec

// Inspector checks a disk against the probe's OSD rules.
type Inspector func(ctx context.Context, path string, p hwprobe.Policy) (*hwprobe.Disk, error)

// Driver runs this node's part of the Ceph cluster.
type Driver struct {
	// Cmd runs mkfs and monmaptool; Inspect checks disks (hwprobe.InspectDevice).
	Cmd     Commands
	Inspect Inspector

	mu    sync.Mutex // serialises Converge, Guard's drain and Stop
	conns connCache
	// sup is the supervisor of the last round, for Stop.
	sup *supervisor.Supervisor
	// strayChecked holds the services already checked for a stray process
	// left by an earlier cloudd.
	strayChecked map[string]bool
}

// New returns the storage driver; nothing starts until Converge.
func New() *Driver {
	return &Driver{Cmd: ExecCommands{}, Inspect: hwprobe.InspectDevice, strayChecked: map[string]bool{}}
}

var _ driver.Driver = (*Driver)(nil)

// Name implements driver.Driver.
func (d *Driver) Name() string { return Name }

// AppliesTo implements driver.Driver: storage nodes, and control nodes that
// fill in a monitor while there are fewer storage nodes than monitors.
func (d *Driver) AppliesTo(env *driver.Env, n driver.Node) bool {
	return n.Has(roles.Storage) || contains(MonitorNodes(env.Nodes, monitorsMax(env.Manifest)), n.Name)
}

// Schema implements driver.Driver. The third update is the cross-role
// record of Ceph users handed to other roles (package cephclient).
func (d *Driver) Schema() []driver.SchemaUpdate {
	return []driver.SchemaUpdate{schemaV1, schemaV2, cephclient.Schema}
}

// Ports implements driver.Driver.
func (d *Driver) Ports(env *driver.Env, n driver.Node) []driver.Port {
	var out []driver.Port
	if contains(MonitorNodes(env.Nodes, monitorsMax(env.Manifest)), n.Name) {
		out = append(out,
			driver.Port{Number: MonPortV2, Proto: "tcp", Purpose: "Ceph monitor (msgr2)", Peers: true},
			driver.Port{Number: MonPortV1, Proto: "tcp", Purpose: "Ceph monitor (legacy msgr1)", Peers: true})
	}
	if d.AppliesTo(env, n) {
		out = append(out, driver.Port{Number: DaemonPortLo, Proto: "tcp", Purpose: fmt.Sprintf("Ceph OSDs and managers (range %d-%d)", DaemonPortLo, DaemonPortHi), Peers: true})
	}
	return out
}

func monitorsMax(m *manifests.Manifest) int {
	if m == nil || m.Storage.MonitorsMax <= 0 {
		return 3
	}
	return m.Storage.MonitorsMax
}

func poolSizeMax(m *manifests.Manifest) int {
	if m == nil || m.Storage.PoolSizeMax <= 0 {
		return 3
	}
	return m.Storage.PoolSizeMax
}

func (d *Driver) bin(env *driver.Env, name string) string {
	if env.Manifest != nil {
		if p, err := env.Manifest.Binary("ceph", name); err == nil {
			return p
		}
	}
	return name
}

func stepTimeout(env *driver.Env, name string, def time.Duration) time.Duration {
	if env.Manifest != nil {
		if t, ok := env.Manifest.Timeouts.Steps[name]; ok && t > 0 {
			return t.Std()
		}
	}
	return def
}

// errWaiting is a round that cannot go further yet (no quorum, another node
// must act first); the loop tries again soon.
type waitingError struct{ what string }

func (w waitingError) Error() string { return w.what }

// Converge implements driver.Driver.
func (d *Driver) Converge(ctx context.Context, env *driver.Env, step func(driver.Step)) (driver.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if step == nil {
		step = func(driver.Step) {}
	}
	d.sup = env.Sup
	settled, err := d.converge(ctx, env, step)
	var w waitingError
	switch {
	case errors.As(err, &w):
		step(driver.Step{Name: "storage", State: "waiting", Detail: w.what})
		return driver.Result{Again: 2 * time.Second}, nil
	case err != nil:
		return driver.Result{Again: 5 * time.Second}, err
	case !settled:
		return driver.Result{Again: 3 * time.Second}, nil
	}
	return driver.Result{Again: 10 * time.Second}, nil
}

func (d *Driver) converge(ctx context.Context, env *driver.Env, step func(driver.Step)) (bool, error) {
	l := layout{dir: env.Dir}
	for _, dir := range append([]string{l.dir, l.keys(), l.run(), l.logs()}, l.daemonDirs()...) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return false, fmt.Errorf("create %s: %w", dir, err)
		}
	}
	st, err := readState(ctx, env.DB)
	if err != nil {
		return false, err
	}
	local := env.Local.Name
	monNodes := MonitorNodes(env.Nodes, monitorsMax(env.Manifest))
	isMon := contains(monNodes, local)

	// Refuse bad disks before anything starts on this node.
	var newSlots []DiskSlot
	if env.Local.Has(roles.Storage) {
		if newSlots, err = d.checkDisks(ctx, env, st); err != nil {
			step(driver.Step{Name: "check the storage disks", State: "failed", Detail: err.Error()})
			return false, err
		}
	}

	if !st.created() {
		if len(monNodes) == 0 || monNodes[0] != local {
			first := "the first storage node"
			if len(monNodes) > 0 {
				first = monNodes[0]
			}
			return false, waitingError{"waiting for " + first + " to create the Ceph cluster"}
		}
		step(driver.Step{Name: "create the Ceph cluster", State: "running"})
	}
	// The keys are sealed in the cluster database: from here on they are
	// in memory and in this node's 0600 keyrings only.
	key, err := d.secrets(ctx, env, &st)
	if err != nil {
		return false, err
	}
	if _, err := writeFile(l.adminKeyring(), []byte(keyring("client.admin", st.Secrets.AdminKey, adminCaps)), 0o600); err != nil {
		return false, err
	}

	// This node's monitor: made once, recorded, then kept running.
	if isMon {
		pre := st
		if _, ok := st.monitor(local); !ok {
			pre.Monitors = append(append([]monitorRow(nil), st.Monitors...), monitorRow{Node: local, Addr: env.Local.IP})
		}
		if err := d.writeConf(env, l, pre); err != nil {
			return false, err
		}
		if err := d.ensureMonitor(ctx, env, l, &st, step); err != nil {
			return false, err
		}
	}
	if err := d.writeConf(env, l, st); err != nil {
		return false, err
	}
	// Daemons whose data exists start without asking the cluster (a power
	// cut restarts every node at once).
	if isMon {
		if err := d.startDaemon(env, l, "mon", local); err != nil {
			return false, err
		}
		if exists(filepath.Join(l.mgrData(local), "keyring")) {
			if err := d.startDaemon(env, l, "mgr", local); err != nil {
				return false, err
			}
		}
	} else {
		d.stopDaemon(env, "mon", local)
		d.stopDaemon(env, "mgr", local)
		// Once a member removed the monitor (and the manager's key), the
		// store and the keyrings it left here are of no use: a monitor
		// made here again starts from a new store and a new key.
		if _, ok := st.monitor(local); !ok {
			for _, dir := range []string{l.monData(local), l.mgrData(local)} {
				if err := os.RemoveAll(dir); err != nil {
					return false, fmt.Errorf("delete %s of a monitor this node no longer runs: %w", dir, err)
				}
			}
		}
	}
	for _, o := range st.osdsOf(local) {
		// A node that left the storage role but still holds a monitor
		// stops its OSDs: the members purge them once they are down.
		if !env.Local.Has(roles.Storage) {
			d.stopDaemon(env, "osd", strconv.Itoa(o.ID))
			continue
		}
		if exists(filepath.Join(l.osdData(o.ID), doneMarker)) {
			if err := d.startDaemon(env, l, "osd", strconv.Itoa(o.ID)); err != nil {
				return false, err
			}
		}
	}

	settledOK := true
	conn, err := d.conn(ctx, st)
	if err != nil {
		return false, waitingError{"waiting for the Ceph monitors: " + err.Error()}
	}
	stat, err := conn.status(ctx)
	if err != nil {
		d.conns.drop(conn)
		return false, waitingError{"waiting for a Ceph monitor quorum: " + err.Error()}
	}
	if isMon {
		// Every round: a manager key deleted meanwhile (its monitor was
		// removed on a view of the members a moment old, then made again)
		// is made again, and the manager restarted with it.
		had := exists(filepath.Join(l.mgrData(local), "keyring"))
		if !had {
			step(driver.Step{Name: "create the Ceph manager " + local, State: "running"})
		}
		changed, err := d.ensureManagerKey(ctx, conn, l, local)
		if err != nil {
			return false, err
		}
		if changed && had {
			env.Log.Warn("storage: the Ceph manager's key had changed or was gone; restarting the manager with the current one", "node", local)
			d.stopDaemon(env, "mgr", local)
		}
		if err := d.startDaemon(env, l, "mgr", local); err != nil {
			return false, err
		}
		if !had {
			step(driver.Step{Name: "create the Ceph manager " + local, State: "done"})
		}
	}
	if err := d.forgetDeparted(ctx, env, conn, st, monNodes); err != nil {
		env.Log.Warn("storage: cleaning up removed members", "error", err)
	}
	if env.Local.Has(roles.Storage) {
		if err := d.cleanupInterrupted(ctx, env, conn, l, st); err != nil {
			return false, err
		}
		removing, err := d.finishRemovals(ctx, env, conn, l, st, stat)
		if err != nil {
			return false, err
		}
		if removing {
			settledOK = false
		}
		for _, s := range newSlots {
			if err := d.createOSD(ctx, env, conn, l, s, step); err != nil {
				step(driver.Step{Name: "create an OSD on " + s.Path, State: "failed", Detail: err.Error()})
				return false, err
			}
		}
	}
	if st, err = readState(ctx, env.DB); err != nil {
		return false, err
	}
	if err := st.open(key); err != nil {
		return false, err
	}
	if err := d.ensurePools(ctx, env, conn, st); err != nil {
		return false, err
	}
	if err := d.ensureClients(ctx, env, conn, st, key); err != nil {
		return false, err
	}
	return settledOK && stat.Health.Status == "HEALTH_OK", nil
}

// finishRemovals purges this node's OSDs that `storage disk remove` marked
// out, once the data moved off them (every placement group active+clean).
// It reports whether one is still draining.
func (d *Driver) finishRemovals(ctx context.Context, env *driver.Env, conn *cephConn, l layout, st state, stat cephStatus) (bool, error) {
	waiting := false
	fresh := false
	for _, o := range st.osdsOf(env.Local.Name) {
		if o.State != osdRemoving {
			continue
		}
		if !fresh {
			// Judge on statistics from after the OSD was marked out: the
			// ones in stat may predate it and show it empty.
			if err := conn.flushPGStats(ctx); err != nil {
				env.Log.Info("storage: waiting for placement-group statistics before removing an OSD", "osd", o.ID, "why", err)
				return true, nil
			}
			s, err := conn.status(ctx)
			if err != nil {
				return true, nil
			}
			stat, fresh = s, true
		}
		if !stat.allClean() {
			waiting = true
			continue
		}
		if err := conn.safeToDestroy(ctx, o.ID); err != nil {
			env.Log.Info("storage: waiting for the data to move off an OSD being removed", "osd", o.ID, "why", err)
			waiting = true
			continue
		}
		id := strconv.Itoa(o.ID)
		d.stopDaemon(env, "osd", id)
		// purge-actual is what `ceph osd purge` sends once the manager
		// judged it safe; the monitor wants the OSD down.
		_ = conn.mon(ctx, map[string]any{"prefix": "osd down", "ids": []string{id}}, nil, nil)
		if err := conn.mon(ctx, map[string]any{"prefix": "osd purge-actual", "id": o.ID, "yes_i_really_mean_it": true}, nil, nil); err != nil {
			return true, fmt.Errorf("remove osd.%d: %w", o.ID, err)
		}
		if err := os.RemoveAll(l.osdData(o.ID)); err != nil {
			return true, fmt.Errorf("remove osd.%d: %w", o.ID, err)
		}
		if err := setOSDState(ctx, env.DB, o.ID, osdRemoved); err != nil {
			return true, err
		}
		env.Log.Info("storage: removed an OSD after draining it", "osd", o.ID, "disk", o.Path)
	}
	return waiting, nil
}

func (d *Driver) conn(ctx context.Context, st state) (*cephConn, error) {
	if len(st.Monitors) == 0 {
		return nil, errors.New("no monitor recorded yet")
	}
	addrs := make([]string, 0, len(st.Monitors))
	for _, m := range st.Monitors {
		addrs = append(addrs, monAddr(m.Addr))
	}
	if st.Secrets.AdminKey == "" {
		return nil, errors.New("the Ceph admin key is not opened on this node")
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return d.conns.get(cctx, strings.Join(addrs, ","), st.Secrets.AdminKey)
}

func (d *Driver) writeConf(env *driver.Env, l layout, st state) error {
	ips := make([]string, 0, len(st.Monitors))
	for _, m := range st.Monitors {
		ips = append(ips, m.Addr)
	}
	target := int64(1024) << 20
	if env.Manifest != nil && env.Manifest.Storage.OSDMemoryTargetMiB > 0 {
		target = int64(env.Manifest.Storage.OSDMemoryTargetMiB) << 20
	}
	conf := renderConf(confInput{FSID: st.Secrets.FSID, Node: env.Local.Name, IP: env.Local.IP, MonIPs: ips, OSDMemoryTarget: target, Dir: l})
	_, err := writeFile(l.conf(), []byte(conf), 0o644)
	return err
}

// ensureMonitor makes this node's monitor store once: the first monitor
// with a new monmap, later ones from the running cluster's monmap.
func (d *Driver) ensureMonitor(ctx context.Context, env *driver.Env, l layout, st *state, step func(driver.Step)) error {
	local := env.Local.Name
	data := l.monData(local)
	_, recorded := st.monitor(local)
	if exists(filepath.Join(data, doneMarker)) {
		if !recorded {
			if err := recordMonitor(ctx, env.DB, local, env.Local.IP, env.Now()); err != nil {
				return err
			}
			st.Monitors = append(st.Monitors, monitorRow{Node: local, Addr: env.Local.IP, Created: env.Now()})
		}
		return nil
	}
	name := "create the Ceph monitor " + local
	step(driver.Step{Name: name, State: "running"})
	ctx, cancel := context.WithTimeout(ctx, stepTimeout(env, "ceph_mon_start", 2*time.Minute))
	defer cancel()
	if err := os.RemoveAll(data); err != nil {
		return fmt.Errorf("clear %s: %w", data, err)
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", data, err)
	}
	others := 0
	for _, m := range st.Monitors {
		if m.Node != local {
			others++
		}
	}
	monmap := filepath.Join(l.run(), "monmap."+local)
	defer os.Remove(monmap)
	kr := keyring("mon.", st.Secrets.MonKey, map[string]string{"mon": "allow *"})
	if others == 0 {
		// A new cluster: this monitor alone, and the admin key in its store.
		kr += keyring("client.admin", st.Secrets.AdminKey, adminCaps)
		if _, err := d.Cmd.Run(ctx, d.bin(env, "monmaptool"), "--create", "--fsid", st.Secrets.FSID, "--addv", local, monAddr(env.Local.IP), monmap); err != nil {
			return fmt.Errorf("make the first monmap: %w", err)
		}
	} else {
		// Join: the running cluster's monmap; the monitor asks to be added.
		conn, err := d.conn(ctx, *st)
		if err != nil {
			return waitingError{"waiting for the Ceph monitors before adding " + local + ": " + err.Error()}
		}
		var raw []byte
		if err := conn.mon(ctx, map[string]any{"prefix": "mon getmap", "format": "plain"}, nil, &raw); err != nil {
			d.conns.drop(conn)
			return waitingError{"waiting for the monmap: " + err.Error()}
		}
		if _, err := writeFile(monmap, raw, 0o600); err != nil {
			return err
		}
	}
	krPath := filepath.Join(l.keys(), "mkfs-mon."+local+".keyring")
	defer os.Remove(krPath)
	if _, err := writeFile(krPath, []byte(kr), 0o600); err != nil {
		return err
	}
	if _, err := d.Cmd.Run(ctx, d.bin(env, "ceph-mon"), "-c", l.conf(), "--mkfs", "-i", local, "--monmap", monmap, "--keyring", krPath, "--public-addr", env.Local.IP); err != nil {
		return fmt.Errorf("mkfs of the Ceph monitor %s: %w", local, err)
	}
	if _, err := writeFile(filepath.Join(data, doneMarker), []byte(env.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return err
	}
	if !recorded {
		if err := recordMonitor(ctx, env.DB, local, env.Local.IP, env.Now()); err != nil {
			return err
		}
		st.Monitors = append(st.Monitors, monitorRow{Node: local, Addr: env.Local.IP, Created: env.Now()})
	}
	step(driver.Step{Name: name, State: "done"})
	return nil
}

// ensureManagerKey gets (or makes) the manager's key from the monitors and
// writes its keyring; it reports whether the keyring changed.
func (d *Driver) ensureManagerKey(ctx context.Context, conn *cephConn, l layout, node string) (bool, error) {
	var ans []struct {
		Entity string `json:"entity"`
		Key    string `json:"key"`
	}
	err := conn.mon(ctx, map[string]any{"prefix": "auth get-or-create", "entity": "mgr." + node,
		"caps": []string{"mon", "allow profile mgr", "osd", "allow *", "mds", "allow *"}}, nil, &ans)
	if err != nil {
		return false, fmt.Errorf("create the key of the Ceph manager %s: %w", node, err)
	}
	if len(ans) != 1 || !validKey(ans[0].Key) {
		return false, fmt.Errorf("create the key of the Ceph manager %s: unexpected answer", node)
	}
	if err := os.MkdirAll(l.mgrData(node), 0o700); err != nil {
		return false, fmt.Errorf("create %s: %w", l.mgrData(node), err)
	}
	return writeFile(filepath.Join(l.mgrData(node), "keyring"), []byte(keyring("mgr."+node, ans[0].Key, nil)), 0o600)
}

// svcName is the supervisor's name of a Ceph daemon ("ceph-osd.3").
func svcName(kind, id string) string { return "ceph-" + kind + "." + id }

func (d *Driver) startDaemon(env *driver.Env, l layout, kind, id string) error {
	name := svcName(kind, id)
	if _, running := env.Sup.Status(name); running {
		return nil
	}
	if d.strayChecked == nil {
		d.strayChecked = map[string]bool{}
	}
	if !d.strayChecked[name] {
		// A cloudd killed hard leaves its daemons to die on SIGTERM; wait
		// for the old one so the new one does not lose the store lock.
		if found, err := supervisor.StopStray(l.pidFile(kind+"."+id), l.conf(), 30*time.Second); err != nil {
			return fmt.Errorf("stop the stray %s: %w", name, err)
		} else if found {
			env.Log.Info("storage: stopped a stray daemon of an earlier cloudd", "service", name)
		}
		d.strayChecked[name] = true
	}
	return env.Sup.Start(supervisor.Spec{
		Name:    name,
		Path:    d.bin(env, "ceph-"+kind),
		Args:    []string{"-f", "-c", l.conf(), "-i", id},
		LogPath: filepath.Join(l.logs(), name+".out"),
		// Its own log file (log_file in ceph.conf), which it opens for
		// appending: the supervisor bounds it too.
		Logs: []string{filepath.Join(l.logs(), "ceph-"+kind+"."+id+".log")},
	})
}

func (d *Driver) stopDaemon(env *driver.Env, kind, id string) {
	if _, ok := env.Sup.Status(svcName(kind, id)); ok {
		_ = env.Sup.Stop(svcName(kind, id), time.Minute)
	}
}

// Stop implements driver.Driver: it stops every Ceph daemon of this node.
func (d *Driver) Stop(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conns.close()
	if d.sup != nil {
		stopAll(d.sup)
	}
	return nil
}

// stopAll stops the Ceph daemons sup runs.
func stopAll(sup *supervisor.Supervisor) {
	var wg sync.WaitGroup
	for _, n := range sup.Names() {
		if strings.HasPrefix(n, "ceph-") {
			wg.Add(1)
			go func(n string) { defer wg.Done(); _ = sup.Stop(n, time.Minute) }(n)
		}
	}
	wg.Wait()
}

// checkDisks returns the plan entries of this node that have no OSD yet,
// after checking every one of them: one refused disk refuses them all, with
// the probe's reason, before anything is made.
func (d *Driver) checkDisks(ctx context.Context, env *driver.Env, st state) ([]DiskSlot, error) {
	var out []DiskSlot
	var refused []string
	policy := hwprobe.DefaultPolicy()
	if env.Manifest != nil {
		policy = env.Manifest.ProbePolicy()
	}
	have := map[string]bool{}
	for _, o := range st.OSDs {
		if o.Node == env.Local.Name && o.State != osdCreating {
			have[o.Path+"#"+strconv.Itoa(o.Slot)] = true
		}
	}
	for _, s := range Slots(st.disksOf(env.Local)) {
		if have[s.Path+"#"+strconv.Itoa(s.Slot)] {
			continue
		}
		if _, file, err := splan.ParseFileDisk(s.Path); file {
			if err != nil {
				refused = append(refused, err.Error())
				continue
			}
			out = append(out, s)
			continue
		}
		if s.Slot > 0 {
			refused = append(refused, fmt.Sprintf("disk %s: listed twice in the plan of %s", s.Path, env.Local.Name))
			continue
		}
		disk, err := d.Inspect(ctx, s.Path, policy)
		if err != nil {
			refused = append(refused, fmt.Sprintf("disk %s: %v", s.Path, err))
			continue
		}
		switch {
		case disk.Eligible:
		case disk.WipeEligible && s.Wipe:
		case disk.WipeEligible:
			refused = append(refused, fmt.Sprintf("disk %s: %s; give consent to erase it (wipe: true in the preseed, --wipe on the command line)", s.Path, strings.Join(disk.Reasons, "; ")))
			continue
		default:
			refused = append(refused, fmt.Sprintf("disk %s: not eligible for an OSD: %s", s.Path, strings.Join(disk.Reasons, "; ")))
			continue
		}
		out = append(out, s)
	}
	if len(refused) > 0 {
		return nil, fmt.Errorf("storage disks of %s refused, nothing was changed: %s", env.Local.Name, strings.Join(refused, "; "))
	}
	return out, nil
}

// cleanupInterrupted purges the OSDs of this node whose creation did not finish.
func (d *Driver) cleanupInterrupted(ctx context.Context, env *driver.Env, conn *cephConn, l layout, st state) error {
	for _, o := range st.osdsOf(env.Local.Name) {
		if o.State != osdCreating || exists(filepath.Join(l.osdData(o.ID), doneMarker)) {
			continue
		}
		env.Log.Info("storage: removing an OSD whose creation was interrupted", "osd", o.ID)
		d.stopDaemon(env, "osd", strconv.Itoa(o.ID))
		if err := conn.mon(ctx, map[string]any{"prefix": "osd purge-new", "id": o.ID, "yes_i_really_mean_it": true}, nil, nil); err != nil {
			if err := conn.mon(ctx, map[string]any{"prefix": "osd purge-actual", "id": o.ID, "yes_i_really_mean_it": true}, nil, nil); err != nil {
				return fmt.Errorf("remove the unfinished osd.%d: %w", o.ID, err)
			}
		}
		if err := os.RemoveAll(l.osdData(o.ID)); err != nil {
			return fmt.Errorf("remove the unfinished osd.%d: %w", o.ID, err)
		}
		if err := deleteOSD(ctx, env.DB, o.ID); err != nil {
			return err
		}
	}
	// Finished but not yet marked ready.
	for _, o := range st.osdsOf(env.Local.Name) {
		if o.State == osdCreating && exists(filepath.Join(l.osdData(o.ID), doneMarker)) {
			if err := setOSDState(ctx, env.DB, o.ID, osdReady); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *Driver) createOSD(ctx context.Context, env *driver.Env, conn *cephConn, l layout, s DiskSlot, step func(driver.Step)) error {
	name := "create an OSD on " + s.Path
	step(driver.Step{Name: name, State: "running"})
	ctx, cancel := context.WithTimeout(ctx, stepTimeout(env, "ceph_osd_create", 5*time.Minute))
	defer cancel()
	size, file, _ := splan.ParseFileDisk(s.Path)
	uuid, err := NewUUID()
	if err != nil {
		return err
	}
	key, err := NewKey(env.Now())
	if err != nil {
		return err
	}
	secret, _ := json.Marshal(map[string]string{"cephx_secret": key})
	var ans struct {
		OSDID *int `json:"osdid"`
	}
	if err := conn.mon(ctx, map[string]any{"prefix": "osd new", "uuid": uuid}, secret, &ans); err != nil {
		return fmt.Errorf("register a new OSD: %w", err)
	}
	if ans.OSDID == nil {
		return errors.New("register a new OSD: the monitor returned no id")
	}
	id := *ans.OSDID
	row := osdRow{ID: id, Node: env.Local.Name, Path: s.Path, Slot: s.Slot, UUID: uuid, FileBacked: file, SizeBytes: size, State: osdCreating}
	if err := recordOSD(ctx, env.DB, row, env.Now()); err != nil {
		return err
	}
	dir := l.osdData(id)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if _, err := writeFile(filepath.Join(dir, "keyring"), []byte(keyring("osd."+strconv.Itoa(id), key, nil)), 0o600); err != nil {
		return err
	}
	block := filepath.Join(dir, "block")
	if file {
		f, err := os.OpenFile(block, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("create the OSD file %s: %w", block, err)
		}
		err = f.Truncate(size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("size the OSD file %s: %w", block, err)
		}
	} else {
		if s.Wipe {
			if err := wipeSignatures(s.Path); err != nil {
				return err
			}
		}
		if err := os.Symlink(s.Path, block); err != nil {
			return fmt.Errorf("link %s to %s: %w", block, s.Path, err)
		}
	}
	if _, err := d.Cmd.Run(ctx, d.bin(env, "ceph-osd"), "-c", l.conf(), "--mkfs", "-i", strconv.Itoa(id), "--osd-uuid", uuid); err != nil {
		return fmt.Errorf("mkfs of osd.%d on %s: %w", id, s.Path, err)
	}
	if _, err := writeFile(filepath.Join(dir, doneMarker), []byte(s.Path+"\n"), 0o600); err != nil {
		return err
	}
	if err := setOSDState(ctx, env.DB, id, osdReady); err != nil {
		return err
	}
	if err := d.startDaemon(env, l, "osd", strconv.Itoa(id)); err != nil {
		return err
	}
	detail := fmt.Sprintf("osd.%d", id)
	if file {
		detail += " (" + splan.FileBackedNote + ")"
	}
	step(driver.Step{Name: name, State: "done", Detail: detail})
	return nil
}

// ensurePools creates the CRUSH rules and the manifest's pools, and gives
// every pool the shape the hosts with OSDs allow.
func (d *Driver) ensurePools(ctx context.Context, env *driver.Env, conn *cephConn, st state) error {
	hosts := st.hostsWithOSDs(env)
	if len(hosts) == 0 {
		return nil
	}
	shape := ShapeFor(len(hosts), poolSizeMax(env.Manifest))
	for _, r := range []struct{ name, typ string }{{RuleOSD, DomainOSD}, {RuleHost, DomainHost}} {
		if err := conn.mon(ctx, map[string]any{"prefix": "osd crush rule create-replicated", "name": r.name, "root": "default", "type": r.typ}, nil, nil); err != nil {
			return fmt.Errorf("create the CRUSH rule %s: %w", r.name, err)
		}
	}
	pools, err := conn.pools(ctx)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, p := range pools {
		have[p.Name] = true
	}
	if env.Manifest != nil {
		for _, purpose := range sortedKeys(env.Manifest.Storage.Pools) {
			name := env.Manifest.Storage.Pools[purpose]
			if name == "" || have[name] {
				continue
			}
			if err := conn.mon(ctx, map[string]any{"prefix": "osd pool create", "pool": name, "pg_num": 32, "pgp_num": 32, "rule": shape.Rule}, nil, nil); err != nil {
				return fmt.Errorf("create the pool %s: %w", name, err)
			}
			if err := conn.mon(ctx, map[string]any{"prefix": "osd pool application enable", "pool": name, "app": "rbd"}, nil, nil); err != nil {
				return fmt.Errorf("pool %s: enable rbd: %w", name, err)
			}
			env.Log.Info("storage: created a pool", "pool", name, "purpose", purpose)
		}
		if pools, err = conn.pools(ctx); err != nil {
			return err
		}
	}
	rules, err := conn.rules(ctx)
	if err != nil {
		return err
	}
	// Pools change side by side: each `osd pool set` waits for the
	// monitors' next proposal (about a second) and every new osdmap makes
	// the placement groups peer again, so one pool after another took a
	// second per setting and as many peering waves. Within a pool the
	// settings stay in order (min_size <= size at every step).
	errs := make([]error, len(pools))
	var wg sync.WaitGroup
	for i, p := range pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.shapePool(ctx, env, conn, p, rules[p.RuleID], shape)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// shapePool brings one pool to shape: its CRUSH rule, then min_size and
// size in the order that keeps min_size <= size.
func (d *Driver) shapePool(ctx context.Context, env *driver.Env, conn *cephConn, p cephPool, rule string, shape PoolShape) error {
	set := func(k, v string) error {
		cmd := map[string]any{"prefix": "osd pool set", "pool": p.Name, "var": k, "val": v}
		if k == "size" && v == "1" {
			cmd["yes_i_really_mean_it"] = true
		}
		if err := conn.mon(ctx, cmd, nil, nil); err != nil {
			return fmt.Errorf("pool %s: set %s %s: %w", p.Name, k, v, err)
		}
		env.Log.Info("storage: pool changed", "pool", p.Name, k, v)
		return nil
	}
	if rule != shape.Rule {
		if err := set("crush_rule", shape.Rule); err != nil {
			return err
		}
	}
	if shape.MinSize < p.MinSize {
		if err := set("min_size", strconv.Itoa(shape.MinSize)); err != nil {
			return err
		}
	}
	if shape.Size != p.Size {
		if err := set("size", strconv.Itoa(shape.Size)); err != nil {
			return err
		}
	}
	if shape.MinSize > p.MinSize {
		if err := set("min_size", strconv.Itoa(shape.MinSize)); err != nil {
			return err
		}
	}
	return nil
}

// forgetDeparted removes from Ceph the OSDs of nodes that left the cluster
// or the storage role (once they are down: a member that left the role
// stops them itself, whether its driver stopped or it still holds a
// monitor; its data drained before the role was taken away, or the removal
// was forced; the role is read again before), and the monitors, with their managers' keys,
// of nodes that no longer run one. A purge also deletes the OSD's key, so
// no key a departed daemon held still opens Ceph.
func (d *Driver) forgetDeparted(ctx context.Context, env *driver.Env, conn *cephConn, st state, monNodes []string) error {
	osds, err := conn.osdStates(ctx)
	if err != nil {
		return err
	}
	var errs []error
	emptied := map[string]bool{}
	// A node missing from this round's snapshot may have joined since (its
	// OSD or monitor recorded after the snapshot): only what a departed
	// node left is removed.
	isDeparted := onceEach(func(node string) (bool, error) { return env.Departed(ctx, node) },
		func(node string, err error) {
			env.Log.Info("storage: cannot tell whether a node left; looking again next round", "node", node, "error", err)
		})
	hasLeft := onceEach(func(node string) (bool, error) { return env.LeftRole(ctx, node, roles.Storage) },
		func(node string, err error) {
			env.Log.Info("storage: cannot tell whether a member left the storage role; looking again next round", "node", node, "error", err)
		})
	for _, o := range st.OSDs {
		_, member := env.Node(o.Node)
		// A member's removed OSD keeps its row (its disk entry stays
		// taken, should the role come back); one being made belongs to a
		// role given back since this round's snapshot.
		leftRole := o.State != osdRemoved && o.State != osdCreating && hasLeft(o.Node)
		if !leftRole && (member || !isDeparted(o.Node)) {
			continue
		}
		if s, ok := osds[o.ID]; ok && s.Up {
			if !leftRole {
				_ = conn.mon(ctx, map[string]any{"prefix": "osd down", "ids": []string{strconv.Itoa(o.ID)}}, nil, nil)
			}
			continue
		}
		if _, ok := osds[o.ID]; ok {
			if err := conn.mon(ctx, map[string]any{"prefix": "osd purge-actual", "id": o.ID, "yes_i_really_mean_it": true}, nil, nil); err != nil {
				errs = append(errs, fmt.Errorf("remove osd.%d of the departed %s: %w", o.ID, o.Node, err))
				continue
			}
		}
		if leftRole {
			env.Log.Info("storage: removed the OSD of a member that left the storage role", "osd", o.ID, "node", o.Node)
		} else {
			env.Log.Info("storage: removed the OSD of a departed member", "osd", o.ID, "node", o.Node)
		}
		if err := deleteOSD(ctx, env.DB, o.ID); err != nil {
			return err
		}
		emptied[o.Node] = true
	}
	for n := range emptied {
		_ = conn.mon(ctx, map[string]any{"prefix": "osd crush rm", "name": n}, nil, nil)
	}
	keep := 0
	for _, m := range st.Monitors {
		if contains(monNodes, m.Node) {
			keep++
		}
	}
	for _, m := range st.Monitors {
		if contains(monNodes, m.Node) || keep == 0 {
			continue
		}
		if _, member := env.Node(m.Node); !member && !isDeparted(m.Node) {
			continue // joined after this round's snapshot
		}
		// The manager runs beside the monitor: its key goes first, so a
		// failed removal is tried again with the key still to delete.
		if err := conn.mon(ctx, map[string]any{"prefix": "auth del", "entity": "mgr." + m.Node}, nil, nil); err != nil && !notFound(err) {
			errs = append(errs, fmt.Errorf("delete the manager key of %s: %w", m.Node, err))
			continue
		}
		if err := conn.mon(ctx, map[string]any{"prefix": "mon remove", "name": m.Node}, nil, nil); err != nil {
			errs = append(errs, fmt.Errorf("remove the monitor of %s: %w", m.Node, err))
			continue
		}
		env.Log.Info("storage: removed a monitor", "node", m.Node)
		if err := deleteMonitor(ctx, env.DB, m.Node); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// onceEach is check asked once per node for one round; a node whose check
// fails counts as false (said by failed), to be asked again next round.
func onceEach(check func(node string) (bool, error), failed func(node string, err error)) func(string) bool {
	seen := map[string]bool{}
	return func(node string) bool {
		v, ok := seen[node]
		if !ok {
			var err error
			if v, err = check(node); err != nil {
				failed(node, err)
				v = false
			}
			seen[node] = v
		}
		return v
	}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
