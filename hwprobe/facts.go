package hwprobe

import "github.com/cloudctl/cloudctl/roles"

// Facts is everything the probe found on one machine, plus the decisions and
// findings that follow from it. Its JSON form is the contract documented in
// docs/probe.md; field names must not change without updating it.
type Facts struct {
	// Source says where the facts come from: "live" or "snapshot".
	Source string `json:"source"`
	// SourcePath is the snapshot given to --snapshot; empty for the live machine.
	SourcePath string    `json:"source_path,omitempty"`
	Memory     Memory    `json:"memory"`
	CPU        CPU       `json:"cpu"`
	KVM        KVM       `json:"kvm"`
	Disks      []Disk    `json:"disks"`
	NICs       []NIC     `json:"nics"`
	Decisions  Decisions `json:"decisions"`
	// Roles are the roles the findings were computed for.
	Roles    []roles.Role `json:"roles"`
	Findings []Finding    `json:"findings"`
}

// Memory is the machine's RAM.
type Memory struct {
	// PhysicalBytes is the installed RAM: online memory blocks in sysfs, else
	// the kernel's boot log, else MemTotal (see PhysicalSource).
	PhysicalBytes uint64 `json:"physical_bytes"`
	// UsableBytes is MemTotal: what the kernel can use after firmware reservations.
	UsableBytes uint64 `json:"usable_bytes"`
	// InstalledGiB is PhysicalBytes rounded to the nearest GiB: the number
	// that thresholds (MySQL topology, role minimums) are compared with.
	InstalledGiB int `json:"installed_gib"`
	// PhysicalSource is "memory-blocks", "syslog" or "meminfo" (fallback to MemTotal).
	PhysicalSource string `json:"physical_source"`
}

// CPU describes the processors.
type CPU struct {
	// Arch is the architecture in Go's naming (amd64, arm64, s390x, ppc64le, ...) or "unknown".
	Arch    string `json:"arch"`
	Vendor  string `json:"vendor,omitempty"`
	Model   string `json:"model,omitempty"`
	Sockets int    `json:"sockets"`
	Cores   int    `json:"cores"`
	Threads int    `json:"threads"`
	// VirtFlags are the CPU flags that advertise hardware virtualization:
	// vmx (Intel) or svm (AMD) on x86, sie on s390x. Empty when none.
	VirtFlags []string `json:"virt_flags"`
}

// KVM verdicts.
const (
	KVMYes     = "yes"
	KVMNo      = "no"
	KVMUnknown = "unknown"
)

// KVM is the verdict on hardware-accelerated virtual machines.
type KVM struct {
	// Verdict is "yes", "no" or "unknown" (a needed fact could not be read).
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
}

// Disk kinds: what a block device is. Only KindDisk can hold an OSD.
const (
	KindDisk         = "disk"
	KindLoop         = "loop"
	KindRAM          = "ram"
	KindZRAM         = "zram"
	KindOptical      = "optical"
	KindFloppy       = "floppy"
	KindDeviceMapper = "device-mapper"
	KindMD           = "md"
	KindNBD          = "nbd"
	KindRBD          = "rbd"
	KindBcache       = "bcache"
)

// Check names, in the order reasons are listed.
const (
	CheckType       = "type"
	CheckRemovable  = "removable"
	CheckSize       = "size"
	CheckPartitions = "partitions"
	CheckSignatures = "signatures"
	CheckMounts     = "mounts"
	CheckHolders    = "holders"
	CheckOSD        = "osd"
)

// CheckOrder lists every eligibility check in display order.
var CheckOrder = []string{CheckType, CheckRemovable, CheckSize, CheckPartitions, CheckSignatures, CheckMounts, CheckHolders, CheckOSD}

// Check results.
const (
	Pass    = "pass"
	Fail    = "fail"
	Unknown = "unknown"
	// Skipped: not evaluated because the device is already excluded by type
	// (the probe does not open loop, optical, ... devices).
	Skipped = "skipped"
)

// Disk is one block device from /sys/block with its OSD eligibility.
//
// Holders, Mounts and Signatures are nil when they could not be read (see
// Unknown) and empty when read and found to be empty.
type Disk struct {
	Name      string `json:"name"`
	Path      string `json:"path"`
	SizeBytes uint64 `json:"size_bytes"`
	Vendor    string `json:"vendor,omitempty"`
	Model     string `json:"model,omitempty"`
	// Type is the drive type from ghw: hdd, ssd, odd, fdd, virtual or unknown.
	Type string `json:"type"`
	// Kind is what the device is (disk, loop, zram, device-mapper, ...).
	Kind      string `json:"kind"`
	Removable bool   `json:"removable"`
	// Partitions are the kernel's partitions of this disk (sda1, ...).
	Partitions []string `json:"partitions"`
	// TableEntries are the partitions its on-disk partition table lists,
	// read from the device (a kernel without that table's parser shows
	// none in Partitions).
	TableEntries []string `json:"table_entries,omitempty"`
	// Holders are the devices stacked on this disk or on its partitions.
	Holders []Holder `json:"holders"`
	// Mounts are the mounts (and active swap) of this disk or of anything stacked on it.
	Mounts []Mount `json:"mounts"`
	// Signatures are the partition-table and filesystem signatures at the
	// start (and end) of the whole disk, in blkid's names: gpt, dos, ext4,
	// xfs, btrfs, LVM2_member, crypto_LUKS, zfs_member, swap, iso9660,
	// ceph_bluestore, linux_raid_member, bcache, vfat, ntfs.
	Signatures []string `json:"signatures"`
	// OSD names the Ceph OSD this disk already carries ("osd.7"), if any.
	OSD string `json:"osd,omitempty"`
	// SignatureSource says where Signatures came from: "device" (its first
	// and last bytes) or "udev" (the blkid properties udev recorded in
	// /run/udev/data, when the device itself could not be read).
	SignatureSource string `json:"signature_source,omitempty"`
	// Transport is set for a disk reached over the network, which is not
	// local: nvme-tcp, nvme-rdma, nvme-fc (NVMe over fabrics) or iscsi.
	Transport string `json:"transport,omitempty"`
	// SCSIAddress is host:channel:target:lun for SCSI disks.
	SCSIAddress string `json:"scsi_address,omitempty"`
	// WWID is the device's world-wide identifier when sysfs has it.
	WWID string `json:"wwid,omitempty"`

	// Unknown maps a check to why its facts could not be read.
	Unknown map[string]string `json:"unknown,omitempty"`
	// Checks maps every check to pass, fail, unknown or skipped.
	Checks map[string]string `json:"checks"`
	// Eligible is true only when every check ran and passed.
	Eligible bool `json:"eligible"`
	// WipeEligible is true when the only failed check is signatures: the
	// disk can hold an OSD after an explicit, consented wipe. Never by default.
	WipeEligible bool `json:"wipe_eligible"`
	// Reasons explain every failed check, or every unknown one when nothing failed.
	Reasons []string `json:"reasons"`
}

// Holder is a device stacked on a disk (or on one of its partitions).
type Holder struct {
	// Name is the kernel name of the holder (dm-0, md127, bcache0).
	Name string `json:"name"`
	// Of is the disk or partition it holds (sda3).
	Of string `json:"of"`
	// Kind is lvm, multipath, md, bcache, crypt, partition-mapping or device-mapper.
	Kind string `json:"kind"`
	// Label is the device-mapper or md name (mainvg-root, mpatha), when known.
	Label string `json:"label,omitempty"`
}

// Mount is a mounted filesystem or active swap on a disk or on something stacked on it.
type Mount struct {
	// Device is the kernel name of the mounted device (sda2, dm-3).
	Device     string `json:"device"`
	Mountpoint string `json:"mountpoint"`
	FSType     string `json:"fstype,omitempty"`
}

// NIC is a network interface (loopback excluded).
type NIC struct {
	Name string `json:"name"`
	// MAC is the hardware address; empty when unknown.
	MAC string `json:"mac,omitempty"`
	// State is up, down or unknown.
	State string `json:"state"`
	// Addresses are the interface's IP addresses in CIDR form; null when
	// they cannot be known (a snapshot), empty when there are none.
	Addresses []string `json:"addresses"`
	// Virtual is true for software interfaces (bridges, veth, bonds, ...).
	Virtual bool `json:"virtual"`
	// SpeedMbps is the link speed in Mb/s; 0 when unknown (link down, virtual).
	SpeedMbps  int    `json:"speed_mbps,omitempty"`
	PCIAddress string `json:"pci_address,omitempty"`
}

// Decisions are the choices the probe takes by itself, each with the fact
// that led to it.
type Decisions struct {
	// MySQLTopology is "single" (one MariaDB instance) or "multi" (one per service).
	MySQLTopology string `json:"mysql_topology"`
	MySQLReason   string `json:"mysql_reason"`
	// OSDDisks are the paths of the eligible disks, the default OSD selection.
	OSDDisks []string `json:"osd_disks"`
	// WipeCandidates are disks that would be eligible after an explicit wipe.
	WipeCandidates []string `json:"wipe_candidates"`
}

// Finding levels.
const (
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"
)

// Finding is one readiness result for a role.
type Finding struct {
	// Level is info, warn or error (error: the role cannot be taken as is).
	Level string `json:"level"`
	// Role is the role the finding is about.
	Role roles.Role `json:"role"`
	// Check names what was checked: cores, memory, kvm, disks, mysql.
	Check   string `json:"check"`
	Message string `json:"message"`
}
