package bootstrap

import (
	"fmt"
	"strings"

	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/roles"
	splan "github.com/cloudctl/cloudctl/roles/storage/plan"
)

// ProbeSummary is the hardware summary and the findings the wizard shows first.
func ProbeSummary(f Facts) string {
	var b strings.Builder
	hw := f.Hardware
	src := f.Source
	if src == "" {
		src = "this machine"
	}
	fmt.Fprintf(&b, "Hardware of %s\n", src)
	row := func(k, v string) { fmt.Fprintf(&b, "  %-9s %s\n", k, v) }
	m := hw.Memory
	row("memory", fmt.Sprintf("%d GiB installed, %s usable", m.InstalledGiB, hwprobe.HumanBytes(m.UsableBytes)))
	c := hw.CPU
	cpu := c.Arch
	if c.Model != "" {
		cpu += ", " + c.Model
	}
	row("cpu", fmt.Sprintf("%s, %d cores, %d threads", cpu, c.Cores, c.Threads))
	row("kvm", hw.KVM.Verdict+": "+hw.KVM.Reason)
	el, wipe := f.EligibleDisks(), f.WipeDisks()
	row("disks", fmt.Sprintf("%d eligible for OSDs (%s), %d usable after a wipe (%s), %d rejected",
		len(el), diskNames(el), len(wipe), diskNames(wipe), len(hw.Disks)-len(el)-len(wipe)))
	var addrs []string
	for _, a := range f.Addresses {
		addrs = append(addrs, a.Interface+" "+a.Prefix.String())
	}
	if len(addrs) == 0 {
		addrs = []string{"none"}
	}
	row("network", strings.Join(addrs, ", "))
	row("mysql", hw.Decisions.MySQLTopology+": "+hw.Decisions.MySQLReason)
	var lines []string
	blocked := map[roles.Role]bool{}
	for _, fd := range hw.Findings {
		if fd.Level == hwprobe.LevelInfo || fd.Check == "disks" {
			continue // the disks line above says it
		}
		if fd.Level == hwprobe.LevelError {
			blocked[fd.Role] = true
		}
		lines = append(lines, fmt.Sprintf("  %-5s %-8s %s", fd.Level, fd.Role, fd.Message))
	}
	if len(lines) > 0 {
		b.WriteString("Findings\n")
		b.WriteString(strings.Join(lines, "\n"))
		b.WriteString("\n")
	}
	var ready, not []string
	for _, r := range roles.All {
		if blocked[r] {
			not = append(not, string(r))
		} else {
			ready = append(ready, string(r))
		}
	}
	if len(ready) > 0 {
		fmt.Fprintf(&b, "Ready for: %s", strings.Join(ready, ", "))
	}
	if len(not) > 0 {
		fmt.Fprintf(&b, "; not ready for: %s", strings.Join(not, ", "))
	}
	return b.String()
}

// PlanSummary is the whole plan on one screen: every choice, the fact
// behind each decision taken automatically, and the warnings.
func PlanSummary(p Plan, f Facts, warnings Problems, join bool) string {
	var b strings.Builder
	if join {
		fmt.Fprintf(&b, "Plan: %s joins the cluster\n", p.Name)
	} else {
		fmt.Fprintf(&b, "Plan: %s bootstraps the new cluster %q\n", p.Name, p.Cluster)
	}
	row := func(k, v string) { fmt.Fprintf(&b, "  %-16s %s\n", k, v) }
	row("name", p.Name)
	row("address", p.Address)
	row("roles", roles.Join(p.Roles))
	row("region / zone", dashIfEmpty(p.Region)+" / "+dashIfEmpty(p.Zone))
	if !join {
		topo := p.MySQLTopology + " — " + p.MySQLTopologyReason
		if p.MySQLTopologyAuto {
			topo += " (auto: cloudd settles it at bootstrap with the cluster's manifest)"
		}
		row("MySQL topology", topo)
		row("floating address", dashIfEmpty(p.FloatingAddress))
	}
	if roles.Has(p.Roles, roles.Storage) {
		var ds []string
		for _, d := range p.Disks {
			s := d.Path
			if splan.IsFileDisk(d.Path) {
				s += " (" + splan.FileBackedNote + ")"
			} else if disk, ok := f.Disk(d.Path); ok {
				s += " (" + diskLabel(disk)
				if d.Wipe && !disk.Eligible {
					s += ", wiped: " + strings.Join(disk.Signatures, ", ")
				}
				s += ")"
			}
			ds = append(ds, s)
		}
		if len(ds) == 0 {
			ds = []string{"none"}
		}
		row("OSD disks", strings.Join(ds, ", "))
		row("", storageNote(p, f)[0])
		if !join {
			row("Ceph pools", poolNote(f, 1))
		}
	}
	if roles.Has(p.Roles, roles.Compute) {
		k := f.Hardware.KVM
		what := "containers and virtual machines"
		switch k.Verdict {
		case hwprobe.KVMYes:
		case hwprobe.KVMNo:
			what = "containers; virtual machines run emulated, slowly"
		default:
			what = "containers; virtual machines run emulated if KVM is missing"
		}
		row("compute", fmt.Sprintf("%s (KVM %s: %s)", what, k.Verdict, k.Reason))
	}
	if len(warnings) > 0 {
		b.WriteString("Warnings\n")
		for _, w := range warnings {
			fmt.Fprintf(&b, "  - %s\n", w.Message)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
