// Package plan is the storage role's planning side: the disk entries a plan
// may name besides /dev paths (file-backed OSDs such as "loop:8GiB") and how
// they are shown. It is pure and links no runtime library (no go-ceph), so
// the CLI, the preseed and bootstrap use it; the storage driver reads the
// same entries.
package plan

import (
	"fmt"
	"strconv"
	"strings"
)

// FilePrefix starts a disk entry that asks for a file-backed OSD ("loop:8GiB").
const FilePrefix = "loop:"

// FileBackedNote is how plan and status show a file-backed OSD.
const FileBackedNote = "file-backed: not for production"

// MinFileBytes is the smallest file-backed OSD: BlueStore keeps its metadata
// on the same file.
const MinFileBytes = 1 << 30

// IsFileDisk reports whether path is a file-backed entry (valid or not).
func IsFileDisk(path string) bool { return strings.HasPrefix(path, FilePrefix) }

// ParseFileDisk reads a file-backed disk entry ("loop:8GiB", "loop:512MiB",
// "loop:10G"). ok is false when path is not such an entry.
func ParseFileDisk(path string) (size int64, ok bool, err error) {
	if !IsFileDisk(path) {
		return 0, false, nil
	}
	s := strings.TrimSpace(strings.TrimPrefix(path, FilePrefix))
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}}
	for _, u := range units {
		if !strings.HasSuffix(s, u.suffix) {
			continue
		}
		n, perr := strconv.ParseInt(strings.TrimSuffix(s, u.suffix), 10, 64)
		if perr != nil || n <= 0 || n > 1<<62/u.mult {
			return 0, true, fmt.Errorf("disk %q: the size must be a positive whole number followed by MiB, GiB or TiB (e.g. loop:8GiB)", path)
		}
		size = n * u.mult
		if size < MinFileBytes {
			return 0, true, fmt.Errorf("disk %q: a file-backed OSD needs at least 1GiB (BlueStore keeps its metadata on the same file)", path)
		}
		return size, true, nil
	}
	return 0, true, fmt.Errorf("disk %q: the size needs a unit, MiB, GiB or TiB (e.g. loop:8GiB)", path)
}
