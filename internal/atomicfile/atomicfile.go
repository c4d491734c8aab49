// Package atomicfile replaces files so that a reader sees the old content or
// the new, never half of one, and a file meant to be private is never
// readable by others, not even for a moment: the temporary file gets its
// mode before any byte is written, in the same directory, then is renamed.
package atomicfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// Replace writes data to path with mode perm, always (a file whose age is
// read, like a health verdict, must be rewritten even when unchanged).
func Replace(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// WriteIfChanged replaces path with data and mode perm unless it already
// has both, and reports whether it wrote.
func WriteIfChanged(path string, data []byte, perm os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() == perm {
			return false, nil
		}
	}
	if err := Replace(path, data, perm); err != nil {
		return false, err
	}
	return true, nil
}
