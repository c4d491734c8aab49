package hwprobe

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"
)

// readString reads a small file and trims surrounding white space.
func readString(fsys fs.FS, name string) (string, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// exists reports whether name exists (without following a final symlink).
func exists(fsys fs.FS, name string) bool {
	_, err := fs.Lstat(fsys, name)
	return err == nil
}

var errLinkLoop = errors.New("too many levels of symbolic links")

// resolve follows every symbolic link in name the way a chroot would: an
// absolute target is taken relative to the root of fsys, and ".." stops at
// the root, so the result never leaves fsys. name and the result are
// slash-separated and relative to the root ("dev/mapper/x" -> "dev/dm-0").
// The final element must exist.
func resolve(fsys fs.FS, name string) (string, error) {
	parts := strings.Split(strings.TrimPrefix(name, "/"), "/")
	var out []string
	hops := 0
	for i := 0; i < len(parts); i++ {
		p := parts[i]
		switch p {
		case "", ".":
			continue
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			continue
		}
		cur := path.Join(append(append([]string{}, out...), p)...)
		fi, err := fs.Lstat(fsys, cur)
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			out = append(out, p)
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: %w", name, errLinkLoop)
		}
		target, err := fs.ReadLink(fsys, cur)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			out = nil
		}
		rest := append(strings.Split(target, "/"), parts[i+1:]...)
		parts, i = rest, -1
	}
	if len(out) == 0 {
		return ".", nil
	}
	return path.Join(out...), nil
}

// devNo is a block device number.
type devNo struct{ Major, Minor uint32 }

func (d devNo) String() string { return fmt.Sprintf("%d:%d", d.Major, d.Minor) }

// parseDevNo parses "8:16".
func parseDevNo(s string) (devNo, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return devNo{}, fmt.Errorf("bad device number %q", s)
	}
	ma, err := strconv.ParseUint(a, 10, 32)
	if err != nil {
		return devNo{}, fmt.Errorf("bad device number %q: %w", s, err)
	}
	mi, err := strconv.ParseUint(b, 10, 32)
	if err != nil {
		return devNo{}, fmt.Errorf("bad device number %q: %w", s, err)
	}
	return devNo{uint32(ma), uint32(mi)}, nil
}

// humanBytes renders a size with binary units: "465.8 GiB", "512 MiB".
func humanBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(b) / unit
	i := 0
	for v >= unit && i < len(units)-1 {
		v /= unit
		i++
	}
	if v >= 100 || v == float64(int64(v)) {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// HumanBytes renders a byte count with binary units, as the table view does.
func HumanBytes(b uint64) string { return humanBytes(b) }
