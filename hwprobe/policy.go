package hwprobe

import (
	"fmt"

	"github.com/cloudctl/cloudctl/roles"
)

// GiB is 2^30 bytes.
const GiB = 1 << 30

// Policy holds the thresholds the decisions and findings are computed with.
// They are data: the manifest supplies them; DefaultPolicy holds the defaults.
type Policy struct {
	// MySQLMultiMinGiB: one MariaDB instance per service when the installed
	// RAM, rounded to the nearest GiB, is at least this; a single instance below.
	MySQLMultiMinGiB int `json:"mysql_multi_min_gib"`
	// MinOSDDiskBytes is the smallest disk that may hold an OSD.
	MinOSDDiskBytes uint64 `json:"min_osd_disk_bytes"`
	// Roles holds the per-role minimums. A role without an entry has none.
	Roles map[roles.Role]RoleMinimums `json:"roles"`
	// AdmitLoopDevices are loop devices (/dev/loopN) judged as local disks
	// (tests of the disk rules on real block devices); empty: none.
	AdmitLoopDevices []string `json:"admit_loop_devices,omitempty"`
}

// admitsLoop reports whether the loop device named name (loop3) is judged
// as a disk.
func (p Policy) admitsLoop(name string) bool {
	for _, d := range p.AdmitLoopDevices {
		if d == "/dev/"+name {
			return true
		}
	}
	return false
}

// RoleMinimums are what a machine needs to take a role. Zero values mean
// "not checked".
type RoleMinimums struct {
	// MinCores: fewer cores is an error.
	MinCores int `json:"min_cores,omitempty"`
	// MinRAMGiB: less installed RAM (rounded GiB) is an error.
	MinRAMGiB int `json:"min_ram_gib,omitempty"`
	// RecommendedRAMGiB: less installed RAM is a warning.
	RecommendedRAMGiB int `json:"recommended_ram_gib,omitempty"`
	// MinOSDDisks: fewer eligible disks is an error.
	MinOSDDisks int `json:"min_osd_disks,omitempty"`
	// KVMMissing is the level of the finding when KVM is not available
	// ("warn": VMs would run emulated); empty: KVM is not checked.
	KVMMissing string `json:"kvm_missing,omitempty"`
	// KVMUnknown is the level when KVM cannot be verified; empty: same as KVMMissing.
	KVMUnknown string `json:"kvm_unknown,omitempty"`
}

// DefaultPolicy returns the built-in thresholds, used until the manifest
// supplies its own.
func DefaultPolicy() Policy {
	return Policy{
		MySQLMultiMinGiB: 32,
		MinOSDDiskBytes:  10 * GiB,
		Roles: map[roles.Role]RoleMinimums{
			roles.Control: {MinCores: 2, MinRAMGiB: 4, RecommendedRAMGiB: 8},
			roles.Compute: {MinCores: 2, MinRAMGiB: 2, RecommendedRAMGiB: 4, KVMMissing: LevelWarn},
			roles.Storage: {MinCores: 1, MinRAMGiB: 2, RecommendedRAMGiB: 4, MinOSDDisks: 1},
		},
	}
}

// Validate reports a policy that cannot be applied.
func (p Policy) Validate() error {
	if p.MySQLMultiMinGiB <= 0 {
		return fmt.Errorf("policy: mysql_multi_min_gib must be positive, got %d", p.MySQLMultiMinGiB)
	}
	for r, m := range p.Roles {
		if !roles.Valid(r) {
			return fmt.Errorf("policy: unknown role %q", r)
		}
		for _, lv := range []string{m.KVMMissing, m.KVMUnknown} {
			switch lv {
			case "", LevelInfo, LevelWarn, LevelError:
			default:
				return fmt.Errorf("policy: role %s: level %q: use info, warn or error", r, lv)
			}
		}
		if m.MinCores < 0 || m.MinRAMGiB < 0 || m.RecommendedRAMGiB < 0 || m.MinOSDDisks < 0 {
			return fmt.Errorf("policy: role %s: minimums cannot be negative", r)
		}
	}
	return nil
}
