package hwprobe

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/jaypipes/ghw/pkg/snapshot"

	"github.com/cloudctl/cloudctl/roles"
	controlplan "github.com/cloudctl/cloudctl/roles/control/plan"
)

// ghwSnapshots returns the real machine snapshots that ship in ghw's module,
// found through `go list` in the module cache, by name.
func ghwSnapshots(t *testing.T) map[string]string {
	t.Helper()
	m, err := findGHWSnapshots()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func findGHWSnapshots() (map[string]string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/jaypipes/ghw").Output()
	if err != nil {
		return nil, fmt.Errorf("go list -m github.com/jaypipes/ghw: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	paths, err := filepath.Glob(filepath.Join(dir, "testdata", "snapshots", "*.tar.gz"))
	if err != nil || len(paths) == 0 {
		return nil, fmt.Errorf("no snapshots in %s/testdata/snapshots: %v", dir, err)
	}
	m := map[string]string{}
	for _, p := range paths {
		m[strings.TrimSuffix(filepath.Base(p), ".tar.gz")] = p
	}
	return m, nil
}

// unpacked holds every shipped snapshot unpacked once for the whole test
// binary (creating thousands of small files is slow on some disks);
// TestMain removes it.
var unpacked struct {
	once sync.Once
	root string
	dirs map[string]string
	err  error
}

// snapshotDirs returns the unpacked directory of every shipped snapshot.
func snapshotDirs(t testing.TB) map[string]string {
	t.Helper()
	unpacked.once.Do(func() {
		snaps, err := findGHWSnapshots()
		if err != nil {
			unpacked.err = err
			return
		}
		if unpacked.root, err = os.MkdirTemp("", "hwprobe-snapshots-"); err != nil {
			unpacked.err = err
			return
		}
		unpacked.dirs = map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for name, path := range snaps {
			dir := filepath.Join(unpacked.root, name)
			unpacked.dirs[name] = dir
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := os.Mkdir(dir, 0o755)
				if err == nil {
					err = snapshot.UnpackInto(path, dir)
				}
				if err != nil {
					mu.Lock()
					unpacked.err = fmt.Errorf("unpack %s: %w", path, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	})
	if unpacked.err != nil {
		t.Fatal(unpacked.err)
	}
	return unpacked.dirs
}

func TestMain(m *testing.M) {
	code := m.Run()
	if unpacked.root != "" {
		_ = os.RemoveAll(unpacked.root)
	}
	os.Exit(code)
}

// probeSnapshot probes an unpacked snapshot directory.
func probeSnapshot(t *testing.T, dir string, p Policy, rs []roles.Role) *Facts {
	t.Helper()
	s, err := OpenSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := Probe(context.Background(), s, p, rs)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// diskWant is what a disk of a snapshot must be judged. fail and unknown
// list the checks expected to fail and to be unknown; for devices excluded
// by type only fail is compared (the rest is not evaluated).
type diskWant struct {
	kind    string
	fail    []string
	unknown []string
	// reasons that must appear (substrings of the joined reasons).
	says []string
}

type snapWant struct {
	arch           string
	physicalBytes  uint64
	usableBytes    uint64
	physicalSource string
	installedGiB   int
	mysql          string
	virtFlags      []string
	sockets        int
	cores, threads int
	disks          map[string]diskWant
	// mountsWhy is a substring of every disk's Unknown[mounts], "" when the
	// mount table resolves fully.
	mountsWhy string
	nics      []string
}

// The expectations below were derived from the snapshots' own files (see
// the comments), not from the probe's output:
//   - installed RAM: online memory blocks in sys/devices/system/memory times
//     block_size_bytes (hex), else MemTotal in proc/meminfo;
//   - cores/threads: distinct (physical_package_id, core_id) and online cpuN;
//   - disks: sys/block entries with their size (512-byte sectors), removable,
//     partitions (subdirectories with a "partition" file) and
//     proc/self/mounts; no snapshot carries holders/ directories or /dev.
var snapshotWants = map[string]snapWant{
	// Laptop, i7-1270P. 255 online blocks of 0x8000000 = 31.875 GiB -> 32
	// (MemTotal 32542668 kB = 31.03 GiB would round to 31 and pick single).
	// Root is btrfs on /dev/mapper/luks-..., which a snapshot cannot trace.
	"linux-amd64-415ee03b8c4d1c4f07ae2e9d8b3d3d6d": {
		arch: "amd64", physicalBytes: 255 * 0x8000000, usableBytes: 32542668 * 1024,
		physicalSource: "memory-blocks", installedGiB: 32, mysql: controlplan.Multi,
		virtFlags: []string{"vmx"}, sockets: 1, cores: 12, threads: 16,
		disks: map[string]diskWant{
			"dm-0":    {kind: KindDeviceMapper, fail: []string{CheckType}},
			"nvme0n1": {kind: KindDisk, fail: []string{CheckPartitions, CheckMounts}, unknown: []string{CheckSignatures, CheckHolders, CheckOSD}, says: []string{"nvme0n1p1, nvme0n1p2, nvme0n1p3", "nvme0n1p2 mounted at /boot", "nvme0n1p1 mounted at /boot/efi"}},
			"zram0":   {kind: KindZRAM, fail: []string{CheckType, CheckSize}},
		},
		mountsWhy: "/dev/mapper/luks-f41579a2-9f6e-4436-91fd-73007962705f (/)",
	},
	// Desktop, Ryzen 5 1600. 256 blocks of 128 MiB = exactly 32 GiB.
	// etc/mtab is an absolute link to /proc/self/mounts, which the snapshot
	// does not contain: the mount table is unknown (the link must not be
	// followed to this machine's own mounts).
	"linux-amd64-61797caf7c0b6bca1725ad7975ed4773": {
		arch: "amd64", physicalBytes: 32 * GiB, usableBytes: 32777916 * 1024,
		physicalSource: "memory-blocks", installedGiB: 32, mysql: controlplan.Multi,
		virtFlags: []string{"svm"}, sockets: 1, cores: 6, threads: 12,
		disks: map[string]diskWant{
			"dm-0": {kind: KindDeviceMapper, fail: []string{CheckType}},
			"dm-1": {kind: KindDeviceMapper, fail: []string{CheckType}},
			"dm-2": {kind: KindDeviceMapper, fail: []string{CheckType}},
			"dm-3": {kind: KindDeviceMapper, fail: []string{CheckType}},
			"dm-4": {kind: KindDeviceMapper, fail: []string{CheckType}},
			"sda":  {kind: KindDisk, fail: []string{CheckPartitions}, unknown: []string{CheckSignatures, CheckMounts, CheckHolders, CheckOSD}, says: []string{"sda1, sda2, sda3"}},
			"sdb":  {kind: KindDisk, fail: []string{CheckPartitions}, unknown: []string{CheckSignatures, CheckMounts, CheckHolders, CheckOSD}},
			"sdc":  {kind: KindDisk, fail: []string{CheckPartitions}, unknown: []string{CheckSignatures, CheckMounts, CheckHolders, CheckOSD}},
		},
		mountsWhy: "etc/mtab links to /proc/self/mounts",
		nics:      []string{"enp3s0", "enp6s0f0", "enp6s0f1", "enp8s0"},
	},
	// Dell R610 (PERC 6/i): 33 blocks of 0x80000000 = 66 GiB. sda holds
	// sda1 (/boot/efi), sda2 (/boot) and sda3, the LVM PV of mainvg whose
	// LVs (dm-0..dm-4, dm-1 being 8 GiB) are mounted as /dev/mapper/mainvg-*;
	// sr0 is the CD drive (removable, 2097151 sectors); zram0 is empty.
	"linux-amd64-8581cf3a529e5d8b97ea876eade2f60d": {
		arch: "amd64", physicalBytes: 33 * 0x80000000, usableBytes: 65921280 * 1024,
		physicalSource: "memory-blocks", installedGiB: 66, mysql: controlplan.Multi,
		virtFlags: []string{"vmx"}, sockets: 2, cores: 12, threads: 24,
		disks: map[string]diskWant{
			"dm-0":  {kind: KindDeviceMapper, fail: []string{CheckType}},
			"dm-1":  {kind: KindDeviceMapper, fail: []string{CheckType, CheckSize}},
			"dm-2":  {kind: KindDeviceMapper, fail: []string{CheckType}},
			"dm-3":  {kind: KindDeviceMapper, fail: []string{CheckType}},
			"dm-4":  {kind: KindDeviceMapper, fail: []string{CheckType}},
			"sda":   {kind: KindDisk, fail: []string{CheckPartitions, CheckMounts}, unknown: []string{CheckSignatures, CheckHolders, CheckOSD}, says: []string{"sda1, sda2, sda3", "sda1 mounted at /boot/efi", "sda2 mounted at /boot", "/dev/mapper/mainvg-main (/)"}},
			"sr0":   {kind: KindOptical, fail: []string{CheckType, CheckRemovable, CheckSize}, says: []string{"optical drive", "removable"}},
			"zram0": {kind: KindZRAM, fail: []string{CheckType, CheckSize}},
		},
		mountsWhy: "/dev/mapper/mainvg-home (/home)",
	},
	// Cloud VM with a GPU: 239 blocks of 128 MiB = 29.875 GiB -> 30: single.
	"linux-amd64-accel-nvidia": {
		arch: "amd64", physicalBytes: 239 * 0x8000000, usableBytes: 30601816 * 1024,
		physicalSource: "memory-blocks", installedGiB: 30, mysql: controlplan.Single,
		virtFlags: []string{"vmx"}, sockets: 1, cores: 8, threads: 8,
		disks: map[string]diskWant{
			"sda": {kind: KindDisk, fail: []string{CheckPartitions, CheckMounts}, unknown: []string{CheckSignatures, CheckHolders, CheckOSD}, says: []string{"sda1, sda14, sda15", "sda15 mounted at /boot/efi"}},
		},
		mountsWhy: "/dev/root (/)",
	},
	// Small VM: 16 blocks of 128 MiB = 2 GiB; a CD drive of 4 sectors.
	"linux-amd64-accel": {
		arch: "amd64", physicalBytes: 2 * GiB, usableBytes: 2007536 * 1024,
		physicalSource: "memory-blocks", installedGiB: 2, mysql: controlplan.Single,
		virtFlags: []string{"vmx"}, sockets: 2, cores: 2, threads: 2,
		disks: map[string]diskWant{
			"dm-0":  {kind: KindDeviceMapper, fail: []string{CheckType}},
			"sr0":   {kind: KindOptical, fail: []string{CheckType, CheckRemovable, CheckSize}},
			"vda":   {kind: KindDisk, fail: []string{CheckPartitions, CheckMounts}, unknown: []string{CheckSignatures, CheckHolders, CheckOSD}, says: []string{"vda1, vda2, vda3", "vda2 mounted at /boot"}},
			"zram0": {kind: KindZRAM, fail: []string{CheckType, CheckSize}},
		},
		mountsWhy: "/dev/mapper/fedora-root (/)",
	},
	// VM with cpu2-3 offline and no sys/devices/system/memory: installed
	// RAM falls back to MemTotal 7881912 kB = 7.52 GiB -> 8. No sys/block.
	"linux-amd64-offlineCPUs": {
		arch: "amd64", physicalBytes: 7881912 * 1024, usableBytes: 7881912 * 1024,
		physicalSource: "meminfo", installedGiB: 8, mysql: controlplan.Single,
		virtFlags: []string{"vmx"}, sockets: 2, cores: 2, threads: 2,
		disks: map[string]diskWant{},
	},
	// arm64 VM (Neoverse N1): 16 blocks of 128 MiB = 2 GiB, 1 core; an
	// 8 GiB NVMe disk with / on nvme0n1p1. No CPU flag shows virtualization.
	"linux-arm64-c288e0776090cd558ef793b2a4e61939": {
		arch: "arm64", physicalBytes: 2 * GiB, usableBytes: 1888980 * 1024,
		physicalSource: "memory-blocks", installedGiB: 2, mysql: controlplan.Single,
		virtFlags: []string{}, sockets: 1, cores: 1, threads: 1,
		disks: map[string]diskWant{
			"nvme0n1": {kind: KindDisk, fail: []string{CheckSize, CheckPartitions, CheckMounts}, unknown: []string{CheckSignatures, CheckHolders, CheckOSD}, says: []string{"nvme0n1p1 mounted at /"}},
		},
	},
	// IBM Z LPAR: 110 blocks of 1 GiB. Two FCP channels x 4 remote ports
	// reach two LUNs: 1074413572 (1 TiB, sdb sdd sde sdf sdi sdj sdm sdn)
	// and 1075134468 (100 GiB, sda sdc sdg sdh sdk sdl sdo sdp); dm-0/dm-1
	// are the multipath maps, / is on /dev/mapper/mpathb1. Without holders
	// the paths cannot be proven, so they are unknown, with the evidence.
	"linux-s390x-snapshot": {
		arch: "s390x", physicalBytes: 110 * GiB, usableBytes: 112832212 * 1024,
		physicalSource: "memory-blocks", installedGiB: 110, mysql: controlplan.Multi,
		virtFlags: []string{"sie"}, sockets: 1, cores: 4, threads: 8,
		disks: func() map[string]diskWant {
			m := map[string]diskWant{
				"dm-0": {kind: KindDeviceMapper, fail: []string{CheckType}},
				"dm-1": {kind: KindDeviceMapper, fail: []string{CheckType}},
				"dm-2": {kind: KindDeviceMapper, fail: []string{CheckType}},
			}
			big := "sdb, sdd, sde, sdf, sdi, sdj, sdm, sdn"
			small := "sda, sdc, sdg, sdh, sdk, sdl, sdo, sdp"
			for _, group := range []struct{ names, lun string }{{big, "1074413572"}, {small, "1075134468"}} {
				for _, n := range strings.Split(group.names, ", ") {
					m[n] = diskWant{kind: KindDisk, unknown: []string{CheckSignatures, CheckMounts, CheckHolders, CheckOSD},
						says: []string{"likely a multipath path: SCSI LUN " + group.lun, "8 paths (" + group.names + ")"}}
				}
			}
			return m
		}(),
		mountsWhy: "/dev/mapper/mpathb1 (/)",
	},
}

func TestShippedSnapshots(t *testing.T) {
	snaps := ghwSnapshots(t)
	var got, want []string
	for n := range snaps {
		got = append(got, n)
	}
	for n := range snapshotWants {
		want = append(want, n)
	}
	sort.Strings(got)
	sort.Strings(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ghw ships snapshots %v, expectations cover %v: derive expectations for the new ones", got, want)
	}
	dirs := snapshotDirs(t)
	for _, name := range got {
		t.Run(name, func(t *testing.T) {
			checkSnapshot(t, probeSnapshot(t, dirs[name], DefaultPolicy(), nil), snapshotWants[name])
		})
	}
}

func checkSnapshot(t *testing.T, f *Facts, w snapWant) {
	t.Helper()
	if f.Source != "snapshot" {
		t.Errorf("source = %q, want snapshot", f.Source)
	}
	if f.CPU.Arch != w.arch {
		t.Errorf("arch = %q, want %q", f.CPU.Arch, w.arch)
	}
	m := f.Memory
	if m.PhysicalBytes != w.physicalBytes || m.UsableBytes != w.usableBytes || m.PhysicalSource != w.physicalSource || m.InstalledGiB != w.installedGiB {
		t.Errorf("memory = %+v, want physical %d (%s), usable %d, installed %d GiB", m, w.physicalBytes, w.physicalSource, w.usableBytes, w.installedGiB)
	}
	if f.Decisions.MySQLTopology != w.mysql {
		t.Errorf("mysql topology = %s (%s), want %s", f.Decisions.MySQLTopology, f.Decisions.MySQLReason, w.mysql)
	}
	if !reflect.DeepEqual(f.CPU.VirtFlags, w.virtFlags) {
		t.Errorf("virt flags = %v, want %v", f.CPU.VirtFlags, w.virtFlags)
	}
	if f.CPU.Sockets != w.sockets || f.CPU.Cores != w.cores || f.CPU.Threads != w.threads {
		t.Errorf("cpu = %d sockets %d cores %d threads, want %d/%d/%d", f.CPU.Sockets, f.CPU.Cores, f.CPU.Threads, w.sockets, w.cores, w.threads)
	}
	// A snapshot has no /dev: /dev/kvm is unknown, so is the verdict,
	// whatever the CPU flags say (every shipped x86 snapshot has vmx/svm).
	if f.KVM.Verdict != KVMUnknown || !strings.Contains(f.KVM.Reason, "no /dev") {
		t.Errorf("kvm = %+v, want unknown because a snapshot has no /dev", f.KVM)
	}
	if len(f.Decisions.OSDDisks) != 0 || len(f.Decisions.WipeCandidates) != 0 {
		t.Errorf("osd disks %v, wipe candidates %v: no disk of a snapshot can be verified", f.Decisions.OSDDisks, f.Decisions.WipeCandidates)
	}

	var names []string
	for _, d := range f.Disks {
		names = append(names, d.Name)
	}
	var wantNames []string
	for n := range w.disks {
		wantNames = append(wantNames, n)
	}
	sort.Slice(wantNames, func(i, j int) bool { return naturalLess(wantNames[i], wantNames[j]) })
	if len(names) != 0 || len(wantNames) != 0 {
		if !reflect.DeepEqual(names, wantNames) {
			t.Errorf("disks = %v, want %v", names, wantNames)
		}
	}
	for _, d := range f.Disks {
		dw, ok := w.disks[d.Name]
		if !ok {
			continue
		}
		if d.Kind != dw.kind {
			t.Errorf("%s: kind %s, want %s", d.Name, d.Kind, dw.kind)
		}
		if d.Eligible || d.WipeEligible {
			t.Errorf("%s: eligible=%v wipe_eligible=%v, want neither", d.Name, d.Eligible, d.WipeEligible)
		}
		if got := checksIn(d, Fail); !reflect.DeepEqual(got, sortedChecks(dw.fail)) {
			t.Errorf("%s: failed checks %v, want %v (reasons %q)", d.Name, got, sortedChecks(dw.fail), d.Reasons)
		}
		if dw.kind == KindDisk {
			if got := checksIn(d, Unknown); !reflect.DeepEqual(got, sortedChecks(dw.unknown)) {
				t.Errorf("%s: unknown checks %v, want %v (reasons %q)", d.Name, got, sortedChecks(dw.unknown), d.Reasons)
			}
		}
		if len(d.Reasons) == 0 {
			t.Errorf("%s: rejected without reasons", d.Name)
		}
		joined := strings.Join(d.Reasons, " | ")
		for _, s := range dw.says {
			if !strings.Contains(joined, s) {
				t.Errorf("%s: reasons %q do not say %q", d.Name, joined, s)
			}
		}
		if w.mountsWhy != "" && !strings.Contains(d.Unknown[CheckMounts], w.mountsWhy) {
			t.Errorf("%s: unknown mounts %q, want it to name %q", d.Name, d.Unknown[CheckMounts], w.mountsWhy)
		}
		if d.Signatures != nil || d.Holders != nil {
			t.Errorf("%s: signatures %v / holders %v read from a snapshot, want null (unknown)", d.Name, d.Signatures, d.Holders)
		}
	}

	var nics []string
	for _, n := range f.NICs {
		nics = append(nics, n.Name)
		if n.State != "unknown" || n.Addresses != nil || n.Virtual {
			t.Errorf("nic %+v: want a physical NIC with unknown state and addresses", n)
		}
	}
	if len(nics) != 0 || len(w.nics) != 0 {
		if !reflect.DeepEqual(nics, w.nics) {
			t.Errorf("nics = %v, want %v", nics, w.nics)
		}
	}

	// Every role gets findings; storage cannot be ready without a verified disk.
	if !reflect.DeepEqual(f.Roles, roles.All) {
		t.Errorf("roles = %v, want all", f.Roles)
	}
	if !hasFinding(f, roles.Storage, "disks", LevelError) {
		t.Errorf("storage: want an error finding on disks, got %+v", f.Findings)
	}
	if !hasFinding(f, roles.Compute, "kvm", LevelWarn) {
		t.Errorf("compute: want a kvm warning, got %+v", f.Findings)
	}
}

func checksIn(d Disk, state string) []string {
	out := []string{}
	for c, s := range d.Checks {
		if s == state {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

func sortedChecks(cs []string) []string {
	out := append([]string{}, cs...)
	sort.Strings(out)
	return out
}

func hasFinding(f *Facts, r roles.Role, check, level string) bool {
	for _, fd := range f.Findings {
		if fd.Role == r && fd.Check == check && fd.Level == level {
			return true
		}
	}
	return false
}

// TestSnapshotFindings checks the role findings that follow from the
// snapshots' cores and RAM against the default minimums.
func TestSnapshotFindings(t *testing.T) {
	dirs := snapshotDirs(t)
	cases := []struct {
		snap   string
		role   roles.Role
		check  string
		level  string
		reason string
	}{
		// arm64: 1 core, 2 GiB.
		{"linux-arm64-c288e0776090cd558ef793b2a4e61939", roles.Control, "cores", LevelError, "1 CPU cores; control needs at least 2"},
		{"linux-arm64-c288e0776090cd558ef793b2a4e61939", roles.Control, "memory", LevelError, "2 GiB RAM; control needs at least 4 GiB"},
		{"linux-arm64-c288e0776090cd558ef793b2a4e61939", roles.Compute, "memory", LevelWarn, "4 GiB is recommended"},
		{"linux-amd64-accel", roles.Control, "memory", LevelError, "2 GiB RAM"},
		{"linux-amd64-8581cf3a529e5d8b97ea876eade2f60d", roles.Control, "cores", LevelInfo, "12 CPU cores"},
		{"linux-amd64-8581cf3a529e5d8b97ea876eade2f60d", roles.Control, "mysql", LevelInfo, "multi"},
		{"linux-s390x-snapshot", roles.Storage, "disks", LevelWarn, "could not be fully checked"},
	}
	for _, c := range cases {
		f := probeSnapshot(t, dirs[c.snap], DefaultPolicy(), []roles.Role{c.role})
		found := false
		for _, fd := range f.Findings {
			if fd.Role != c.role {
				t.Errorf("%s: finding for %s, only %s was asked", c.snap, fd.Role, c.role)
			}
			if fd.Check == c.check && fd.Level == c.level && strings.Contains(fd.Message, c.reason) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no %s %s.%s finding saying %q in %+v", c.snap, c.level, c.role, c.check, c.reason, f.Findings)
		}
	}
}

// TestSnapshotPolicyIsData moves the thresholds and sees the decisions move.
func TestSnapshotPolicyIsData(t *testing.T) {
	f := probeSnapshot(t, snapshotDirs(t)["linux-amd64-415ee03b8c4d1c4f07ae2e9d8b3d3d6d"], DefaultPolicy(), nil)
	p := DefaultPolicy()
	p.MySQLMultiMinGiB = 33
	p.MinOSDDiskBytes = 4 * GiB
	p.Roles[roles.Control] = RoleMinimums{MinCores: 16}
	f.Decide(p, []roles.Role{roles.Control})
	if f.Decisions.MySQLTopology != controlplan.Single || !strings.Contains(f.Decisions.MySQLReason, "32 GiB installed RAM") || !strings.Contains(f.Decisions.MySQLReason, "< 33 GiB") {
		t.Errorf("threshold 33: %s (%s), want single", f.Decisions.MySQLTopology, f.Decisions.MySQLReason)
	}
	if !hasFinding(f, roles.Control, "cores", LevelError) {
		t.Errorf("min 16 cores on a 12-core machine: want an error, got %+v", f.Findings)
	}
	for _, d := range f.Disks {
		if d.Name == "zram0" && d.Checks[CheckSize] != Pass {
			t.Errorf("zram0 (8 GiB) with a 4 GiB minimum: size check %s", d.Checks[CheckSize])
		}
	}
}

// TestSnapshotDirectory reads an unpacked snapshot directory, and checks
// that Close removes only what OpenSnapshot unpacked itself.
func TestSnapshotDirectory(t *testing.T) {
	snaps := ghwSnapshots(t)
	dir := t.TempDir()
	if err := snapshot.UnpackInto(snaps["linux-s390x-snapshot"], dir); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSnapshot(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Probe(context.Background(), s, DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkSnapshot(t, f, snapshotWants["linux-s390x-snapshot"])
	if _, err := os.Stat(filepath.Join(dir, "proc", "meminfo")); err != nil {
		t.Errorf("Close removed a directory it did not unpack: %v", err)
	}

	tar, err := OpenSnapshot(snaps["linux-arm64-c288e0776090cd558ef793b2a4e61939"])
	if err != nil {
		t.Fatal(err)
	}
	unpacked := tar.Root()
	if err := tar.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(unpacked); !os.IsNotExist(err) {
		t.Errorf("Close left the unpacked snapshot %s behind: %v", unpacked, err)
	}

	if _, err := OpenSnapshot(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a ghw snapshot") {
		t.Errorf("empty directory: err = %v, want 'not a ghw snapshot'", err)
	}
}
