package hwprobe

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/jaypipes/ghw/pkg/snapshot"
)

// Source is the machine being probed: its files (/proc, /sys, /dev, ...)
// under a root directory, and, for a running machine, the kernel access that
// files alone do not give.
type Source interface {
	// Describe names the source for people: "this machine", "snapshot x.tar.gz".
	Describe() string
	// Root is the directory that stands for "/"; ghw reads it as its chroot.
	Root() string
	// FS is Root as a file system that refuses to leave it, even through
	// absolute symbolic links.
	FS() fs.FS
	// Host is the running kernel behind the files, or nil for a snapshot
	// (which has no device nodes and no network state).
	Host() Host
}

// Host is what only a running machine can answer.
type Host interface {
	// OpenBlock opens the block device /dev/<name> read-only.
	OpenBlock(name string) (BlockDevice, error)
	// KVMAPIVersion opens /dev/kvm and returns KVM_GET_API_VERSION.
	KVMAPIVersion() (int, error)
	// InterfaceAddrs returns the IP addresses of an interface in CIDR form.
	InterfaceAddrs(name string) ([]string, error)
	// Machine returns the kernel's machine name (uname -m).
	Machine() (string, error)
}

// BlockDevice is an open block device.
type BlockDevice interface {
	io.ReaderAt
	io.Closer
	// Size is the device size in bytes.
	Size() (int64, error)
}

// Machine is the running machine as a Source.
type Machine struct {
	dir  string
	root *os.Root
}

// OpenMachine returns the running machine as a Source. Close releases it.
func OpenMachine() (*Machine, error) {
	return openMachineAt("/")
}

func openMachineAt(dir string) (*Machine, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dir, err)
	}
	return &Machine{dir: dir, root: r}, nil
}

// Describe implements Source.
func (m *Machine) Describe() string { return "this machine" }

// Root implements Source.
func (m *Machine) Root() string { return m.dir }

// FS implements Source. For the machine's own "/", where no symbolic link
// can lead outside, the kernel resolves each path in one call (os.Root walks
// it a component at a time in user space, several calls a component, and
// sysfs paths are long and full of links: the probe took twice as long).
func (m *Machine) FS() fs.FS {
	if m.dir == "/" {
		return os.DirFS("/")
	}
	return m.root.FS()
}

// Host implements Source.
func (m *Machine) Host() Host { return liveHost{dev: filepath.Join(m.dir, "dev")} }

// Close releases the machine's root.
func (m *Machine) Close() error { return m.root.Close() }

// Snapshot is a ghw snapshot as a Source: a tarball unpacked into a
// temporary directory, or a directory given as is.
type Snapshot struct {
	path     string
	dir      string
	unpacked bool
	root     *os.Root
}

// OpenSnapshot opens a ghw snapshot: a .tar.gz made by `ghwc snapshot`, or
// a directory holding an unpacked one. Close removes what it unpacked.
func OpenSnapshot(path string) (*Snapshot, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	s := &Snapshot{path: path, dir: path}
	if !st.IsDir() {
		dir, err := snapshot.Unpack(path)
		if err != nil {
			if dir != "" {
				_ = os.RemoveAll(dir)
			}
			return nil, fmt.Errorf("snapshot %s: unpack: %w", path, err)
		}
		s.dir, s.unpacked = dir, true
	}
	if _, err := os.Stat(filepath.Join(s.dir, "proc", "meminfo")); err != nil {
		_ = s.removeUnpacked()
		return nil, fmt.Errorf("snapshot %s: not a ghw snapshot (no proc/meminfo): %w", path, err)
	}
	s.root, err = os.OpenRoot(s.dir)
	if err != nil {
		_ = s.removeUnpacked()
		return nil, fmt.Errorf("snapshot %s: %w", path, err)
	}
	return s, nil
}

// Describe implements Source.
func (s *Snapshot) Describe() string { return "snapshot " + filepath.Base(s.path) }

// Path is the snapshot as given to OpenSnapshot.
func (s *Snapshot) Path() string { return s.path }

// Root implements Source.
func (s *Snapshot) Root() string { return s.dir }

// FS implements Source.
func (s *Snapshot) FS() fs.FS { return s.root.FS() }

// Host implements Source: a snapshot has none.
func (s *Snapshot) Host() Host { return nil }

// Close releases the snapshot and removes the directory it was unpacked into.
func (s *Snapshot) Close() error {
	err := s.root.Close()
	if rerr := s.removeUnpacked(); rerr != nil && err == nil {
		err = rerr
	}
	return err
}

func (s *Snapshot) removeUnpacked() error {
	if !s.unpacked {
		return nil
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove unpacked snapshot: %w", err)
	}
	return nil
}

// validDevName reports whether name is a plain kernel device name (no path).
func validDevName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}
