package manifests

import (
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/roles"
)

// ProbePolicy turns the manifest's thresholds into the hardware probe's
// policy, so `cloudctl probe`, the wizard and the daemon decide alike.
func (m *Manifest) ProbePolicy() hwprobe.Policy {
	rm := m.RoleMinimums
	compute := hwprobe.RoleMinimums{MinCores: rm.Compute.Cores, MinRAMGiB: rm.Compute.RAMGiB, RecommendedRAMGiB: rm.Compute.RecommendedRAMGiB}
	switch rm.Compute.KVM {
	case KVMRequire:
		// A machine whose KVM cannot be verified (a snapshot) is not refused.
		compute.KVMMissing, compute.KVMUnknown = hwprobe.LevelError, hwprobe.LevelWarn
	case KVMWarn, "":
		compute.KVMMissing = hwprobe.LevelWarn
	}
	p := hwprobe.Policy{
		MySQLMultiMinGiB: m.MySQL.MultiThresholdGiB,
		MinOSDDiskBytes:  uint64(max(m.Storage.MinOSDDiskBytes, 0)),
		Roles: map[roles.Role]hwprobe.RoleMinimums{
			roles.Control: {MinCores: rm.Control.Cores, MinRAMGiB: rm.Control.RAMGiB, RecommendedRAMGiB: rm.Control.RecommendedRAMGiB},
			roles.Compute: compute,
			roles.Storage: {MinCores: rm.Storage.Cores, MinRAMGiB: rm.Storage.RAMGiB, RecommendedRAMGiB: rm.Storage.RecommendedRAMGiB, MinOSDDisks: rm.Storage.EligibleDisks},
		},
	}
	p.AdmitLoopDevices = append([]string(nil), m.Storage.AdmitLoopDevices...)
	if p.MySQLMultiMinGiB <= 0 {
		p.MySQLMultiMinGiB = hwprobe.DefaultPolicy().MySQLMultiMinGiB
	}
	return p
}
