package hwprobe

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"syscall"
)

// mountEntry is one line of the mount table (or of /proc/swaps).
type mountEntry struct {
	Dev        devNo
	HasDev     bool
	Source     string
	Mountpoint string
	FSType     string
}

// mountTable is the machine's mounts and active swap, each traced to the
// kernel device it lives on.
type mountTable struct {
	// Known is false when no mount table could be read; Why says why.
	Known bool
	Why   string
	// ByDevice maps a kernel device name to its mounts.
	ByDevice map[string][]Mount
	// Unresolved are block-device sources that could not be traced to a
	// device (a snapshot has no /dev and no device-mapper names).
	Unresolved []mountEntry
}

// readMountTable reads /proc/self/mountinfo, else /proc/self/mounts, else
// /etc/mtab (its symbolic link followed inside the root only), and
// /proc/swaps.
func readMountTable(fsys fs.FS, sb *sysBlock) mountTable {
	mt := mountTable{ByDevice: map[string][]Mount{}}
	entries, err := readMountEntries(fsys)
	if err != nil {
		mt.Why = err.Error()
		return mt
	}
	mt.Known = true
	if swaps, err := fs.ReadFile(fsys, "proc/swaps"); err == nil {
		entries = append(entries, parseSwaps(string(swaps))...)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		name, ok := "", false
		if e.HasDev && e.Dev.Major != 0 {
			name, ok = sb.byDev[e.Dev]
		}
		if !ok {
			name, ok = sb.resolveDevice(e.Source)
		}
		if !ok {
			if strings.HasPrefix(e.Source, "/dev/") && !virtualSource(e.Source) && !notBlockSource(fsys, e) {
				mt.Unresolved = append(mt.Unresolved, e)
			}
			continue
		}
		key := name + "\x00" + e.Mountpoint
		if seen[key] {
			continue
		}
		seen[key] = true
		mt.ByDevice[name] = append(mt.ByDevice[name], Mount{Device: name, Mountpoint: e.Mountpoint, FSType: e.FSType})
	}
	return mt
}

func readMountEntries(fsys fs.FS) ([]mountEntry, error) {
	if b, err := fs.ReadFile(fsys, "proc/self/mountinfo"); err == nil {
		return parseMountinfo(string(b)), nil
	}
	if b, err := fs.ReadFile(fsys, "proc/self/mounts"); err == nil {
		return parseMounts(string(b)), nil
	}
	// etc/mtab is often a link to /proc/self/mounts: follow it inside the
	// root only, as a chroot would, never to this machine's own table.
	p, err := resolve(fsys, "etc/mtab")
	if err == nil {
		if b, err := fs.ReadFile(fsys, p); err == nil {
			return parseMounts(string(b)), nil
		}
	}
	if target, lerr := fs.ReadLink(fsys, "etc/mtab"); lerr == nil {
		return nil, fmt.Errorf("no mount table: etc/mtab links to %s, which this source does not contain", target)
	}
	return nil, errors.New("no mount table (proc/self/mountinfo, proc/self/mounts, etc/mtab)")
}

// unescapeMount decodes the octal escapes of mount table fields (\040 is a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			o := s[i+1 : i+4]
			if o[0] >= '0' && o[0] <= '3' && o[1] >= '0' && o[1] <= '7' && o[2] >= '0' && o[2] <= '7' {
				b.WriteByte((o[0]-'0')<<6 | (o[1]-'0')<<3 | (o[2] - '0'))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseMountinfo parses /proc/self/mountinfo:
// "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue".
func parseMountinfo(s string) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			continue
		}
		e := mountEntry{Mountpoint: unescapeMount(f[4]), FSType: f[sep+1], Source: unescapeMount(f[sep+2])}
		if n, err := parseDevNo(f[2]); err == nil {
			e.Dev, e.HasDev = n, true
		}
		out = append(out, e)
	}
	return out
}

// parseMounts parses /proc/self/mounts or /etc/mtab: "source mountpoint fstype options 0 0".
func parseMounts(s string) []mountEntry {
	var out []mountEntry
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		out = append(out, mountEntry{Source: unescapeMount(f[0]), Mountpoint: unescapeMount(f[1]), FSType: f[2]})
	}
	return out
}

// parseSwaps parses /proc/swaps into mount entries with mountpoint "[SWAP]".
func parseSwaps(s string) []mountEntry {
	var out []mountEntry
	for i, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 2 || f[1] != "partition" {
			continue // header, or a swap file (its filesystem is mounted anyway)
		}
		out = append(out, mountEntry{Source: unescapeMount(f[0]), Mountpoint: "[SWAP]", FSType: "swap"})
	}
	return out
}

// rdevName stats a resolved path inside the root and, if it is a block
// device node, returns the kernel name of its device number.
func (sb *sysBlock) rdevName(rel string) (string, bool) {
	fi, err := fs.Stat(sb.fsys, rel)
	if err != nil || fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
		return "", false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", false
	}
	r := uint64(st.Rdev)
	n := devNo{Major: uint32((r>>8)&0xfff | (r>>32)&^0xfff), Minor: uint32(r&0xff | (r>>12)&^0xff)}
	name, ok := sb.byDev[n]
	return name, ok
}

// notBlockSource reports a mount whose /dev source is not a block device,
// so it cannot be on a disk: a character device such as /dev/fuse (a
// desktop's document portal), or, where the source has no /dev to look in
// (a snapshot), a FUSE mount (fuse, fuse.*; fuseblk is on a block device).
func notBlockSource(fsys fs.FS, e mountEntry) bool {
	if fi, err := fs.Stat(fsys, strings.TrimPrefix(e.Source, "/")); err == nil {
		return fi.Mode()&fs.ModeCharDevice != 0
	}
	return e.Source == "/dev/fuse" || e.FSType == "fuse" || strings.HasPrefix(e.FSType, "fuse.")
}
