// Package snap holds the snap packaging (snapcraft.yaml, hooks) and the one
// helper that resolves snap paths ($SNAP, $SNAP_DATA, $SNAP_COMMON) with the
// defaults used when cloudctl runs outside a snap.
//
// Files in this directory besides the Go code: snapcraft.yaml; hooks/install,
// hooks/configure and hooks/remove; local/cloudctl-env (the command-chain
// that exports the settings written by the configure hook); local/cloudd.service
// (the systemd unit for installs without snapd, `make install`); and
// keys/ (the Debian archive key for the package repository snapcraft.yaml
// adds). docs/snap.md explains them.
package snap

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Getenv reads an environment variable. os.Getenv satisfies it; tests pass a map lookup.
type Getenv func(key string) string

// Paths are the locations cloudctl and cloudd use on this machine.
type Paths struct {
	// InSnap is true when $SNAP is set.
	InSnap bool
	// Snap is the read-only install root ($SNAP), or "/" outside a snap.
	Snap string
	// Data is per-revision writable data ($SNAP_DATA), or /var/lib/cloudctl.
	Data string
	// Common is revision-independent writable data ($SNAP_COMMON), or /var/lib/cloudctl.
	Common string
	// StateDir is the daemon's state directory: $SNAP_COMMON/state in a snap,
	// /var/lib/cloudctl otherwise.
	StateDir string
	// ConfigFile holds the settings written by the snap's configure hook
	// ($SNAP_COMMON/cloudd.env) or, outside a snap, by the administrator
	// (/etc/cloudctl/cloudd.env, read by the systemd unit). See ReadEnvFile.
	ConfigFile string
}

// DefaultOutsideSnap is where cloudctl keeps its state when it is not run from a snap.
const DefaultOutsideSnap = "/var/lib/cloudctl"

// ConfigOutsideSnap is the settings file outside a snap.
const ConfigOutsideSnap = "/etc/cloudctl/cloudd.env"

// ConfigName is the settings file's name in $SNAP_COMMON.
const ConfigName = "cloudd.env"

// Resolve returns the paths for the environment described by getenv.
func Resolve(getenv Getenv) Paths {
	s := getenv("SNAP")
	if s == "" {
		return Paths{Snap: "/", Data: DefaultOutsideSnap, Common: DefaultOutsideSnap, StateDir: DefaultOutsideSnap,
			ConfigFile: ConfigOutsideSnap}
	}
	data := getenv("SNAP_DATA")
	if data == "" {
		data = filepath.Join("/var/snap", filepath.Base(s), "current")
	}
	common := getenv("SNAP_COMMON")
	if common == "" {
		common = filepath.Join("/var/snap", filepath.Base(s), "common")
	}
	return Paths{InSnap: true, Snap: s, Data: data, Common: common, StateDir: filepath.Join(common, "state"),
		ConfigFile: filepath.Join(common, ConfigName)}
}

// Staged maps a host path from the manifest (e.g. /usr/sbin/mariadbd) to
// where the program is: below $SNAP in a snap, where the components are
// staged, and unchanged outside one. Relative paths are returned unchanged.
func (p Paths) Staged(path string) string {
	if !p.InSnap || !filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(p.Snap, path)
}

// StateDir picks the state directory: an explicit flag wins, then
// $CLOUDCTL_STATE_DIR, then the snap/non-snap default.
func StateDir(flag string, getenv Getenv) string {
	if flag != "" {
		return flag
	}
	if v := getenv("CLOUDCTL_STATE_DIR"); v != "" {
		return v
	}
	return Resolve(getenv).StateDir
}

// ReadEnvFile reads a settings file of KEY=VALUE lines, the format the
// configure hook writes and systemd's EnvironmentFile= reads. Blank lines
// and lines starting with # are skipped; a value may be wrapped in single or
// double quotes. A missing file is no settings, not an error.
func ReadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read settings: %w", err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || key == "" || strings.ContainsAny(key, " \t") {
			return nil, fmt.Errorf("read settings: %s:%d: %q is not a KEY=VALUE line; fix or remove it", path, n, line)
		}
		value = strings.TrimSpace(value)
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		out[key] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read settings: %s: %w", path, err)
	}
	return out, nil
}

// WithConfig returns a Getenv that answers from getenv first and then from
// the settings file of this environment (Paths.ConfigFile), so that
// `snap set cloudctl state-dir=...` (or /etc/cloudctl/cloudd.env outside a
// snap) reaches programs started without the snap's command-chain. The
// environment always wins.
func WithConfig(getenv Getenv) (Getenv, error) {
	settings, err := ReadEnvFile(Resolve(getenv).ConfigFile)
	if err != nil {
		return nil, err
	}
	return func(key string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return settings[key]
	}, nil
}
