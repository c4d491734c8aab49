package hwprobe

import (
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"
)

// blockDev is one kernel block device (a disk, a partition, a dm or md device).
type blockDev struct {
	Name   string
	Dev    devNo
	HasDev bool
	// Sys is its sysfs directory relative to the root ("sys/block/sda/sda1").
	Sys string
	// Parent is the disk of a partition; empty for a whole device.
	Parent string
}

// sysBlock indexes every block device the kernel lists in /sys/block,
// with their partitions, by name, by number and by device-mapper name.
type sysBlock struct {
	fsys     fs.FS
	byName   map[string]blockDev
	byDev    map[devNo]string
	dmByName map[string]string
}

func readSysBlock(fsys fs.FS) *sysBlock {
	sb := &sysBlock{fsys: fsys, byName: map[string]blockDev{}, byDev: map[devNo]string{}, dmByName: map[string]string{}}
	ents, err := fs.ReadDir(fsys, "sys/block")
	if err != nil {
		return sb
	}
	for _, e := range ents {
		name := e.Name()
		dir := "sys/block/" + name
		sb.add(blockDev{Name: name, Sys: dir})
		if dm, err := readString(fsys, dir+"/dm/name"); err == nil && dm != "" {
			sb.dmByName[dm] = name
		}
		for _, p := range partitionNames(fsys, dir, name) {
			sb.add(blockDev{Name: p, Sys: dir + "/" + p, Parent: name})
		}
	}
	return sb
}

func (sb *sysBlock) add(d blockDev) {
	if s, err := readString(sb.fsys, d.Sys+"/dev"); err == nil {
		if n, err := parseDevNo(s); err == nil {
			d.Dev, d.HasDev = n, true
			sb.byDev[n] = d.Name
		}
	}
	sb.byName[d.Name] = d
}

// partitionNames lists the partitions in a disk's sysfs directory: the
// entries named after the disk that have a "partition" file (or, in old
// snapshots without it, a "start" file).
func partitionNames(fsys fs.FS, dir, disk string) []string {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, disk) || n == disk {
			continue
		}
		if exists(fsys, dir+"/"+n+"/partition") || exists(fsys, dir+"/"+n+"/start") {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return naturalLess(out[i], out[j]) })
	return out
}

// naturalLess orders sda2 before sda10.
func naturalLess(a, b string) bool {
	ta, na := splitTrailingDigits(a)
	tb, nb := splitTrailingDigits(b)
	if ta != tb {
		return a < b
	}
	if len(na) != len(nb) {
		return len(na) < len(nb)
	}
	return na < nb
}

func splitTrailingDigits(s string) (string, string) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	return s[:i], s[i:]
}

// holders lists the holders of a device (its sysfs "holders" directory).
// known is false when the directory is missing (a snapshot).
func (sb *sysBlock) holders(d blockDev) (names []string, known bool) {
	ents, err := fs.ReadDir(sb.fsys, d.Sys+"/holders")
	if err != nil {
		return nil, false
	}
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, true
}

// classifyHolder says what a holder is, from its name and device-mapper uuid.
func (sb *sysBlock) classifyHolder(name string) (kind, label string) {
	dir := "sys/block/" + name
	switch {
	case strings.HasPrefix(name, "dm-"):
		label, _ = readString(sb.fsys, dir+"/dm/name")
		uuid, _ := readString(sb.fsys, dir+"/dm/uuid")
		switch {
		case strings.HasPrefix(uuid, "LVM-"):
			return "lvm", label
		case strings.HasPrefix(uuid, "mpath-"):
			return "multipath", label
		case strings.HasPrefix(uuid, "CRYPT-"):
			return "crypt", label
		case strings.HasPrefix(uuid, "part"):
			return "partition-mapping", label
		}
		return "device-mapper", label
	case strings.HasPrefix(name, "md"):
		return "md", ""
	case strings.HasPrefix(name, "bcache"):
		return "bcache", ""
	}
	return "other", ""
}

// stackOf returns the direct holders of a disk and its partitions, every
// device stacked on it at any depth (the disk and its partitions included),
// and whether the holders could be read at all.
func (sb *sysBlock) stackOf(disk string, parts []string) (direct []Holder, stack []blockDev, known bool) {
	known = true
	seen := map[string]bool{}
	var queue []blockDev
	push := func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		d, ok := sb.byName[n]
		if !ok {
			d = blockDev{Name: n, Sys: "sys/block/" + n}
		}
		queue = append(queue, d)
		stack = append(stack, d)
	}
	push(disk)
	for _, p := range parts {
		push(p)
	}
	base := len(queue)
	for i := 0; i < len(queue); i++ {
		d := queue[i]
		hs, ok := sb.holders(d)
		if !ok {
			if i < base {
				known = false
			}
			continue
		}
		for _, h := range hs {
			if i < base {
				kind, label := sb.classifyHolder(h)
				direct = append(direct, Holder{Name: h, Of: d.Name, Kind: kind, Label: label})
			}
			push(h)
		}
	}
	return direct, stack, known
}

// resolveDevice finds the kernel device a path under /dev names: a device
// name (/dev/sda2), a /dev/mapper name, or any symlink (/dev/disk/by-*)
// followed inside the source's root. ok is false when it cannot be traced.
func (sb *sysBlock) resolveDevice(p string) (string, bool) {
	if !strings.HasPrefix(p, "/dev/") {
		return "", false
	}
	if r, err := resolve(sb.fsys, p); err == nil {
		if strings.HasPrefix(r, "dev/") {
			if _, ok := sb.byName[path.Base(r)]; ok {
				return path.Base(r), true
			}
		}
		if n, ok := sb.rdevName(r); ok {
			return n, true
		}
	}
	if m, ok := strings.CutPrefix(p, "/dev/mapper/"); ok {
		if n, ok := sb.dmByName[m]; ok {
			return n, true
		}
		return "", false
	}
	if rest := strings.TrimPrefix(p, "/dev/"); !strings.Contains(rest, "/") {
		if _, ok := sb.byName[rest]; ok {
			return rest, true
		}
	}
	return "", false
}

// virtualSource reports a /dev path of a device that is never stacked on
// a disk (loop, zram, ram, nbd, optical): its mounts do not concern disks.
func virtualSource(p string) bool {
	b := path.Base(p)
	for _, pre := range []string{"loop", "zram", "ram", "nbd", "sr", "fd"} {
		if strings.HasPrefix(b, pre) {
			return true
		}
	}
	return false
}

var scsiAddrRe = regexp.MustCompile(`^\d+:\d+:\d+:\d+$`)

// scsiAddress finds host:channel:target:lun in a disk's sysfs link.
func (sb *sysBlock) scsiAddress(name string) string {
	link, err := fs.ReadLink(sb.fsys, "sys/block/"+name)
	if err != nil {
		return ""
	}
	parts := strings.Split(link, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if scsiAddrRe.MatchString(parts[i]) {
			return parts[i]
		}
	}
	return ""
}

// wwid reads a disk's world-wide identifier (SCSI device/wwid, NVMe wwid).
func (sb *sysBlock) wwid(name string) string {
	for _, f := range []string{"/device/wwid", "/wwid"} {
		if s, err := readString(sb.fsys, "sys/block/"+name+f); err == nil && s != "" {
			return s
		}
	}
	return ""
}

// kindOf says what a device is from its kernel name.
func kindOf(name string) string {
	prefixes := []struct{ pre, kind string }{
		{"loop", KindLoop}, {"zram", KindZRAM}, {"ram", KindRAM}, {"sr", KindOptical},
		{"fd", KindFloppy}, {"dm-", KindDeviceMapper}, {"md", KindMD}, {"nbd", KindNBD}, {"rbd", KindRBD}, {"bcache", KindBcache},
	}
	for _, p := range prefixes {
		if strings.HasPrefix(name, p.pre) {
			return p.kind
		}
	}
	return KindDisk
}

var iscsiSessionRe = regexp.MustCompile(`/session\d+/`)
var nvmeCtrlRe = regexp.MustCompile(`^nvme\d+$`)

// remoteTransport says how a disk is reached when it is not local: NVMe
// over fabrics (the controller's transport is tcp, rdma or fc; pcie and
// loop are local) or iSCSI (its sysfs path runs through a session). Empty
// for a local disk.
func (sb *sysBlock) remoteTransport(name string) string {
	dev := "sys/block/" + name + "/device"
	transports := []string{}
	if t, err := readString(sb.fsys, dev+"/transport"); err == nil {
		transports = append(transports, t)
	} else if ents, err := fs.ReadDir(sb.fsys, dev); err == nil {
		// A multipath NVMe namespace hangs off its subsystem: look at the
		// subsystem's controllers.
		for _, e := range ents {
			if nvmeCtrlRe.MatchString(e.Name()) {
				if t, err := readString(sb.fsys, dev+"/"+e.Name()+"/transport"); err == nil {
					transports = append(transports, t)
				}
			}
		}
	}
	for _, t := range transports {
		switch t {
		case "tcp", "rdma", "fc":
			return "nvme-" + t
		}
	}
	if link, err := fs.ReadLink(sb.fsys, "sys/block/"+name); err == nil && iscsiSessionRe.MatchString(link) {
		return "iscsi"
	}
	return ""
}

// transportText names a remote transport for people.
func transportText(t string) string {
	switch t {
	case "nvme-tcp":
		return "NVMe over TCP"
	case "nvme-rdma":
		return "NVMe over RDMA"
	case "nvme-fc":
		return "NVMe over Fibre Channel"
	case "iscsi":
		return "iSCSI"
	}
	return t
}
