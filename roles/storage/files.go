package storage

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/cloudctl/cloudctl/internal/atomicfile"
)

// writeFile writes data to path atomically with perm, creating its
// directory (0700), and reports whether the content changed.
func writeFile(path string, data []byte, perm os.FileMode) (bool, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	return atomicfile.WriteIfChanged(path, data, perm)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// doneMarker is written into a daemon's data directory once its mkfs succeeded.
const doneMarker = "cloudctl-mkfs-done"

// wipeSignatures zeroes the first and the last MiB of a block device, where
// partition tables (GPT keeps a copy at the end), filesystem, RAID and
// BlueStore signatures live. It is only called with the user's consent.
func wipeSignatures(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("wipe %s: %w", path, err)
	}
	defer f.Close()
	size, err := f.Seek(0, 2)
	if err != nil {
		return fmt.Errorf("wipe %s: size: %w", path, err)
	}
	zero := make([]byte, 1<<20)
	for _, off := range []int64{0, max(size-int64(len(zero)), 0)} {
		n := min(int64(len(zero)), size-off)
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			return fmt.Errorf("wipe %s: %w", path, err)
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("wipe %s: %w", path, err)
	}
	return nil
}
