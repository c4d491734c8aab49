// Package snap holds the snap packaging (snapcraft.yaml, hooks) and the one
// helper that resolves snap paths ($SNAP, $SNAP_DATA, $SNAP_COMMON) with the
// defaults used when cloudctl runs outside a snap.
package snap

import (
	"path/filepath"
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
}

// DefaultOutsideSnap is where cloudctl keeps its state when it is not run from a snap.
const DefaultOutsideSnap = "/var/lib/cloudctl"

// Resolve returns the paths for the environment described by getenv.
func Resolve(getenv Getenv) Paths {
	s := getenv("SNAP")
	if s == "" {
		return Paths{Snap: "/", Data: DefaultOutsideSnap, Common: DefaultOutsideSnap, StateDir: DefaultOutsideSnap}
	}
	data := getenv("SNAP_DATA")
	if data == "" {
		data = filepath.Join("/var/snap", filepath.Base(s), "current")
	}
	common := getenv("SNAP_COMMON")
	if common == "" {
		common = filepath.Join("/var/snap", filepath.Base(s), "common")
	}
	return Paths{InSnap: true, Snap: s, Data: data, Common: common, StateDir: filepath.Join(common, "state")}
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
