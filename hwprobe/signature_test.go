package hwprobe

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// image builds a device image of size bytes with byte strings at offsets.
func image(size int, at map[int][]byte) []byte {
	b := make([]byte, size)
	for off, v := range at {
		copy(b[off:], v)
	}
	return b
}

func le32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func le64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }

// extSuperblock is an ext2/3/4 superblock at 1024 with the given features.
func extSuperblock(compat, incompat, roCompat uint32) map[int][]byte {
	return map[int][]byte{
		1024 + 0x38: {0x53, 0xEF},
		1024 + 0x5C: le32(compat),
		1024 + 0x60: le32(incompat),
		1024 + 0x64: le32(roCompat),
	}
}

// These images follow the on-disk formats (offsets and magics as in
// util-linux's libblkid); the loop-device tests check the same code on
// what the real tools write.
func TestSignatures(t *testing.T) {
	const mib = 1 << 20
	mbr := map[int][]byte{446: {0x80, 0, 0, 0, 0x83}, 510: {0x55, 0xAA}}
	zfs := map[int][]byte{}
	for _, label := range []int{0, 256 << 10} {
		zfs[label+128<<10] = le64(0x00bab10c)
		zfs[label+129<<10] = le64(0x00bab10c)
	}
	cases := []struct {
		name string
		img  []byte
		want []string
	}{
		{"blank", image(mib, nil), nil},
		{"gpt", image(mib, map[int][]byte{510: {0x55, 0xAA}, 446 + 4: {0xEE}, 512: []byte("EFI PART")}), []string{SigGPT}},
		{"gpt 4k sectors", image(mib, map[int][]byte{4096: []byte("EFI PART")}), []string{SigGPT}},
		{"backup gpt only", image(4*mib, map[int][]byte{4*mib - 512: []byte("EFI PART")}), []string{SigGPT}},
		{"dos", image(mib, mbr), []string{SigDOS}},
		{"mbr-like bytes with a bad status", image(mib, map[int][]byte{446: {0x12}, 510: {0x55, 0xAA}}), nil},
		{"ext2", image(mib, extSuperblock(0, 0x2, 0x1)), []string{SigExt2}},
		{"ext3", image(mib, extSuperblock(0x4, 0x2, 0x1)), []string{SigExt3}},
		{"ext4", image(mib, extSuperblock(0x4, 0x2|0x40|0x80|0x200, 0x1)), []string{SigExt4}},
		{"xfs", image(mib, map[int][]byte{0: []byte("XFSB")}), []string{SigXFS}},
		{"btrfs", image(mib, map[int][]byte{0x10040: []byte("_BHRfS_M")}), []string{SigBtrfs}},
		{"lvm2 in sector 1", image(mib, map[int][]byte{512: []byte("LABELONE"), 512 + 24: []byte("LVM2 001")}), []string{SigLVM2}},
		{"luks", image(mib, map[int][]byte{0: []byte("LUKS\xba\xbe\x00\x02")}), []string{SigLUKS}},
		{"zfs", image(mib, zfs), []string{SigZFS}},
		{"swap", image(mib, map[int][]byte{4096 - 10: []byte("SWAPSPACE2")}), []string{SigSwap}},
		{"swap 64k pages", image(mib, map[int][]byte{65536 - 10: []byte("SWAPSPACE2")}), []string{SigSwap}},
		{"iso9660", image(mib, map[int][]byte{0x8001: []byte("CD001")}), []string{SigISO9660}},
		{"md 1.2", image(mib, map[int][]byte{4096: le32(0xa92b4efc)}), []string{SigMDRaid}},
		{"md 0.90 at the end", image(4*mib, map[int][]byte{4*mib - 64<<10: le32(0xa92b4efc)}), []string{SigMDRaid}},
		{"bcache", image(mib, map[int][]byte{4096 + 24: []byte("\xc6\x85\x73\xf6\x4e\x1a\x45\xca\x82\x65\xf5\x7f\x48\xba\x6d\x81")}), []string{SigBcache}},
		{"vfat", image(mib, map[int][]byte{0x52: []byte("FAT32   "), 510: {0x55, 0xAA}}), []string{SigVFAT}},
		{"ntfs", image(mib, map[int][]byte{3: []byte("NTFS    "), 510: {0x55, 0xAA}}), []string{SigNTFS}},
		{"bluestore", image(mib, map[int][]byte{0: bluestoreImage("7")}), []string{SigBluestore}},
		{"iso hybrid (mbr + iso9660)", image(mib, map[int][]byte{446: {0x80}, 510: {0x55, 0xAA}, 0x8001: []byte("CD001")}), []string{SigDOS, SigISO9660}},
		{"tiny device", image(600, map[int][]byte{510: {0x55, 0xAA}}), []string{SigDOS}},
	}
	for _, c := range cases {
		ds, err := ReadSignatures(bytes.NewReader(c.img), int64(len(c.img)))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(ds.Signatures, c.want) {
			t.Errorf("%s: %v, want %v", c.name, ds.Signatures, c.want)
		}
	}
}

func TestBluestoreLabel(t *testing.T) {
	img := image(1<<20, map[int][]byte{0: bluestoreImage("42")})
	ds, err := ReadSignatures(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	if ds.OSD != "osd.42" || ds.OSDUUID != "aac72bf5-d998-422a-bbc5-6a9ea22854f4" || ds.ClusterFSID != "11111111-2222-3333-4444-555555555555" {
		t.Errorf("label = %+v", ds)
	}
	// A truncated label still reads as bluestore, without an OSD id.
	short := []byte(bluestoreMagic + "aac72bf5-d998-422a-bbc5-6a9ea22854f4\n\x02\x01\xff\xff")
	ds, err = ReadSignatures(bytes.NewReader(short), int64(len(short)))
	if err != nil || !reflect.DeepEqual(ds.Signatures, []string{SigBluestore}) || ds.OSD != "" {
		t.Errorf("truncated label: %+v, %v", ds, err)
	}
}

func TestResolveStaysInRoot(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string) {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(name, target string) {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	mk("dev/dm-0")
	mk("proc/self/mounts")
	ln("dev/mapper/vg-root", "../dm-0")
	ln("dev/disk/by-uuid/abc", "/dev/mapper/vg-root") // absolute, two hops
	ln("etc/mtab", "/proc/self/mounts")
	ln("escape", "../../../../../../etc/passwd") // ".." stops at the root
	ln("loop", "loop")
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fsys := r.FS()
	for in, want := range map[string]string{
		"/dev/mapper/vg-root":   "dev/dm-0",
		"/dev/disk/by-uuid/abc": "dev/dm-0",
		"etc/mtab":              "proc/self/mounts",
	} {
		got, err := resolve(fsys, in)
		if err != nil || got != want {
			t.Errorf("resolve(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got, err := resolve(fsys, "escape"); err == nil {
		t.Errorf("escape resolved to %q; /etc/passwd is not inside the root", got)
	}
	if _, err := resolve(fsys, "loop"); err == nil {
		t.Error("a symlink loop resolved")
	}
}

func TestMountParsing(t *testing.T) {
	mi := parseMountinfo("36 35 98:0 /mnt1 /mnt\\040two rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n" +
		"37 35 0:21 / /proc rw - proc proc rw\nbroken line\n")
	want := []mountEntry{
		{Dev: devNo{98, 0}, HasDev: true, Source: "/dev/root", Mountpoint: "/mnt two", FSType: "ext3"},
		{Dev: devNo{0, 21}, HasDev: true, Source: "proc", Mountpoint: "/proc", FSType: "proc"},
	}
	if !reflect.DeepEqual(mi, want) {
		t.Errorf("mountinfo = %+v", mi)
	}
	m := parseMounts("/dev/sda2 /boot ext4 rw 0 0\n# comment\n/dev/mapper/vg-a\\040b /x\\011y xfs rw 0 0\n")
	if len(m) != 2 || m[1].Source != "/dev/mapper/vg-a b" || m[1].Mountpoint != "/x\ty" {
		t.Errorf("mounts = %+v", m)
	}
	s := parseSwaps("Filename Type Size Used Priority\n/dev/sda2 partition 100 0 -2\n/swapfile file 100 0 -3\n")
	if len(s) != 1 || s[0].Source != "/dev/sda2" || s[0].Mountpoint != "[SWAP]" {
		t.Errorf("swaps = %+v", s)
	}
}

func TestHumanBytes(t *testing.T) {
	for in, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 10 * GiB: "10 GiB", 500107862016: "466 GiB", 1536 << 20: "1.5 GiB"} {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", in, got, want)
		}
	}
}

// TestPartitionTableEntries: the partitions a table lists are read from the
// device, so a kernel without the table's parser (no partitions in sysfs)
// still refuses the disk instead of offering it for a wipe.
func TestPartitionTableEntries(t *testing.T) {
	const size = 64 << 20
	mbr := make([]byte, 512)
	mbr[510], mbr[511] = 0x55, 0xAA
	ds := detect(mbr, mbr, 0, size)
	if len(ds.Signatures) != 1 || ds.Signatures[0] != SigDOS || len(ds.TableEntries) != 0 {
		t.Fatalf("empty DOS table: %+v", ds)
	}
	e := mbr[446+16 : 446+32] // the second entry
	e[4] = 0x83
	binary.LittleEndian.PutUint32(e[8:12], 2048)
	binary.LittleEndian.PutUint32(e[12:16], 4096)
	if ds = detect(mbr, mbr, 0, size); len(ds.TableEntries) != 1 || ds.TableEntries[0] != "2 (type 0x83)" {
		t.Fatalf("DOS table with one partition: %+v", ds)
	}

	gpt := make([]byte, 64<<10)
	copy(gpt[512:], "EFI PART")
	binary.LittleEndian.PutUint64(gpt[512+72:], 2) // entries from LBA 2
	binary.LittleEndian.PutUint32(gpt[512+80:], 128)
	binary.LittleEndian.PutUint32(gpt[512+84:], 128)
	if ds = detect(gpt, gpt, 0, size); len(ds.TableEntries) != 0 {
		t.Fatalf("empty GPT: %+v", ds)
	}
	gpt[1024+3*128] = 0xaf // a type GUID in the fourth entry
	if ds = detect(gpt, gpt, 0, size); len(ds.TableEntries) != 1 || ds.TableEntries[0] != "4" {
		t.Fatalf("GPT with one partition: %+v", ds)
	}

	d := &Disk{Name: "vdb", Kind: KindDisk, SizeBytes: 100 << 30, Partitions: []string{}, Signatures: []string{SigGPT}, TableEntries: ds.TableEntries, Mounts: []Mount{}, Holders: []Holder{}}
	Evaluate(d, DefaultPolicy())
	if d.Eligible || d.WipeEligible || d.Checks[CheckPartitions] != Fail {
		t.Fatalf("a table that lists a partition: eligible %v, wipe-eligible %v, checks %+v", d.Eligible, d.WipeEligible, d.Checks)
	}
	d.TableEntries = nil
	Evaluate(d, DefaultPolicy())
	if !d.WipeEligible {
		t.Fatalf("an empty table is a signature only: %+v", d.Checks)
	}
}
