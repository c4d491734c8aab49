package hwprobe

import (
	"fmt"
	"strings"

	"github.com/cloudctl/cloudctl/roles"
	controlplan "github.com/cloudctl/cloudctl/roles/control/plan"
)

// Decide evaluates every disk against the policy, then takes the decisions
// and computes the readiness findings for the given roles (all roles when
// empty). It only reads facts, so a caller holding a manifest policy can
// run it again on the same facts.
func (f *Facts) Decide(p Policy, rs []roles.Role) {
	if len(rs) == 0 {
		rs = roles.All
	}
	for i := range f.Disks {
		Evaluate(&f.Disks[i], p)
	}
	f.Roles = roles.Normalize(rs)
	f.Decisions = decisions(f, p)
	f.Findings = findings(f, p, f.Roles)
}

func decisions(f *Facts, p Policy) Decisions {
	d := Decisions{OSDDisks: []string{}, WipeCandidates: []string{}}
	d.MySQLTopology, d.MySQLReason = DecideMySQL(f.Memory, p)
	for _, disk := range f.Disks {
		if disk.Eligible {
			d.OSDDisks = append(d.OSDDisks, disk.Path)
		} else if disk.WipeEligible {
			d.WipeCandidates = append(d.WipeCandidates, disk.Path)
		}
	}
	return d
}

// DecideMySQL applies the MySQL topology rule to a machine's memory: one
// instance per service at or above the policy's threshold of installed RAM
// (rounded to the nearest GiB), one for all services below. It returns the
// topology and the fact behind it as a sentence.
func DecideMySQL(m Memory, p Policy) (string, string) {
	fact := fmt.Sprintf("%d GiB installed RAM (%s)", m.InstalledGiB, memorySourceText(m))
	return controlplan.DecideTopology(m.InstalledGiB, p.MySQLMultiMinGiB, fact)
}

func memorySourceText(m Memory) string {
	switch m.PhysicalSource {
	case "memory-blocks":
		return humanBytes(m.PhysicalBytes) + " in online memory blocks, " + humanBytes(m.UsableBytes) + " usable"
	case "syslog":
		return humanBytes(m.PhysicalBytes) + " from the kernel boot log, " + humanBytes(m.UsableBytes) + " usable"
	}
	return "installed size unknown; MemTotal " + humanBytes(m.UsableBytes)
}

func findings(f *Facts, p Policy, rs []roles.Role) []Finding {
	out := []Finding{}
	add := func(level string, r roles.Role, check, msg string) {
		out = append(out, Finding{Level: level, Role: r, Check: check, Message: msg})
	}
	for _, r := range rs {
		m := p.Roles[r]
		if m.MinCores > 0 {
			if f.CPU.Cores < m.MinCores {
				add(LevelError, r, "cores", fmt.Sprintf("%d CPU cores; %s needs at least %d: use a machine with more cores", f.CPU.Cores, r, m.MinCores))
			} else {
				add(LevelInfo, r, "cores", fmt.Sprintf("%d CPU cores (minimum %d)", f.CPU.Cores, m.MinCores))
			}
		}
		gib := f.Memory.InstalledGiB
		switch {
		case m.MinRAMGiB > 0 && gib < m.MinRAMGiB:
			add(LevelError, r, "memory", fmt.Sprintf("%d GiB RAM; %s needs at least %d GiB: add memory or use another machine", gib, r, m.MinRAMGiB))
		case m.RecommendedRAMGiB > 0 && gib < m.RecommendedRAMGiB:
			add(LevelWarn, r, "memory", fmt.Sprintf("%d GiB RAM; %d GiB is recommended for %s: it will run, with little headroom", gib, m.RecommendedRAMGiB, r))
		case m.MinRAMGiB > 0 || m.RecommendedRAMGiB > 0:
			add(LevelInfo, r, "memory", fmt.Sprintf("%d GiB RAM (minimum %d GiB, recommended %d GiB)", gib, m.MinRAMGiB, max(m.RecommendedRAMGiB, m.MinRAMGiB)))
		}
		if r == roles.Control {
			add(LevelInfo, r, "mysql", "MySQL topology "+f.Decisions.MySQLTopology+": "+f.Decisions.MySQLReason)
		}
		if m.KVMMissing != "" {
			kvmFinding(f.KVM, m, r, add)
		}
		if m.MinOSDDisks > 0 {
			diskFinding(f, m, r, add)
		}
	}
	return out
}

func kvmFinding(k KVM, m RoleMinimums, r roles.Role, add func(level string, r roles.Role, check, msg string)) {
	switch k.Verdict {
	case KVMYes:
		add(LevelInfo, r, "kvm", "KVM available ("+k.Reason+"): containers and virtual machines")
	case KVMNo:
		add(m.KVMMissing, r, "kvm", "no KVM: "+k.Reason+". VMs would run emulated, slowly; containers are not affected. Fix: enable VT-x/AMD-V (or nested virtualization) and load kvm_intel or kvm_amd")
	default:
		level := m.KVMUnknown
		if level == "" {
			level = m.KVMMissing
		}
		add(level, r, "kvm", "KVM could not be verified: "+k.Reason+". If it is missing, VMs would run emulated, slowly")
	}
}

func diskFinding(f *Facts, m RoleMinimums, r roles.Role, add func(level string, r roles.Role, check, msg string)) {
	var eligible, wipe, unverified []string
	for _, d := range f.Disks {
		switch {
		case d.Eligible:
			eligible = append(eligible, d.Name)
		case d.WipeEligible:
			wipe = append(wipe, d.Name+" ("+strings.Join(d.Signatures, ", ")+")")
		case onlyUnknown(d):
			unverified = append(unverified, d.Name)
		}
	}
	if len(eligible) >= m.MinOSDDisks {
		add(LevelInfo, r, "disks", fmt.Sprintf("%d disk(s) eligible for OSDs: %s", len(eligible), strings.Join(eligible, ", ")))
	} else {
		msg := fmt.Sprintf("%d disk(s) eligible for OSDs, %s needs at least %d", len(eligible), r, m.MinOSDDisks)
		if len(eligible) > 0 {
			msg += " (" + strings.Join(eligible, ", ") + ")"
		}
		msg += ": add a blank, unpartitioned, unmounted disk"
		add(LevelError, r, "disks", msg)
	}
	if len(wipe) > 0 {
		add(LevelWarn, r, "disks", "usable only after wiping their signatures, with explicit consent (preseed wipe: true, or confirm in the wizard): "+strings.Join(wipe, ", "))
	}
	if len(unverified) > 0 {
		add(LevelWarn, r, "disks", "could not be fully checked (see their reasons): "+strings.Join(unverified, ", "))
	}
}

// onlyUnknown reports a disk that failed no check but could not be verified.
func onlyUnknown(d Disk) bool {
	unknown := false
	for _, c := range CheckOrder {
		switch d.Checks[c] {
		case Fail:
			return false
		case Unknown:
			unknown = true
		}
	}
	return unknown
}
