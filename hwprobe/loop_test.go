package hwprobe

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// These tests make real block devices: loop devices over small sparse
// files, written by the real tools (sgdisk, mkfs.ext4, pvcreate,
// cryptsetup, mkswap, ceph-osd --mkfs), and check InspectDevice's verdict
// and reasons on them, and libblkid's view (blkid -p) of the same bytes.
// They need root; everything they make is removed in t.Cleanup.

func requireLoopDevices(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped with -short: makes loop devices")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: loop devices need root (run the tests as root to check real devices)")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("skipped: losetup not installed")
	}
}

// run runs a command and fails the test with its output if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("skipped: %s not installed", name)
	}
}

// newLoop attaches a new loop device (never a fixed number) over a sparse
// file of sizeMiB and detaches it when the test ends, failed or not.
func newLoop(t *testing.T, sizeMiB int64, partscan bool) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(sizeMiB << 20); err != nil {
		f.Close()
		t.Fatal(err)
	}
	f.Close()
	args := []string{"-f", "--show"}
	if partscan {
		args = append(args, "-P")
	}
	dev := strings.TrimSpace(run(t, "losetup", append(args, img)...))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return dev
}

// mountOn mounts dev on a new directory and unmounts it at the end.
func mountOn(t *testing.T, dev string) string {
	t.Helper()
	dir := t.TempDir()
	run(t, "mount", dev, dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// blkidTypes is what libblkid finds on the device: TYPE and PTTYPE.
func blkidTypes(t *testing.T, dev string) []string {
	t.Helper()
	if _, err := exec.LookPath("blkid"); err != nil {
		return nil
	}
	out, _ := exec.Command("blkid", "-p", "-o", "export", dev).Output() // exit 2: nothing found
	var types []string
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "PTTYPE="); ok {
			types = append(types, v)
		}
		if v, ok := strings.CutPrefix(line, "TYPE="); ok {
			types = append(types, v)
		}
	}
	return types
}

// loopPolicy lets small loop files pass the size rule.
func loopPolicy() Policy {
	p := DefaultPolicy()
	p.MinOSDDiskBytes = 32 << 20
	return p
}

func TestLoopDevices(t *testing.T) {
	requireLoopDevices(t)
	cases := []struct {
		name    string
		sizeMiB int64
		tools   []string
		make    func(t *testing.T, dev string) (mountpoint string)
		// sigs are the signatures expected; fail the failing checks besides type.
		sigs []string
		fail []string
		says []string
	}{
		{
			name: "blank", sizeMiB: 64,
			make: func(t *testing.T, dev string) string { return "" },
			sigs: []string{},
		},
		{
			name: "gpt", sizeMiB: 64, tools: []string{"sgdisk"},
			make: func(t *testing.T, dev string) string { run(t, "sgdisk", "-o", dev); return "" },
			sigs: []string{SigGPT}, fail: []string{CheckSignatures},
			says: []string{"carries GPT partition table (gpt)"},
		},
		{
			name: "ext4", sizeMiB: 64, tools: []string{"mkfs.ext4"},
			make: func(t *testing.T, dev string) string { run(t, "mkfs.ext4", "-q", "-F", dev); return "" },
			sigs: []string{SigExt4}, fail: []string{CheckSignatures},
			says: []string{"carries ext4 filesystem (ext4)"},
		},
		{
			name: "lvm", sizeMiB: 64, tools: []string{"pvcreate"},
			make: func(t *testing.T, dev string) string {
				// No udev here: scan devices directly.
				run(t, "pvcreate", "-ff", "-y", "--config", "devices{obtain_device_list_from_udev=0}", dev)
				return ""
			},
			sigs: []string{SigLVM2}, fail: []string{CheckSignatures},
			says: []string{"LVM2 physical volume label (LVM2_member)"},
		},
		{
			name: "luks", sizeMiB: 64, tools: []string{"cryptsetup"},
			make: func(t *testing.T, dev string) string {
				key := filepath.Join(t.TempDir(), "key")
				if err := os.WriteFile(key, []byte("not a secret"), 0o600); err != nil {
					t.Fatal(err)
				}
				run(t, "cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", dev, key)
				return ""
			},
			sigs: []string{SigLUKS}, fail: []string{CheckSignatures},
		},
		{
			name: "swap", sizeMiB: 64, tools: []string{"mkswap"},
			make: func(t *testing.T, dev string) string { run(t, "mkswap", dev); return "" },
			sigs: []string{SigSwap}, fail: []string{CheckSignatures},
		},
		{
			name: "bluestore", sizeMiB: 256, tools: []string{"ceph-osd"},
			make: func(t *testing.T, dev string) string { cephOSDMkfs(t, dev, 7); return "" },
			sigs: []string{SigBluestore}, fail: []string{CheckSignatures, CheckOSD},
			says: []string{"already used by a Ceph OSD (osd.7)"},
		},
		{
			name: "mounted ext4", sizeMiB: 64, tools: []string{"mkfs.ext4"},
			make: func(t *testing.T, dev string) string {
				run(t, "mkfs.ext4", "-q", "-F", dev)
				return mountOn(t, dev)
			},
			sigs: []string{SigExt4}, fail: []string{CheckSignatures, CheckMounts},
			says: []string{" mounted at "},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, tool := range c.tools {
				needTool(t, tool)
			}
			dev := newLoop(t, c.sizeMiB, false)
			mp := c.make(t, dev)
			d, err := InspectDevice(context.Background(), dev, loopPolicy())
			if err != nil {
				t.Fatal(err)
			}
			name := filepath.Base(dev)
			if d.Name != name || d.Kind != KindLoop || d.SizeBytes != uint64(c.sizeMiB)<<20 {
				t.Errorf("inspected %s (%s, %d bytes), want %s, a loop of %d MiB", d.Name, d.Kind, d.SizeBytes, name, c.sizeMiB)
			}
			if !reflect.DeepEqual(d.Signatures, c.sigs) {
				t.Errorf("signatures %v, want %v", d.Signatures, c.sigs)
			}
			// libblkid must agree on what is on the device.
			if bt := blkidTypes(t, dev); !reflect.DeepEqual(bt, nilIfEmpty(c.sigs)) {
				t.Errorf("blkid -p finds %v, the probe %v", bt, c.sigs)
			}
			// A loop device is never an OSD candidate: it fails on type, and
			// on exactly the checks its content explains.
			wantFail := sortedChecks(append([]string{CheckType}, c.fail...))
			if got := checksIn(*d, Fail); !reflect.DeepEqual(got, wantFail) {
				t.Errorf("failed checks %v, want %v (reasons %q)", got, wantFail, d.Reasons)
			}
			if got := checksIn(*d, Unknown); len(got) != 0 {
				t.Errorf("unknown checks %v: %v", got, d.Unknown)
			}
			if d.Eligible || d.WipeEligible {
				t.Errorf("eligible=%v wipe=%v for a loop device", d.Eligible, d.WipeEligible)
			}
			reasons := strings.Join(d.Reasons, " | ")
			if !strings.Contains(reasons, "loop device, not a whole disk ("+name+")") {
				t.Errorf("reasons %q do not say it is a loop device", reasons)
			}
			for _, s := range c.says {
				if !strings.Contains(reasons, s) {
					t.Errorf("reasons %q do not say %q", reasons, s)
				}
			}
			if mp != "" && !strings.Contains(reasons, name+" mounted at "+mp) {
				t.Errorf("reasons %q do not say %s is mounted at %s", reasons, name, mp)
			}
			// The same facts on a whole disk: all that would stop it is the content.
			d.Kind = KindDisk
			Evaluate(d, loopPolicy())
			switch {
			case len(c.fail) == 0 && !d.Eligible:
				t.Errorf("blank device as a disk: not eligible: %q", d.Reasons)
			case reflect.DeepEqual(c.fail, []string{CheckSignatures}) && !d.WipeEligible:
				t.Errorf("signature only: want wipe_eligible, reasons %q", d.Reasons)
			case len(c.fail) > 1 && (d.Eligible || d.WipeEligible):
				t.Errorf("%v: want neither eligible nor wipe-eligible", c.fail)
			}
		})
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

// TestLoopMountedPartition: a GPT with one ext4 partition mounted; the
// mount is on the partition, stacked on the device, and still counts.
func TestLoopMountedPartition(t *testing.T) {
	requireLoopDevices(t)
	needTool(t, "sgdisk")
	needTool(t, "mkfs.ext4")
	dev := newLoop(t, 64, true)
	run(t, "sgdisk", "-n", "1:0:0", dev)
	part := dev + "p1"
	// The kernel re-reads the table when sgdisk closes the device, or not
	// (no udev, a busy device): then partx tells it. partx -u is a no-op
	// when the partition is known, so the test does not guess how long to
	// wait before asking.
	if _, err := os.Stat(part); err != nil {
		run(t, "partx", "-u", dev)
	}
	if err := waitFor(part); err != nil {
		t.Fatal(err)
	}
	run(t, "mkfs.ext4", "-q", "-F", part)
	mp := mountOn(t, part)
	d, err := InspectDevice(context.Background(), dev, loopPolicy())
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(dev)
	if !reflect.DeepEqual(d.Partitions, []string{name + "p1"}) {
		t.Errorf("partitions %v", d.Partitions)
	}
	want := sortedChecks([]string{CheckType, CheckPartitions, CheckSignatures, CheckMounts})
	if got := checksIn(*d, Fail); !reflect.DeepEqual(got, want) {
		t.Errorf("failed checks %v, want %v (reasons %q)", got, want, d.Reasons)
	}
	reasons := strings.Join(d.Reasons, " | ")
	for _, s := range []string{"has partitions: " + name + "p1", name + "p1 mounted at " + mp, "GPT partition table"} {
		if !strings.Contains(reasons, s) {
			t.Errorf("reasons %q do not say %q", reasons, s)
		}
	}
	if _, err := InspectDevice(context.Background(), part, loopPolicy()); err == nil || !strings.Contains(err.Error(), "partition of "+name) {
		t.Errorf("inspecting the partition: err = %v, want 'partition of %s'", err, name)
	}
}

// TestLoopProbeExcludesByType: the whole-machine probe lists loop devices
// but never as candidates, and does not open them.
func TestLoopProbeExcludesByType(t *testing.T) {
	requireLoopDevices(t)
	dev := newLoop(t, 64, false)
	m, err := OpenMachine()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	f, err := Probe(context.Background(), m, loopPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range f.Disks {
		if d.Path == dev {
			found = true
			if d.Eligible || d.Checks[CheckType] != Fail || d.Checks[CheckSignatures] != Skipped {
				t.Errorf("%s in the probe: %+v", dev, d)
			}
		}
		if d.Kind == KindLoop && containsStr(f.Decisions.OSDDisks, d.Path) {
			t.Errorf("loop device %s chosen for an OSD", d.Path)
		}
	}
	if !found {
		t.Errorf("%s not listed by the probe", dev)
	}
}

// cephOSDMkfs makes a real bluestore OSD (id whoami) on dev with ceph-osd
// --mkfs, without a monitor. The rocksdb buffers are shrunk to fit 256 MiB.
func cephOSDMkfs(t *testing.T, dev string, whoami int) {
	t.Helper()
	data := t.TempDir()
	if err := os.Symlink(dev, filepath.Join(data, "block")); err != nil {
		t.Fatal(err)
	}
	run(t, "ceph-osd", "--mkfs", "-i", fmt.Sprint(whoami),
		"--osd-objectstore", "bluestore", "--osd-data", data,
		"--osd-uuid", "aac72bf5-d998-422a-bbc5-6a9ea22854f4",
		"--fsid", "11111111-2222-3333-4444-555555555555",
		"--no-mon-config", "--conf", "/dev/null",
		"--keyring", filepath.Join(data, "keyring"),
		"--log-file", filepath.Join(data, "log"),
		"--bluestore_rocksdb_options", "compression=kNoCompression,max_write_buffer_number=2,min_write_buffer_number_to_merge=1,recycle_log_file_num=2,write_buffer_size=8388608,writable_file_max_buffer_size=0,compaction_readahead_size=2097152,max_background_compactions=2,max_total_wal_size=33554432")
}

// waitFor waits for udev (or the kernel) to create path; the deadline only
// bounds a hung test, it is not a speed expectation.
func waitFor(path string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within 30s", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
