package hwprobe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Signature names, as blkid calls them.
const (
	SigGPT       = "gpt"
	SigDOS       = "dos" // MBR partition table
	SigExt2      = "ext2"
	SigExt3      = "ext3"
	SigExt4      = "ext4"
	SigXFS       = "xfs"
	SigBtrfs     = "btrfs"
	SigLVM2      = "LVM2_member"
	SigLUKS      = "crypto_LUKS"
	SigZFS       = "zfs_member"
	SigSwap      = "swap"
	SigISO9660   = "iso9660"
	SigBluestore = "ceph_bluestore"
	SigMDRaid    = "linux_raid_member"
	SigBcache    = "bcache"
	SigVFAT      = "vfat"
	SigNTFS      = "ntfs"
	// Firmware (fake) RAID members: Intel Matrix / RST and SNIA DDF.
	SigISWRaid = "isw_raid_member"
	SigDDFRaid = "ddf_raid_member"
)

// sigDescription says what a signature is, for reasons.
var sigDescription = map[string]string{
	SigGPT:       "GPT partition table",
	SigDOS:       "MBR (dos) partition table",
	SigExt2:      "ext2 filesystem",
	SigExt3:      "ext3 filesystem",
	SigExt4:      "ext4 filesystem",
	SigXFS:       "xfs filesystem",
	SigBtrfs:     "btrfs filesystem",
	SigLVM2:      "LVM2 physical volume label",
	SigLUKS:      "LUKS encryption header",
	SigZFS:       "ZFS pool label",
	SigSwap:      "swap signature",
	SigISO9660:   "ISO 9660 filesystem",
	SigBluestore: "Ceph bluestore label",
	SigMDRaid:    "md RAID superblock",
	SigBcache:    "bcache superblock",
	SigVFAT:      "FAT filesystem",
	SigNTFS:      "NTFS filesystem",
	SigISWRaid:   "Intel Matrix RAID (isw) member metadata",
	SigDDFRaid:   "DDF RAID member metadata",
}

// headBytes is how much of the start of a device is read: enough for the
// two leading ZFS labels (2 x 256 KiB), btrfs (64 KiB + 64) and iso9660 (32 KiB + 1).
const headBytes = 512 << 10

// tailBytes is how much of the end is read: the two trailing ZFS labels, md
// 0.90/1.0 superblocks and the backup GPT header.
const tailBytes = 512 << 10

// bluestoreMagic starts a Ceph bluestore block device label.
const bluestoreMagic = "bluestore block device\n"

// DeviceSignatures is what the first and last bytes of a device carry.
type DeviceSignatures struct {
	// Signatures in the order found (partition tables first).
	Signatures []string
	// OSD is "osd.N" when a bluestore label names its OSD.
	OSD string
	// OSDUUID and ClusterFSID come from a bluestore label.
	OSDUUID     string
	ClusterFSID string
	// TableEntries are the partitions the on-disk partition table lists
	// ("1 (type 0x83)"), read from the device itself: a kernel without
	// that table's parser shows none.
	TableEntries []string
}

// ReadSignatures reads the partition-table and filesystem signatures of a
// device of the given size.
func ReadSignatures(r io.ReaderAt, size int64) (DeviceSignatures, error) {
	head := make([]byte, min(int64(headBytes), size))
	if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return DeviceSignatures{}, fmt.Errorf("read start: %w", err)
	}
	var tail []byte
	tailOff := size - tailBytes
	if tailOff > int64(len(head)) {
		tail = make([]byte, tailBytes)
		if _, err := r.ReadAt(tail, tailOff); err != nil && !errors.Is(err, io.EOF) {
			return DeviceSignatures{}, fmt.Errorf("read end: %w", err)
		}
	} else {
		// Small device: the head already covers the end.
		tail, tailOff = head, 0
	}
	return detect(head, tail, tailOff, size), nil
}

func detect(head, tail []byte, tailOff, size int64) DeviceSignatures {
	var ds DeviceSignatures
	add := func(s string) {
		for _, x := range ds.Signatures {
			if x == s {
				return
			}
		}
		ds.Signatures = append(ds.Signatures, s)
	}
	at := func(b []byte, off int, magic string) bool {
		return off >= 0 && off+len(magic) <= len(b) && string(b[off:off+len(magic)]) == magic
	}

	// Partition tables.
	if at(head, 512, "EFI PART") || at(head, 4096, "EFI PART") {
		add(SigGPT)
		ds.TableEntries = gptEntries(head)
	} else if size >= 512 && isBackupGPT(tail, tailOff, size) {
		add(SigGPT)
	} else if isMBR(head) {
		add(SigDOS)
		ds.TableEntries = mbrEntries(head)
	}

	// Filesystems and volume labels at the start.
	switch {
	case at(head, 0, bluestoreMagic):
		add(SigBluestore)
		parseBluestoreLabel(head, &ds)
	case at(head, 0, "XFSB"):
		add(SigXFS)
	case at(head, 0, "LUKS\xba\xbe"):
		add(SigLUKS)
	}
	if fs := extType(head); fs != "" {
		add(fs)
	}
	if at(head, 0x10040, "_BHRfS_M") {
		add(SigBtrfs)
	}
	for s := 0; s < 4; s++ {
		if at(head, s*512, "LABELONE") && at(head, s*512+24, "LVM2 001") {
			add(SigLVM2)
			break
		}
	}
	for _, pg := range []int{4096, 8192, 16384, 65536} {
		if at(head, pg-10, "SWAPSPACE2") || at(head, pg-10, "SWAP-SPACE") {
			add(SigSwap)
			break
		}
	}
	if at(head, 0x8001, "CD001") {
		add(SigISO9660)
	}
	if isMDSuperblock(head, tail, tailOff, size) {
		add(SigMDRaid)
	}
	if at(head, 4096+24, "\xc6\x85\x73\xf6\x4e\x1a\x45\xca\x82\x65\xf5\x7f\x48\xba\x6d\x81") {
		add(SigBcache)
	}
	if isZFS(head, tail, tailOff, size) {
		add(SigZFS)
	}
	if isISW(tail, tailOff, size) {
		add(SigISWRaid)
	}
	if isDDF(tail, tailOff, size) {
		add(SigDDFRaid)
	}
	if at(head, 3, "NTFS    ") {
		add(SigNTFS)
	} else if at(head, 0x52, "FAT32   ") || at(head, 0x36, "FAT12   ") || at(head, 0x36, "FAT16   ") || at(head, 0x36, "FAT     ") {
		add(SigVFAT)
	}
	return ds
}

// isMBR reports a DOS partition table: the boot signature, valid status
// bytes in all four entries, and not a FAT or NTFS boot sector.
func isMBR(b []byte) bool {
	if len(b) < 512 || b[510] != 0x55 || b[511] != 0xAA {
		return false
	}
	if string(b[3:11]) == "NTFS    " || string(b[0x52:0x5a]) == "FAT32   " || string(b[0x36:0x3b]) == "FAT12" || string(b[0x36:0x3b]) == "FAT16" {
		return false
	}
	for i := 0; i < 4; i++ {
		if st := b[446+16*i]; st != 0x00 && st != 0x80 {
			return false
		}
	}
	return true
}

// mbrEntries lists the used entries of a DOS partition table: a type and a
// length.
func mbrEntries(b []byte) []string {
	var out []string
	for i := 0; i < 4; i++ {
		e := b[446+16*i : 446+16*(i+1)]
		if e[4] != 0 && binary.LittleEndian.Uint32(e[12:16]) != 0 {
			out = append(out, fmt.Sprintf("%d (type 0x%02x)", i+1, e[4]))
		}
	}
	return out
}

// gptEntries lists the used entries (a non-zero type GUID) of a GUID
// partition table whose primary header and entries lie in head, for
// 512-byte and 4 KiB sectors.
func gptEntries(head []byte) []string {
	for _, ss := range []int{512, 4096} {
		if len(head) < ss+92 || string(head[ss:ss+8]) != "EFI PART" {
			continue
		}
		h := head[ss:]
		lba := binary.LittleEndian.Uint64(h[72:80])
		n := binary.LittleEndian.Uint32(h[80:84])
		size := binary.LittleEndian.Uint32(h[84:88])
		if size < 128 || size > 4096 || n > 4096 || lba > uint64(len(head)/ss) {
			return nil
		}
		var out []string
		zero := make([]byte, 16)
		for i := uint32(0); i < n; i++ {
			off := int(lba)*ss + int(i*size)
			if off+16 > len(head) {
				break
			}
			if string(head[off:off+16]) != string(zero) {
				out = append(out, fmt.Sprintf("%d", i+1))
			}
		}
		return out
	}
	return nil
}

// isBackupGPT looks for the backup GPT header in the last 512-byte sector
// (or the last 4 KiB sector). A disk whose primary header was wiped still
// carries a partition table to blkid and to the kernel.
func isBackupGPT(tail []byte, tailOff, size int64) bool {
	for _, ss := range []int64{512, 4096} {
		off := size - ss - tailOff
		if off >= 0 && off+8 <= int64(len(tail)) && string(tail[off:off+8]) == "EFI PART" {
			return true
		}
	}
	return false
}

// extType distinguishes ext2/3/4 by their feature flags.
func extType(b []byte) string {
	const sb = 1024
	if len(b) < sb+0x68 || b[sb+0x38] != 0x53 || b[sb+0x39] != 0xEF {
		return ""
	}
	compat := binary.LittleEndian.Uint32(b[sb+0x5C:])
	incompat := binary.LittleEndian.Uint32(b[sb+0x60:])
	roCompat := binary.LittleEndian.Uint32(b[sb+0x64:])
	const (
		hasJournal   = 0x4
		journalDev   = 0x8
		ext3Incompat = 0x1 | 0x2 | 0x4 | 0x10 // compression, filetype, recover, meta_bg
		ext3RoCompat = 0x1 | 0x2 | 0x4        // sparse_super, large_file, btree_dir
	)
	if incompat&journalDev != 0 {
		return "jbd"
	}
	if incompat&^ext3Incompat != 0 || roCompat&^ext3RoCompat != 0 {
		return SigExt4
	}
	if compat&hasJournal != 0 {
		return SigExt3
	}
	return SigExt2
}

// tailAt returns n bytes of the device at off when the tail holds them.
func tailAt(tail []byte, tailOff, off int64, n int) []byte {
	if off < tailOff || off+int64(n) > tailOff+int64(len(tail)) {
		return nil
	}
	return tail[off-tailOff : off-tailOff+int64(n)]
}

// isISW finds Intel Matrix RAID metadata: its signature starts the
// second-to-last 512-byte sector.
func isISW(tail []byte, tailOff, size int64) bool {
	const magic = "Intel Raid ISM Cfg Sig. "
	b := tailAt(tail, tailOff, size-2*512, len(magic))
	return b != nil && string(b) == magic
}

// isDDF finds a SNIA DDF anchor header (magic 0xDE11DE11) in the last
// sector, or 257 sectors from the end where older writers put it.
func isDDF(tail []byte, tailOff, size int64) bool {
	for _, back := range []int64{1, 257} {
		b := tailAt(tail, tailOff, size-back*512, 4)
		if b != nil && (binary.BigEndian.Uint32(b) == 0xDE11DE11 || binary.LittleEndian.Uint32(b) == 0xDE11DE11) {
			return true
		}
	}
	return false
}

// isMDSuperblock finds an md superblock: version 1.1 at 0, 1.2 at 4 KiB,
// 1.0 near the end, 0.90 in the last 64 KiB-aligned block.
func isMDSuperblock(head, tail []byte, tailOff, size int64) bool {
	magicAt := func(b []byte, off int64) bool {
		return off >= 0 && off+4 <= int64(len(b)) && binary.LittleEndian.Uint32(b[off:]) == 0xa92b4efc
	}
	if magicAt(head, 0) || magicAt(head, 4096) {
		return true
	}
	if size < 128<<10 {
		return false
	}
	v10 := ((size >> 9) - 16) &^ 7 << 9
	v090 := (size&^(64<<10-1) - 64<<10)
	return magicAt(tail, v10-tailOff) || magicAt(tail, v090-tailOff)
}

// isZFS looks for uberblocks (magic 0x00bab10c) in the uberblock rings of
// the four vdev labels: two at the start, two at the end of the device.
func isZFS(head, tail []byte, tailOff, size int64) bool {
	const (
		label = 256 << 10
		ring  = 128 << 10
		magic = 0x00bab10c
	)
	found := 0
	scan := func(b []byte, start int64) {
		for off := start + ring; off+8 <= start+label && off+8 <= int64(len(b)); off += 1024 {
			if off < 0 {
				continue
			}
			le := binary.LittleEndian.Uint64(b[off:])
			be := binary.BigEndian.Uint64(b[off:])
			if le == magic || be == magic {
				found++
			}
		}
	}
	scan(head, 0)
	scan(head, label)
	if size >= 4*label {
		end := size &^ (label - 1)
		scan(tail, end-2*label-tailOff)
		scan(tail, end-label-tailOff)
	}
	return found >= 2
}

// parseBluestoreLabel reads the OSD uuid and the meta map (whoami,
// ceph_fsid) of a bluestore label: the magic, the 36-byte uuid and "\n",
// then an encoded bluestore_bdev_label_t (struct_v, compat, u32 length,
// uuid[16], u64 size, utime btime, string description, map<string,string> meta).
func parseBluestoreLabel(b []byte, ds *DeviceSignatures) {
	p := len(bluestoreMagic)
	if len(b) < p+37 {
		return
	}
	ds.OSDUUID = string(b[p : p+36])
	p += 37
	r := &leReader{b: b, p: p}
	r.skip(2)           // struct_v, struct_compat
	n := r.u32()        // encoded length
	end := r.p + int(n) // meta must end before this
	r.skip(16 + 8 + 8)  // osd_uuid, size, btime
	r.str()             // description
	count := r.u32()
	if r.err || count > 4096 {
		return
	}
	for i := uint32(0); i < count && !r.err && r.p <= end; i++ {
		k, v := r.str(), r.str()
		switch k {
		case "whoami":
			if _, err := strconv.Atoi(v); err == nil {
				ds.OSD = "osd." + v
			}
		case "ceph_fsid":
			ds.ClusterFSID = v
		}
	}
}

type leReader struct {
	b   []byte
	p   int
	err bool
}

func (r *leReader) skip(n int) {
	if r.p+n > len(r.b) {
		r.err = true
		return
	}
	r.p += n
}

func (r *leReader) u32() uint32 {
	if r.p+4 > len(r.b) {
		r.err = true
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.p:])
	r.p += 4
	return v
}

func (r *leReader) str() string {
	n := r.u32()
	if r.err || int(n) > len(r.b)-r.p {
		r.err = true
		return ""
	}
	s := string(r.b[r.p : r.p+int(n)])
	r.p += int(n)
	return s
}

// describeSignatures renders "GPT partition table, ext4 filesystem".
func describeSignatures(sigs []string) string {
	out := make([]string, 0, len(sigs))
	for _, s := range sigs {
		if d, ok := sigDescription[s]; ok {
			out = append(out, d+" ("+s+")")
		} else {
			out = append(out, s)
		}
	}
	return strings.Join(out, ", ")
}
