package hwprobe

import (
	"bytes"
	"context"
	"encoding/binary"
	"strings"
	"testing"
)

// noHost is a fake machine seen as a snapshot: no /dev to open.
type noHost struct{ fakeSource }

func (noHost) Host() Host { return nil }

func inspect(t *testing.T, src Source, path string) *Disk {
	t.Helper()
	d, err := Inspect(context.Background(), src, path, DefaultPolicy())
	if err != nil {
		t.Fatalf("inspect %s: %v", path, err)
	}
	return d
}

// TestUdevSignatureSource: when the device cannot be opened (a snapshot, or
// a device the kernel refuses), udev's recorded blkid properties answer,
// and the disk says so; unknown only when neither source knows.
func TestUdevSignatureSource(t *testing.T) {
	m := buildFakeMachine(t)
	delete(m.host.devices, "sdb") // the kernel refuses to open it
	m.file("run/udev/data/b8:16", "S:disk/by-id/wwn-0x5000\nE:ID_SERIAL=X1\nE:ID_PART_TABLE_TYPE=gpt\nE:ID_PART_TABLE_UUID=abcd\n")
	delete(m.host.devices, "sdj")
	m.file("run/udev/data/b8:144", "E:ID_SERIAL=X2\nE:ID_BUS=ata\n") // blkid found nothing
	delete(m.host.devices, "sdk")                                    // no udev record: unknown

	d := inspect(t, m.source(), "/dev/sdb")
	if d.SignatureSource != "udev" || !equalStrings(d.Signatures, []string{"gpt"}) || d.Checks[CheckSignatures] != Fail || !d.WipeEligible {
		t.Errorf("sdb from udev: source %q signatures %v checks %v wipe %v", d.SignatureSource, d.Signatures, d.Checks, d.WipeEligible)
	}
	d = inspect(t, m.source(), "/dev/sdj")
	if d.SignatureSource != "udev" || len(d.Signatures) != 0 || d.Checks[CheckSignatures] != Pass || d.Checks[CheckOSD] != Pass {
		t.Errorf("sdj from udev: %q %v %v", d.SignatureSource, d.Signatures, d.Checks)
	}
	d = inspect(t, m.source(), "/dev/sdk")
	if d.Checks[CheckSignatures] != Unknown || !strings.Contains(strings.Join(d.Reasons, "; "), "udev has no record of it") {
		t.Errorf("sdk without udev record: %v %q", d.Checks, d.Reasons)
	}
	if d := inspect(t, m.source(), "/dev/sdc"); d.SignatureSource != "device" {
		t.Errorf("sdc read from the device: source %q", d.SignatureSource)
	}

	// A snapshot: no device opens; udev answers for the disks it recorded,
	// among them one that already is a bluestore OSD.
	snap := noHost{fakeSource{m}}
	m.file("run/udev/data/b8:32", "E:ID_FS_TYPE=ceph_bluestore\nE:ID_FS_USAGE=other\n")
	d = inspect(t, snap, "/dev/sdc")
	if d.SignatureSource != "udev" || d.Checks[CheckOSD] != Fail || !strings.Contains(d.OSD, "bluestore") || d.Eligible || d.WipeEligible {
		t.Errorf("snapshot sdc (bluestore per udev): %+v", d)
	}
	d = inspect(t, snap, "/dev/sdj")
	if d.Checks[CheckSignatures] != Pass || d.SignatureSource != "udev" {
		t.Errorf("snapshot sdj: %v %q", d.Checks, d.SignatureSource)
	}
	d = inspect(t, snap, "/dev/sdm")
	if d.Checks[CheckSignatures] != Unknown || d.SignatureSource != "" {
		t.Errorf("snapshot sdm without udev record: %v", d.Checks)
	}
	if _, ok := udevSignatures("S:only/a/link\n"); ok {
		t.Error("a record without properties counted as known")
	}
}

// TestNonBlockMountSources: a mount whose source is not a block device
// (FUSE's /dev/fuse) says nothing about disks and no longer makes every
// disk's mount check unknown; an untraceable block source still does.
func TestNonBlockMountSources(t *testing.T) {
	m := buildFakeMachine(t)
	m.file("proc/self/mountinfo", strings.Join([]string{
		"22 1 8:250 / / rw,relatime - ext4 /dev/sdz1 rw",
		"40 22 0:52 / /run/user/1000/doc rw,nosuid,nodev,relatime - fuse.portal /dev/fuse rw,user_id=1000",
		"41 22 0:53 / /mnt/sshfs rw - fuse.sshfs /dev/fuse rw",
		"",
	}, "\n"))
	// sdz1 is not in the machine: the root mount cannot be traced.
	d := inspect(t, m.source(), "/dev/sdb")
	reasons := strings.Join(d.Reasons, "; ")
	if d.Checks[CheckMounts] != Unknown || !strings.Contains(reasons, "/dev/sdz1") || strings.Contains(reasons, "fuse") {
		t.Errorf("with an untraceable block source: %v %q", d.Checks[CheckMounts], reasons)
	}
	m2 := buildFakeMachine(t)
	m2.file("proc/self/mountinfo", strings.Join([]string{
		"22 1 253:0 / / rw,relatime - ext4 /dev/mapper/vg0-root rw",
		"40 22 0:52 / /run/user/1000/doc rw,nosuid,nodev,relatime - fuse.portal /dev/fuse rw,user_id=1000",
		"",
	}, "\n"))
	d = inspect(t, m2.source(), "/dev/sdb")
	if d.Checks[CheckMounts] != Pass || !d.Eligible {
		t.Errorf("blank disk beside a FUSE mount: %v %q", d.Checks, d.Reasons)
	}
	// fuseblk sits on a block device: never ignored.
	if notBlockSource(m2.source().FS(), mountEntry{Source: "/dev/sdq1", FSType: "fuseblk"}) {
		t.Error("fuseblk on /dev/sdq1 taken for a non-block source")
	}
}

// TestRAIDMemberSignatures: firmware RAID metadata at the end of a disk.
func TestRAIDMemberSignatures(t *testing.T) {
	const size = 4 << 20
	be := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	cases := []struct {
		name string
		img  []byte
		want []string
	}{
		{"isw", image(size, map[int][]byte{size - 1024: []byte("Intel Raid ISM Cfg Sig. 1.3.00")}), []string{SigISWRaid}},
		{"ddf anchor in the last sector", image(size, map[int][]byte{size - 512: be(0xDE11DE11)}), []string{SigDDFRaid}},
		{"ddf anchor 257 sectors from the end", image(size, map[int][]byte{size - 257*512: le32(0xDE11DE11)}), []string{SigDDFRaid}},
		{"isw text off its sector", image(size, map[int][]byte{size - 4096: []byte("Intel Raid ISM Cfg Sig. ")}), nil},
	}
	for _, tc := range cases {
		ds, err := ReadSignatures(bytes.NewReader(tc.img), size)
		if err != nil {
			t.Fatal(err)
		}
		if !equalStrings(ds.Signatures, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, ds.Signatures, tc.want)
		}
	}
	if !strings.Contains(describeSignatures([]string{SigISWRaid}), "Intel Matrix RAID") {
		t.Errorf("description: %s", describeSignatures([]string{SigISWRaid}))
	}
}

// TestRemoteDisksNotLocal: NVMe over fabrics and iSCSI disks fail the type
// check; a PCIe NVMe disk passes.
func TestRemoteDisksNotLocal(t *testing.T) {
	m := buildFakeMachine(t)
	m.disk("nvme0n1", 100*GiB, "259:0", nil, []byte{})
	m.file("sys/block/nvme0n1/device/transport", "pcie\n")
	m.disk("nvme1n1", 100*GiB, "259:1", nil, []byte{})
	m.file("sys/block/nvme1n1/device/transport", "tcp\n")
	m.disk("nvme2n1", 100*GiB, "259:2", nil, []byte{}) // multipath: controllers below the subsystem
	m.file("sys/block/nvme2n1/device/nvme3/transport", "rdma\n")
	// iSCSI: the disk's sysfs path runs through a session.
	iscsi := "sys/devices/platform/host7/session2/target7:0:0/7:0:0:1/block/sdq"
	m.file(iscsi+"/size", "209715200")
	m.file(iscsi+"/removable", "0")
	m.file(iscsi+"/dev", "65:0")
	m.file(iscsi+"/queue/rotational", "1")
	m.mkdir(iscsi + "/holders")
	m.link("sys/block/sdq", "../devices/platform/host7/session2/target7:0:0/7:0:0:1/block/sdq")
	m.file("dev/sdq", "")
	m.host.devices["sdq"] = make([]byte, 1<<20)
	m.host.sizes.Store("sdq", int64(100*GiB))

	for path, want := range map[string]string{"/dev/nvme1n1": "NVMe over TCP", "/dev/nvme2n1": "NVMe over RDMA", "/dev/sdq": "iSCSI"} {
		d := inspect(t, m.source(), path)
		if d.Eligible || d.WipeEligible || d.Checks[CheckType] != Fail || !strings.Contains(strings.Join(d.Reasons, "; "), "reached over the network ("+want+"), not a local disk") {
			t.Errorf("%s: transport %q checks %v reasons %q", path, d.Transport, d.Checks, d.Reasons)
		}
	}
	if d := inspect(t, m.source(), "/dev/nvme0n1"); !d.Eligible || d.Transport != "" {
		t.Errorf("PCIe NVMe: %q %v %q", d.Transport, d.Checks, d.Reasons)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
