package hwprobe

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/cloudctl/cloudctl/roles"
	controlplan "github.com/cloudctl/cloudctl/roles/control/plan"
)

// fakeMachine is a synthetic machine: a sysfs/procfs tree in a temporary
// directory (which ghw reads like any chroot) and an in-memory Host whose
// block devices are byte slices. It stands in for what this machine cannot
// make: device-mapper, md, bcache and multipath holders.
type fakeMachine struct {
	t    *testing.T
	dir  string
	root *os.Root
	host *fakeHost
}

func newFakeMachine(t *testing.T) *fakeMachine {
	t.Helper()
	dir := t.TempDir()
	m := &fakeMachine{t: t, dir: dir, host: &fakeHost{devices: map[string][]byte{}, kvm: 12}}
	return m
}

func (m *fakeMachine) file(name, content string) {
	m.t.Helper()
	p := filepath.Join(m.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		m.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		m.t.Fatal(err)
	}
}

func (m *fakeMachine) mkdir(name string) {
	m.t.Helper()
	if err := os.MkdirAll(filepath.Join(m.dir, name), 0o755); err != nil {
		m.t.Fatal(err)
	}
}

func (m *fakeMachine) link(name, target string) {
	m.t.Helper()
	p := filepath.Join(m.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		m.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		m.t.Fatal(err)
	}
}

// disk adds /sys/block/<name> with its size (bytes), device number and
// holders, and a /dev/<name> entry; data is what reading the device returns.
func (m *fakeMachine) disk(name string, size uint64, dev string, holders []string, data []byte) {
	dir := "sys/block/" + name
	m.file(dir+"/size", fmt.Sprint(size/512))
	m.file(dir+"/removable", "0")
	m.file(dir+"/dev", dev)
	m.file(dir+"/queue/rotational", "0")
	m.mkdir(dir + "/holders")
	for _, h := range holders {
		m.link(dir+"/holders/"+h, "../../"+h)
	}
	m.file("dev/"+name, "")
	if data != nil {
		img := make([]byte, min(size, 1<<20))
		copy(img, data)
		m.host.devices[name] = img
		m.host.sizes.Store(name, int64(size))
	}
}

func (m *fakeMachine) partition(disk, name, dev string, holders []string) {
	dir := "sys/block/" + disk + "/" + name
	m.file(dir+"/partition", "1")
	m.file(dir+"/size", "2048")
	m.file(dir+"/dev", dev)
	m.mkdir(dir + "/holders")
	for _, h := range holders {
		m.link(dir+"/holders/"+h, "../../../"+h)
	}
	m.file("dev/"+name, "")
}

func (m *fakeMachine) dm(name, dev, dmName, uuid string, holders []string) {
	m.disk(name, 20*GiB, dev, holders, nil)
	m.file("sys/block/"+name+"/dm/name", dmName)
	m.file("sys/block/"+name+"/dm/uuid", uuid)
}

func (m *fakeMachine) source() Source {
	m.t.Helper()
	if m.root == nil {
		r, err := os.OpenRoot(m.dir)
		if err != nil {
			m.t.Fatal(err)
		}
		m.t.Cleanup(func() { r.Close() })
		m.root = r
	}
	return fakeSource{m}
}

type fakeSource struct{ m *fakeMachine }

func (s fakeSource) Describe() string { return "fake machine" }
func (s fakeSource) Root() string     { return s.m.dir }
func (s fakeSource) FS() fs.FS        { return s.m.root.FS() }
func (s fakeSource) Host() Host       { return s.m.host }

type fakeHost struct {
	devices map[string][]byte
	sizes   sync.Map
	kvm     int
	kvmErr  error
	mu      sync.Mutex
	opened  []string
}

type fakeBlock struct {
	*bytes.Reader
	size int64
}

func (b fakeBlock) Close() error         { return nil }
func (b fakeBlock) Size() (int64, error) { return b.size, nil }
func (b fakeBlock) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(b.Reader.Len()) && off < b.size {
		clear(p) // beyond the stored image: zeros, like a sparse file
		return len(p), nil
	}
	return b.Reader.ReadAt(p, off)
}

func (h *fakeHost) OpenBlock(name string) (BlockDevice, error) {
	h.mu.Lock()
	h.opened = append(h.opened, name)
	h.mu.Unlock()
	b, ok := h.devices[name]
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: "/dev/" + name, Err: fs.ErrPermission}
	}
	size, _ := h.sizes.Load(name)
	return fakeBlock{bytes.NewReader(b), size.(int64)}, nil
}

func (h *fakeHost) KVMAPIVersion() (int, error) { return h.kvm, h.kvmErr }

func (h *fakeHost) InterfaceAddrs(name string) ([]string, error) {
	if name == "eth0" {
		return []string{"10.0.0.5/24"}, nil
	}
	return []string{}, nil
}

func (h *fakeHost) Machine() (string, error) { return "x86_64", nil }

// gptImage is a disk with an empty GPT (protective MBR + header).
func gptImage() []byte {
	b := make([]byte, 64<<10)
	b[446+4] = 0xEE
	b[510], b[511] = 0x55, 0xAA
	copy(b[512:], "EFI PART")
	return b
}

func bluestoreImage(whoami string) []byte {
	var b bytes.Buffer
	b.WriteString(bluestoreMagic)
	b.WriteString("aac72bf5-d998-422a-bbc5-6a9ea22854f4\n")
	var enc bytes.Buffer
	enc.Write(make([]byte, 16+8+8))
	str := func(s string) {
		binary.Write(&enc, binary.LittleEndian, uint32(len(s)))
		enc.WriteString(s)
	}
	str("main")
	binary.Write(&enc, binary.LittleEndian, uint32(2))
	str("ceph_fsid")
	str("11111111-2222-3333-4444-555555555555")
	str("whoami")
	str(whoami)
	b.Write([]byte{2, 1})
	binary.Write(&b, binary.LittleEndian, uint32(enc.Len()))
	b.Write(enc.Bytes())
	return b.Bytes()
}

func buildFakeMachine(t *testing.T) *fakeMachine {
	m := newFakeMachine(t)
	// 32 GiB in 16 blocks of 2 GiB; MemTotal lower, as firmware reserves some.
	m.file("proc/meminfo", "MemTotal:       32604160 kB\nMemFree:        30000000 kB\n")
	m.file("sys/devices/system/memory/block_size_bytes", "80000000\n")
	for i := 0; i < 16; i++ {
		m.file(fmt.Sprintf("sys/devices/system/memory/memory%d/state", i), "online\n")
	}
	var cpuinfo strings.Builder
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&cpuinfo, "processor\t: %d\nvendor_id\t: GenuineIntel\nmodel name\t: Fake CPU\nflags\t\t: fpu lm vmx sse\n\n", i)
		m.file(fmt.Sprintf("sys/devices/system/cpu/cpu%d/topology/physical_package_id", i), "0")
		m.file(fmt.Sprintf("sys/devices/system/cpu/cpu%d/topology/core_id", i), fmt.Sprint(i))
	}
	m.file("proc/cpuinfo", cpuinfo.String())
	m.mkdir("sys/module/kvm_intel")

	// NICs: a physical one (link into a PCI device) and a bridge.
	m.file("sys/devices/pci0000:00/0000:00:03.0/net/eth0/address", "52:54:00:12:34:56\n")
	m.file("sys/devices/pci0000:00/0000:00:03.0/net/eth0/addr_assign_type", "0\n")
	m.file("sys/devices/pci0000:00/0000:00:03.0/net/eth0/operstate", "up\n")
	m.file("sys/devices/pci0000:00/0000:00:03.0/net/eth0/speed", "1000\n")
	m.link("sys/class/net/eth0", "../../devices/pci0000:00/0000:00:03.0/net/eth0")
	m.file("sys/devices/virtual/net/br0/address", "02:00:00:00:00:01\n")
	m.file("sys/devices/virtual/net/br0/addr_assign_type", "3\n")
	m.file("sys/devices/virtual/net/br0/operstate", "unknown\n")
	m.file("sys/devices/virtual/net/br0/flags", "0x1003\n")
	m.file("sys/devices/virtual/net/br0/carrier", "1\n")
	m.link("sys/class/net/br0", "../../devices/virtual/net/br0")

	blank := []byte{}
	m.disk("sdb", 100*GiB, "8:16", nil, blank)              // eligible
	m.disk("sdc", 100*GiB, "8:32", nil, gptImage())         // empty GPT: wipe candidate
	m.disk("sdd", 100*GiB, "8:48", nil, gptImage())         // LVM PV on sdd1, root LV mounted
	m.partition("sdd", "sdd1", "8:49", []string{"dm-0"})    //
	m.dm("dm-0", "253:0", "vg0-root", "LVM-abcdef", nil)    //
	m.disk("sde", 100*GiB, "8:64", []string{"dm-1"}, blank) // multipath path
	m.dm("dm-1", "253:1", "mpatha", "mpath-3600a0b80", []string{"dm-2"})
	m.dm("dm-2", "253:2", "mpatha1", "part1-mpath-3600a0b80", nil) // mounted at /srv
	m.disk("sdf", 100*GiB, "8:80", []string{"md127"}, blank)       // md member
	m.disk("md127", 100*GiB, "9:127", nil, nil)
	m.disk("sdg", 100*GiB, "8:96", []string{"bcache0"}, blank) // bcache backing device
	m.disk("bcache0", 100*GiB, "252:0", nil, nil)
	m.disk("sdh", 100*GiB, "8:112", nil, blank) // whole-disk btrfs mounted by UUID
	m.link("dev/disk/by-uuid/1234-abcd", "../../sdh")
	m.disk("sdi", 100*GiB, "8:128", nil, bluestoreImage("3")) // bluestore OSD
	m.disk("sdj", 1*GiB, "8:144", nil, blank)                 // too small
	m.disk("sdk", 100*GiB, "8:160", nil, blank)               // removable
	m.file("sys/block/sdk/removable", "1")
	m.disk("sdl", 100*GiB, "8:176", nil, blank) // two paths to one LUN, no dm map
	m.disk("sdm", 100*GiB, "8:192", nil, blank)
	m.file("sys/block/sdl/device/wwid", "naa.600a0b800012345\n")
	m.file("sys/block/sdm/device/wwid", "naa.600a0b800012345\n")
	m.disk("sdn", 100*GiB, "8:208", nil, append(make([]byte, 4086), "SWAPSPACE2"...)) // active swap
	m.disk("sdo", 100*GiB, "8:224", nil, blank)                                       // OSD block via data dir link
	m.link("var/lib/ceph/osd/ceph-5/block", "/dev/sdo")
	m.disk("sdp", 100*GiB, "8:240", []string{"dm-3"}, append([]byte("LUKS\xba\xbe"), 0, 2)) // LUKS opened
	m.dm("dm-3", "253:3", "luks-1234", "CRYPT-LUKS2-1234-luks-1234", nil)
	m.disk("loop0", 100*GiB, "7:0", nil, blank) // loop: excluded by type, never opened

	m.file("proc/self/mountinfo", strings.Join([]string{
		"22 1 253:0 / / rw,relatime - ext4 /dev/mapper/vg0-root rw",
		"23 22 253:2 / /srv rw,relatime - xfs /dev/mapper/mpatha1 rw",
		"24 22 0:45 / /data rw,relatime - btrfs /dev/disk/by-uuid/1234-abcd rw",
		"25 22 0:21 / /proc rw,relatime - proc proc rw",
		"26 22 7:0 / /snap/core rw,relatime - squashfs /dev/loop0 ro",
		"27 22 0:46 / /mnt/with\\040space rw,relatime - btrfs /dev/mapper/luks-1234 rw",
		"",
	}, "\n"))
	m.file("proc/swaps", "Filename\tType\tSize\tUsed\tPriority\n/dev/sdn                                partition\t104857596\t0\t-2\n")
	return m
}

func TestFakeMachine(t *testing.T) {
	m := buildFakeMachine(t)
	f, err := Probe(context.Background(), m.source(), DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}

	if f.Source != "live" || f.Memory.InstalledGiB != 32 || f.Memory.PhysicalSource != "memory-blocks" {
		t.Errorf("memory = %+v", f.Memory)
	}
	if f.Decisions.MySQLTopology != controlplan.Multi {
		t.Errorf("mysql = %s (%s), want multi", f.Decisions.MySQLTopology, f.Decisions.MySQLReason)
	}
	if f.CPU.Arch != "amd64" || f.CPU.Cores != 4 || !reflect.DeepEqual(f.CPU.VirtFlags, []string{"vmx"}) {
		t.Errorf("cpu = %+v", f.CPU)
	}
	if f.KVM.Verdict != KVMYes {
		t.Errorf("kvm = %+v, want yes (vmx and /dev/kvm API 12)", f.KVM)
	}

	type want struct {
		eligible, wipe bool
		fail           []string
		says           string
	}
	wants := map[string]want{
		"sdb":     {eligible: true},
		"sdc":     {wipe: true, fail: []string{CheckSignatures}, says: "GPT partition table (gpt)"},
		"sdd":     {fail: []string{CheckPartitions, CheckSignatures, CheckMounts, CheckHolders}, says: "sdd1 is an LVM physical volume (held by dm-0 vg0-root)"},
		"sde":     {fail: []string{CheckMounts, CheckHolders}, says: "sde is a multipath path (held by dm-1 mpatha)"},
		"sdf":     {fail: []string{CheckHolders}, says: "sdf is an md RAID member (of md127)"},
		"sdg":     {fail: []string{CheckHolders}, says: "sdg is a bcache device (of bcache0)"},
		"sdh":     {fail: []string{CheckMounts}, says: "sdh mounted at /data"},
		"sdi":     {fail: []string{CheckSignatures, CheckOSD}, says: "already used by a Ceph OSD (osd.3)"},
		"sdj":     {fail: []string{CheckSize}, says: "too small: 1 GiB, the minimum is 10 GiB"},
		"sdk":     {fail: []string{CheckRemovable}, says: "removable media"},
		"sdl":     {fail: []string{CheckHolders}, says: "sdl is a multipath path (same WWID as sdm)"},
		"sdm":     {fail: []string{CheckHolders}, says: "sdm is a multipath path (same WWID as sdl)"},
		"sdn":     {fail: []string{CheckSignatures, CheckMounts}, says: "sdn is active swap"},
		"sdo":     {fail: []string{CheckOSD}, says: "already used by a Ceph OSD (osd.5)"},
		"sdp":     {fail: []string{CheckSignatures, CheckMounts, CheckHolders}, says: "sdp is encrypted (opened as dm-3 luks-1234)"},
		"loop0":   {fail: []string{CheckType, CheckMounts}, says: "loop device"},
		"dm-0":    {fail: []string{CheckType, CheckMounts}},
		"dm-1":    {fail: []string{CheckType, CheckMounts, CheckHolders}, says: "dm-1 is partition-mapped (by dm-2 mpatha1)"},
		"dm-2":    {fail: []string{CheckType, CheckMounts}},
		"dm-3":    {fail: []string{CheckType, CheckMounts}},
		"md127":   {fail: []string{CheckType}},
		"bcache0": {fail: []string{CheckType}},
	}
	seen := map[string]bool{}
	for _, d := range f.Disks {
		w, ok := wants[d.Name]
		if !ok {
			t.Errorf("unexpected disk %s", d.Name)
			continue
		}
		seen[d.Name] = true
		if d.Eligible != w.eligible || d.WipeEligible != w.wipe {
			t.Errorf("%s: eligible=%v wipe=%v, want %v/%v (reasons %q)", d.Name, d.Eligible, d.WipeEligible, w.eligible, w.wipe, d.Reasons)
		}
		if got := checksIn(d, Fail); !reflect.DeepEqual(got, sortedChecks(w.fail)) {
			t.Errorf("%s: failed %v, want %v (reasons %q)", d.Name, got, sortedChecks(w.fail), d.Reasons)
		}
		if got := checksIn(d, Unknown); len(got) != 0 {
			t.Errorf("%s: unknown checks %v on a live source (%v)", d.Name, got, d.Unknown)
		}
		if w.says != "" && !strings.Contains(strings.Join(d.Reasons, " | "), w.says) {
			t.Errorf("%s: reasons %q do not say %q", d.Name, d.Reasons, w.says)
		}
		if !d.Eligible && len(d.Reasons) == 0 {
			t.Errorf("%s: rejected without a reason", d.Name)
		}
	}
	for n := range wants {
		if !seen[n] {
			t.Errorf("disk %s missing", n)
		}
	}
	if !reflect.DeepEqual(f.Decisions.OSDDisks, []string{"/dev/sdb"}) || !reflect.DeepEqual(f.Decisions.WipeCandidates, []string{"/dev/sdc"}) {
		t.Errorf("decisions = %+v", f.Decisions)
	}
	for _, n := range m.host.opened {
		if kindOf(n) != KindDisk {
			t.Errorf("probe opened %s, which its type already excludes", n)
		}
	}

	// The mount through a path with a space, resolved by dm name.
	var sdp Disk
	for _, d := range f.Disks {
		if d.Name == "sdp" {
			sdp = d
		}
	}
	if len(sdp.Mounts) != 1 || sdp.Mounts[0].Mountpoint != "/mnt/with space" || sdp.Mounts[0].Device != "dm-3" {
		t.Errorf("sdp mounts = %+v", sdp.Mounts)
	}

	var nics []string
	for _, n := range f.NICs {
		nics = append(nics, fmt.Sprintf("%s %s virtual=%v %s %d %v", n.Name, n.State, n.Virtual, n.MAC, n.SpeedMbps, n.Addresses))
	}
	wantNICs := []string{
		"br0 up virtual=true 02:00:00:00:00:01 0 []",
		"eth0 up virtual=false 52:54:00:12:34:56 1000 [10.0.0.5/24]",
	}
	if !reflect.DeepEqual(nics, wantNICs) {
		t.Errorf("nics = %q, want %q", nics, wantNICs)
	}

	if !hasFinding(f, roles.Storage, "disks", LevelInfo) || !hasFinding(f, roles.Storage, "disks", LevelWarn) {
		t.Errorf("storage findings: want info (sdb) and a wipe warning (sdc): %+v", f.Findings)
	}
	if !hasFinding(f, roles.Compute, "kvm", LevelInfo) {
		t.Errorf("compute: want KVM info, got %+v", f.Findings)
	}
}

// TestFakeUnreadable: a device that cannot be opened leaves its signature
// and OSD checks unknown, and the disk not eligible, with the reason.
func TestFakeUnreadable(t *testing.T) {
	m := buildFakeMachine(t)
	delete(m.host.devices, "sdb")
	f, err := Probe(context.Background(), m.source(), DefaultPolicy(), []roles.Role{roles.Storage})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Disks {
		if d.Name != "sdb" {
			continue
		}
		if d.Eligible || d.WipeEligible || d.Checks[CheckSignatures] != Unknown || d.Checks[CheckOSD] != Unknown {
			t.Errorf("unreadable sdb: %+v", d)
		}
		if len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], "unknown signatures: cannot read /dev/sdb") {
			t.Errorf("unreadable sdb reasons = %q", d.Reasons)
		}
	}
	if !hasFinding(f, roles.Storage, "disks", LevelWarn) {
		t.Errorf("want a 'could not be fully checked' warning: %+v", f.Findings)
	}
}

// TestInspectFake points the detection at single devices by path.
func TestInspectFake(t *testing.T) {
	m := buildFakeMachine(t)
	p := DefaultPolicy()
	d, err := Inspect(context.Background(), m.source(), "/dev/disk/by-uuid/1234-abcd", p)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "sdh" || d.Checks[CheckMounts] != Fail {
		t.Errorf("by-uuid path: %+v", d)
	}
	d, err = Inspect(context.Background(), m.source(), "/dev/loop0", p)
	if err != nil {
		t.Fatal(err)
	}
	// Inspect reads a loop device (Probe does not) but it still fails on type.
	if d.Checks[CheckType] != Fail || d.Checks[CheckSignatures] != Pass || d.Eligible {
		t.Errorf("loop0: %+v", d.Checks)
	}
	// Admitted by the policy (a test's manifest), the same loop device is
	// judged as a disk: its type passes and its mount is found.
	admit := p
	admit.AdmitLoopDevices = []string{"/dev/loop0"}
	if d, err = Inspect(context.Background(), m.source(), "/dev/loop0", admit); err != nil {
		t.Fatal(err)
	}
	if d.Kind != KindDisk || d.Checks[CheckType] != Pass || d.Checks[CheckMounts] != Fail || d.Eligible {
		t.Errorf("admitted loop0: kind %s, checks %+v", d.Kind, d.Checks)
	}
	f, err := Probe(context.Background(), m.source(), admit, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Disks {
		if d.Name == "loop0" && (d.Kind != KindDisk || d.Checks[CheckMounts] != Fail) {
			t.Errorf("probe with loop0 admitted: kind %s, checks %+v", d.Kind, d.Checks)
		}
	}
	if admit.admitsLoop("loop") || admit.admitsLoop("loop00") || DefaultPolicy().admitsLoop("loop0") {
		t.Error("admitsLoop matches more than the named device")
	}
	if _, err := Inspect(context.Background(), m.source(), "/dev/sdd1", p); err == nil || !strings.Contains(err.Error(), "partition of sdd") {
		t.Errorf("partition: err = %v", err)
	}
	if _, err := Inspect(context.Background(), m.source(), "/dev/nosuch", p); err == nil {
		t.Error("missing device: no error")
	}
}

func TestKVMVerdict(t *testing.T) {
	usable := kvmDevice{"usable", "/dev/kvm answers (API version 12)"}
	missing := kvmDevice{"missing", "/dev/kvm does not exist"}
	unknown := kvmDevice{Unknown, "a snapshot has no /dev"}
	cases := []struct {
		arch    string
		flags   []string
		dev     kvmDevice
		verdict string
		says    string
	}{
		{"amd64", []string{"vmx"}, usable, KVMYes, "vmx"},
		{"amd64", []string{"svm"}, missing, KVMNo, "does not exist"},
		{"amd64", []string{"vmx"}, unknown, KVMUnknown, "no /dev"},
		{"amd64", nil, usable, KVMNo, "neither vmx nor svm"},
		{"amd64", nil, unknown, KVMNo, "neither vmx nor svm"}, // the flag alone settles it
		{"arm64", nil, usable, KVMYes, "arm64"},
		{"arm64", nil, missing, KVMNo, "does not exist"},
		{"s390x", []string{"sie"}, unknown, KVMUnknown, "no /dev"},
	}
	for _, c := range cases {
		k := kvmVerdict(c.arch, c.flags, c.dev, []string{"kvm_pvm"})
		if k.Verdict != c.verdict || !strings.Contains(k.Reason, c.says) {
			t.Errorf("%s %v %s: %+v, want %s saying %q", c.arch, c.flags, c.dev.State, k, c.verdict, c.says)
		}
	}
}

func TestKVMDeviceErrors(t *testing.T) {
	m := buildFakeMachine(t)
	cases := []struct {
		err   error
		v     int
		state string
	}{
		{nil, 12, "usable"},
		{nil, 11, "missing"},
		{&fs.PathError{Op: "open", Path: "/dev/kvm", Err: fs.ErrNotExist}, 0, "missing"},
		{&fs.PathError{Op: "open", Path: "/dev/kvm", Err: fs.ErrPermission}, 0, Unknown},
	}
	for _, c := range cases {
		m.host.kvm, m.host.kvmErr = c.v, c.err
		if got := probeKVMDevice(m.source()); got.State != c.state {
			t.Errorf("%v/%d: %+v, want %s", c.err, c.v, got, c.state)
		}
	}
}

func TestMemoryRounding(t *testing.T) {
	fsys := os.DirFS(t.TempDir()) // no memory blocks: physical came from syslog or MemTotal
	cases := []struct {
		physical, usable int64
		gib              int
		source           string
	}{
		{316 * GiB / 10, 310 * GiB / 10, 32, "syslog"},
		{314 * GiB / 10, 310 * GiB / 10, 31, "syslog"},
		{319 * GiB / 10, 319 * GiB / 10, 32, "meminfo"}, // ghw fell back to MemTotal
		{-1, 75 * GiB / 10, 8, "meminfo"},
	}
	for _, c := range cases {
		m := memoryFrom(fsys, c.physical, c.usable)
		if m.InstalledGiB != c.gib || m.PhysicalSource != c.source {
			t.Errorf("physical %d usable %d: %+v, want %d GiB from %s", c.physical, c.usable, m, c.gib, c.source)
		}
	}
	p := DefaultPolicy()
	for _, c := range []struct {
		gib  int
		want string
	}{{31, controlplan.Single}, {32, controlplan.Multi}, {64, controlplan.Multi}} {
		f := &Facts{Memory: Memory{InstalledGiB: c.gib}}
		f.Decide(p, nil)
		if f.Decisions.MySQLTopology != c.want {
			t.Errorf("%d GiB: %s, want %s", c.gib, f.Decisions.MySQLTopology, c.want)
		}
	}
}

func TestArchFromCPUInfo(t *testing.T) {
	cases := map[string]string{
		"processor\t: 0\nflags\t\t: fpu lm vmx\n":                         "amd64",
		"processor\t: 0\nflags\t\t: fpu vme\n":                            "386",
		"processor\t: 0\nFeatures\t: fp asimd\nCPU architecture: 8\n":     "arm64",
		"vendor_id       : IBM/S390\nfeatures\t: esan3 zarch stfle sie\n": "s390x",
		"processor\t: 0\nisa\t\t: rv64imafdc\n":                           "riscv64",
		"processor\t: 0\ncpu\t\t: POWER9 (architected)\n":                 "unknown",
		"processor\t: 0\nFeatures\t: half thumb\nCPU architecture: 7\n":   "arm",
	}
	for in, want := range cases {
		if got := archFromCPUInfo(in); got != want {
			t.Errorf("%q: %s, want %s", in, got, want)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
	p := DefaultPolicy()
	p.MySQLMultiMinGiB = 0
	if p.Validate() == nil {
		t.Error("zero threshold accepted")
	}
	p = DefaultPolicy()
	p.Roles[roles.Compute] = RoleMinimums{KVMMissing: "fatal"}
	if p.Validate() == nil {
		t.Error("unknown level accepted")
	}
	p = DefaultPolicy()
	p.Roles["web"] = RoleMinimums{}
	if p.Validate() == nil {
		t.Error("unknown role accepted")
	}
	if _, err := Probe(context.Background(), fakeSource{}, p, nil); err == nil {
		t.Error("Probe ran with an invalid policy")
	}
}

// TestEvaluateIsPure: the same facts under another policy give that policy's answer.
func TestEvaluateIsPure(t *testing.T) {
	d := Disk{Name: "sdb", Kind: KindDisk, SizeBytes: 8 * GiB, Partitions: []string{}, Holders: []Holder{}, Mounts: []Mount{}, Signatures: []string{}}
	p := DefaultPolicy()
	Evaluate(&d, p)
	if d.Eligible || d.Checks[CheckSize] != Fail {
		t.Fatalf("8 GiB under a 10 GiB minimum: %+v", d)
	}
	p.MinOSDDiskBytes = 4 * GiB
	Evaluate(&d, p)
	if !d.Eligible || len(d.Reasons) != 0 {
		t.Fatalf("8 GiB under a 4 GiB minimum: %+v", d)
	}
	d.Signatures = []string{SigXFS}
	Evaluate(&d, p)
	if d.Eligible || !d.WipeEligible {
		t.Fatalf("only a signature: %+v", d)
	}
	d.Partitions = []string{"sdb1"}
	Evaluate(&d, p)
	if d.WipeEligible {
		t.Fatalf("partitions and a signature must not be wipe-eligible: %+v", d)
	}
	// Facts nobody read are not a pass: the disk is rejected, with a reason.
	d2 := Disk{Name: "sdx", Kind: KindDisk, SizeBytes: 100 * GiB, Partitions: []string{}, Holders: []Holder{}, Mounts: []Mount{}}
	Evaluate(&d2, p)
	if d2.Eligible || d2.WipeEligible || d2.Checks[CheckSignatures] != Skipped || !reflect.DeepEqual(d2.Reasons, []string{"unknown signatures: not checked", "unknown osd: not checked"}) {
		t.Errorf("unread signatures: %+v", d2)
	}
	var names []string
	for c := range d.Checks {
		names = append(names, c)
	}
	sort.Strings(names)
	if want := sortedChecks(CheckOrder); !reflect.DeepEqual(names, want) {
		t.Errorf("checks %v, want every check %v", names, want)
	}
}
