package hwprobe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/jaypipes/ghw"
	"github.com/jaypipes/ghw/pkg/block"
)

// diskEnv is what every disk's facts are read against: the block device
// index, the mount table and the OSDs the machine already runs.
type diskEnv struct {
	src    Source
	fsys   fs.FS
	host   Host
	sb     *sysBlock
	mounts mountTable
	// osdByDevice maps a kernel device name to the OSD whose data dir links to it.
	osdByDevice map[string]string
	// policy says which loop devices are judged as disks.
	policy Policy
}

func newDiskEnv(src Source, p Policy) *diskEnv {
	fsys := src.FS()
	sb := readSysBlock(fsys)
	e := &diskEnv{src: src, fsys: fsys, host: src.Host(), sb: sb, osdByDevice: map[string]string{}, policy: p}
	e.mounts = readMountTable(fsys, sb)
	e.readOSDDirs()
	return e
}

// readOSDDirs follows /var/lib/ceph/osd/<cluster>-<id>/block{,.db,.wal}
// to the devices that OSDs on this machine use.
func (e *diskEnv) readOSDDirs() {
	ents, err := fs.ReadDir(e.fsys, "var/lib/ceph/osd")
	if err != nil {
		return
	}
	for _, d := range ents {
		id := d.Name()
		if i := strings.LastIndexByte(id, '-'); i >= 0 {
			id = id[i+1:]
		}
		for _, l := range []string{"block", "block.db", "block.wal"} {
			p := "var/lib/ceph/osd/" + d.Name() + "/" + l
			r, err := resolve(e.fsys, p)
			if err != nil {
				continue
			}
			name, ok := "", false
			if strings.HasPrefix(r, "dev/") {
				if _, in := e.sb.byName[path.Base(r)]; in {
					name, ok = path.Base(r), true
				}
			}
			if !ok {
				name, ok = e.sb.rdevName(r)
			}
			if ok {
				e.osdByDevice[name] = "osd." + id
			}
		}
	}
}

// readDisks lists every block device with ghw and completes what ghw does
// not see. Devices excluded by type are not opened.
func (e *diskEnv) readDisks(ctx context.Context) ([]Disk, error) {
	info, err := ghw.Block(ctx, ghw.WithChroot(e.src.Root()), ghw.WithDisableTools(), ghw.WithDisableWarnings())
	if err != nil {
		return nil, fmt.Errorf("block devices: %w", err)
	}
	disks := make([]Disk, len(info.Disks))
	// Each disk's first and last bytes are read concurrently, so a machine
	// with many (spinning) disks waits for the slowest one, not for the sum.
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, gd := range info.Disks {
		disks[i] = e.fromGHW(gd)
		wg.Add(1)
		sem <- struct{}{}
		go func(d *Disk) {
			defer func() { <-sem; wg.Done() }()
			e.complete(ctx, d, d.Kind == KindDisk)
		}(&disks[i])
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Slice(disks, func(i, j int) bool { return naturalLess(disks[i].Name, disks[j].Name) })
	e.crossCheck(disks)
	return disks, nil
}

func (e *diskEnv) fromGHW(gd *block.Disk) Disk {
	d := Disk{
		Name:      gd.Name,
		Path:      "/dev/" + gd.Name,
		SizeBytes: gd.SizeBytes,
		Type:      strings.ToLower(gd.DriveType.String()),
		Kind:      kindOf(gd.Name),
		Removable: gd.IsRemovable,
		Vendor:    known(gd.Vendor),
		Model:     known(gd.Model),
	}
	if d.Kind == KindLoop && e.policy.admitsLoop(gd.Name) {
		// The manifest admits it (tests): every disk rule applies to it.
		d.Kind = KindDisk
	}
	dir := "sys/block/" + gd.Name
	if d.Vendor == "" {
		d.Vendor, _ = readString(e.fsys, dir+"/device/vendor")
	}
	if d.Model == "" {
		d.Model, _ = readString(e.fsys, dir+"/device/model")
	}
	if d.Model == "" {
		// NVMe namespaces: the model is on the controller.
		d.Model, _ = readString(e.fsys, dir+"/device/device/model")
	}
	d.Partitions = []string{}
	for _, p := range gd.Partitions {
		d.Partitions = append(d.Partitions, p.Name)
	}
	sort.Slice(d.Partitions, func(i, j int) bool { return naturalLess(d.Partitions[i], d.Partitions[j]) })
	return d
}

// known maps ghw's "unknown" to empty.
func known(s string) string {
	if s == "unknown" {
		return ""
	}
	return strings.TrimSpace(s)
}

// complete fills in holders, mounts, signatures and OSD use of one disk.
// openDevice says whether the device's bytes may be read.
func (e *diskEnv) complete(ctx context.Context, d *Disk, openDevice bool) {
	d.Unknown = map[string]string{}
	d.SCSIAddress = e.sb.scsiAddress(d.Name)
	d.WWID = e.sb.wwid(d.Name)
	d.Transport = e.sb.remoteTransport(d.Name)

	direct, stack, holdersKnown := e.sb.stackOf(d.Name, d.Partitions)
	if holdersKnown {
		d.Holders = direct
		if d.Holders == nil {
			d.Holders = []Holder{}
		}
	} else {
		d.Unknown[CheckHolders] = "no holders data in sysfs (" + e.src.Describe() + ")"
	}

	if e.mounts.Known {
		d.Mounts = []Mount{}
		for _, s := range stack {
			d.Mounts = append(d.Mounts, e.mounts.ByDevice[s.Name]...)
		}
		if len(e.mounts.Unresolved) > 0 {
			var srcs []string
			for _, u := range e.mounts.Unresolved {
				srcs = append(srcs, u.Source+" ("+u.Mountpoint+")")
			}
			d.Unknown[CheckMounts] = "mounted devices cannot be traced to their disks: " + strings.Join(srcs, ", ")
		}
	} else {
		d.Unknown[CheckMounts] = e.mounts.Why
	}

	for _, s := range stack {
		if osd, ok := e.osdByDevice[s.Name]; ok {
			d.OSD = osd
			break
		}
	}

	if !openDevice {
		return // signatures and the bluestore label stay skipped
	}
	if e.host == nil {
		if e.fromUdev(d) {
			return
		}
		d.Unknown[CheckSignatures] = "a snapshot has no /dev: the disk's first bytes (signatures, bluestore label) cannot be read, and udev has no record of it"
		if d.OSD == "" {
			d.Unknown[CheckOSD] = d.Unknown[CheckSignatures]
		}
		return
	}
	if err := ctx.Err(); err != nil {
		d.Unknown[CheckSignatures] = err.Error()
		d.Unknown[CheckOSD] = err.Error()
		return
	}
	ds, err := readDeviceSignatures(e.host, d.Name)
	if err != nil {
		if e.fromUdev(d) {
			return
		}
		why := fmt.Sprintf("cannot read %s: %v", d.Path, err)
		switch {
		case errors.Is(err, fs.ErrPermission) && os.Geteuid() != 0:
			why += " (run as root)"
		case errors.Is(err, fs.ErrPermission):
			why += " (refused by the system even to root: a device cgroup or security module)"
		}
		why += ", and udev has no record of it"
		d.Unknown[CheckSignatures] = why
		if d.OSD == "" {
			d.Unknown[CheckOSD] = why
		}
		return
	}
	d.SignatureSource = "device"
	d.Signatures = ds.Signatures
	d.TableEntries = ds.TableEntries
	if d.Signatures == nil {
		d.Signatures = []string{}
	}
	if d.OSD == "" && ds.OSD != "" {
		d.OSD = ds.OSD
	}
	if d.OSD == "" && containsStr(ds.Signatures, SigBluestore) {
		d.OSD = "bluestore OSD " + ds.OSDUUID
	}
}

// fromUdev fills in a disk's signatures and OSD use from the blkid
// properties udev recorded for it (/run/udev/data/b<major>:<minor>:
// ID_PART_TABLE_TYPE, ID_FS_TYPE), for when the device cannot be read. It
// reports false when there is no such record.
func (e *diskEnv) fromUdev(d *Disk) bool {
	bd, ok := e.sb.byName[d.Name]
	if !ok || !bd.HasDev {
		return false
	}
	b, err := fs.ReadFile(e.fsys, fmt.Sprintf("run/udev/data/b%d:%d", bd.Dev.Major, bd.Dev.Minor))
	if err != nil {
		return false
	}
	sigs, ok := udevSignatures(string(b))
	if !ok {
		return false
	}
	d.Signatures, d.SignatureSource = sigs, "udev"
	if d.OSD == "" && containsStr(sigs, SigBluestore) {
		d.OSD = "bluestore OSD (udev: " + SigBluestore + ")"
	}
	return true
}

// udevSignatures reads a udev database record. ok is false when it holds
// no properties at all (udev did not process the device).
func udevSignatures(rec string) (sigs []string, ok bool) {
	props := map[string]string{}
	for _, line := range strings.Split(rec, "\n") {
		if kv, found := strings.CutPrefix(strings.TrimSpace(line), "E:"); found {
			k, v, _ := strings.Cut(kv, "=")
			props[k] = v
		}
	}
	if len(props) == 0 {
		return nil, false
	}
	sigs = []string{}
	for _, k := range []string{"ID_PART_TABLE_TYPE", "ID_FS_TYPE"} {
		if v := props[k]; v != "" && !containsStr(sigs, v) {
			sigs = append(sigs, v)
		}
	}
	return sigs, true
}

func readDeviceSignatures(h Host, name string) (DeviceSignatures, error) {
	f, err := h.OpenBlock(name)
	if err != nil {
		return DeviceSignatures{}, err // a *fs.PathError: "open /dev/sdb: permission denied"
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return DeviceSignatures{}, fmt.Errorf("size: %w", err)
	}
	ds, err := ReadSignatures(f, size)
	if err != nil {
		return DeviceSignatures{}, fmt.Errorf("signatures: %w", err)
	}
	return ds, nil
}

// crossCheck looks at disks together: two disks with the same WWID are
// paths to one device (multipath); in a snapshot, which has no WWIDs or
// holders, the same SCSI LUN of the same size behind several
// host:target pairs is noted as a likely multipath path.
func (e *diskEnv) crossCheck(disks []Disk) {
	byWWID := map[string][]int{}
	for i, d := range disks {
		if d.Kind == KindDisk && d.WWID != "" {
			byWWID[d.WWID] = append(byWWID[d.WWID], i)
		}
	}
	for _, idx := range byWWID {
		if len(idx) < 2 {
			continue
		}
		for _, i := range idx {
			if hasHolderKind(disks[i].Holders, "multipath") {
				continue // the multipath map itself says it
			}
			for _, j := range idx {
				if i != j {
					disks[i].Holders = append(disks[i].Holders, Holder{Name: disks[j].Name, Of: disks[i].Name, Kind: "multipath-peer"})
				}
			}
			delete(disks[i].Unknown, CheckHolders)
		}
	}

	type lunKey struct {
		lun  string
		size uint64
	}
	groups := map[lunKey][]int{}
	for i, d := range disks {
		if d.Kind != KindDisk || d.SCSIAddress == "" || d.Holders != nil {
			continue
		}
		f := strings.Split(d.SCSIAddress, ":")
		if f[3] == "0" {
			continue // local disks are LUN 0 behind each target
		}
		k := lunKey{f[3], d.SizeBytes}
		groups[k] = append(groups[k], i)
	}
	for k, idx := range groups {
		paths := map[string]bool{}
		var names []string
		for _, i := range idx {
			f := strings.Split(disks[i].SCSIAddress, ":")
			paths[f[0]+":"+f[2]] = true
			names = append(names, disks[i].Name)
		}
		if len(paths) < 2 {
			continue
		}
		sort.Slice(names, func(i, j int) bool { return naturalLess(names[i], names[j]) })
		for _, i := range idx {
			disks[i].Unknown[CheckHolders] += fmt.Sprintf("; likely a multipath path: SCSI LUN %s of the same size (%s) is reached through %d paths (%s)",
				k.lun, humanBytes(k.size), len(idx), strings.Join(names, ", "))
		}
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hasHolderKind(hs []Holder, kind string) bool {
	for _, h := range hs {
		if h.Kind == kind {
			return true
		}
	}
	return false
}
