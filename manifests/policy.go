package manifests

import (
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/roles"
)

// ProbePolicy turns the manifest's thresholds into the hardware probe's
// policy, so `cloudctl probe`, the wizard and the daemon decide alike.
func (m *Manifest) ProbePolicy() hwprobe.Policy {
	kvm := map[KVMRule]string{KVMRequire: hwprobe.LevelError, KVMWarn: hwprobe.LevelWarn, KVMIgnore: ""}
	rm := m.RoleMinimums
	return hwprobe.Policy{
		MySQLMultiMinGiB: m.MySQL.MultiThresholdGiB,
		MinOSDDiskBytes:  uint64(m.Storage.MinOSDDiskBytes),
		Roles: map[roles.Role]hwprobe.RoleMinimums{
			roles.Control: {MinCores: rm.Control.Cores, MinRAMGiB: rm.Control.RAMGiB, RecommendedRAMGiB: rm.Control.RecommendedRAMGiB},
			roles.Compute: {MinCores: rm.Compute.Cores, MinRAMGiB: rm.Compute.RAMGiB, RecommendedRAMGiB: rm.Compute.RecommendedRAMGiB, KVMMissing: kvm[rm.Compute.KVM]},
			roles.Storage: {MinCores: rm.Storage.Cores, MinRAMGiB: rm.Storage.RAMGiB, RecommendedRAMGiB: rm.Storage.RecommendedRAMGiB, MinOSDDisks: rm.Storage.EligibleDisks},
		},
	}
}
