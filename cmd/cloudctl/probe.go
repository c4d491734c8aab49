package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/render"
	"github.com/cloudctl/cloudctl/roles"
)

func newProbeCmd(a *app) *cobra.Command {
	var snapshotPath, roleList, manifestPath string
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Show hardware facts, role readiness, and the decisions they lead to",
		Long: `Probe this machine (or a ghw snapshot) and show what was found, what it means
for the roles it could take, and what to fix before a bootstrap or join.

Disks are checked for OSD use: a whole, non-removable disk with no partitions,
no signature, nothing mounted, no holders and no OSD, of at least the minimum
size. Every rejected disk says why. Facts that cannot be read (a snapshot has
no /dev) are reported as unknown, never guessed. Reading disk signatures and
/dev/kvm needs root.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rs := roles.All
			if roleList != "" {
				var err error
				if rs, err = roles.Parse(roleList, nil); err != nil {
					return err
				}
			}
			var src hwprobe.Source
			if snapshotPath != "" {
				s, err := hwprobe.OpenSnapshot(snapshotPath)
				if err != nil {
					return err
				}
				defer s.Close()
				src = s
			} else {
				m, err := hwprobe.OpenMachine()
				if err != nil {
					return err
				}
				defer m.Close()
				src = m
			}
			m, _, err := a.effectiveManifest(cmd.Context(), manifestPath)
			if err != nil {
				return err
			}
			facts, err := hwprobe.Probe(cmd.Context(), src, m.ProbePolicy(), rs)
			if err != nil {
				return fmt.Errorf("probe %s: %w", src.Describe(), err)
			}
			return render.Write(a.out, a.format, facts, func(w io.Writer) error {
				return writeProbeTable(w, src.Describe(), facts)
			})
		},
	}
	cmd.Flags().StringVar(&snapshotPath, "snapshot", "", "probe a ghw snapshot (a .tar.gz or an unpacked directory) instead of this machine")
	cmd.Flags().StringVar(&manifestPath, "manifest", "", "manifest overlay whose thresholds to decide with (default: the cluster's, or the built-in one)")
	cmd.Flags().StringVar(&roleList, "role", "", "roles to check readiness for, comma-separated (default: control,compute,storage)")
	return cmd
}

// writeProbeTable is the human view: what was found, what it means, what to fix.
func writeProbeTable(w io.Writer, what string, f *hwprobe.Facts) error {
	fmt.Fprintf(w, "Hardware of %s\n\n", what)

	t := render.NewTable(w, "FACT", "VALUE")
	m := f.Memory
	mem := fmt.Sprintf("%d GiB installed, %s usable", m.InstalledGiB, hwprobe.HumanBytes(m.UsableBytes))
	switch m.PhysicalSource {
	case "memory-blocks":
		mem += fmt.Sprintf(" (%s in online memory blocks)", hwprobe.HumanBytes(m.PhysicalBytes))
	case "syslog":
		mem += fmt.Sprintf(" (%s from the kernel boot log)", hwprobe.HumanBytes(m.PhysicalBytes))
	default:
		mem += " (installed size unknown: MemTotal used)"
	}
	t.Row("memory", mem)
	c := f.CPU
	cpu := c.Arch
	if c.Model != "" {
		cpu += ", " + c.Model
	}
	cpu += fmt.Sprintf(", %d socket(s), %d cores, %d threads", c.Sockets, c.Cores, c.Threads)
	t.Row("cpu", cpu)
	t.Row("virtualization flags", orNone(c.VirtFlags))
	t.Row("kvm", f.KVM.Verdict+": "+f.KVM.Reason)
	if err := t.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = render.NewTable(w, "DISK", "SIZE", "TYPE", "MODEL", "OSD", "WHY")
	for _, d := range f.Disks {
		t.Row(d.Name, hwprobe.HumanBytes(d.SizeBytes), d.Type, dash(d.Model), osdVerdict(d), dash(diskWhy(d)))
	}
	if len(f.Disks) == 0 {
		t.Row("(none)", "", "", "", "", "")
	}
	if err := t.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = render.NewTable(w, "NIC", "STATE", "KIND", "MAC", "SPEED", "ADDRESSES")
	for _, n := range f.NICs {
		kind := "physical"
		if n.Virtual {
			kind = "virtual"
		}
		speed := "-"
		if n.SpeedMbps > 0 {
			speed = fmt.Sprintf("%d Mb/s", n.SpeedMbps)
		}
		addrs := "unknown"
		if n.Addresses != nil {
			addrs = orNone(n.Addresses)
		}
		t.Row(n.Name, n.State, kind, dash(n.MAC), speed, addrs)
	}
	if len(f.NICs) == 0 {
		t.Row("(none)", "", "", "", "", "")
	}
	if err := t.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = render.NewTable(w, "DECISION", "VALUE", "BECAUSE")
	dc := f.Decisions
	t.Row("mysql topology", dc.MySQLTopology, dc.MySQLReason)
	osdWhy := "eligible disks (see DISK)"
	if len(dc.OSDDisks) == 0 {
		osdWhy = "no disk is eligible (see DISK)"
	}
	t.Row("osd disks", orNone(dc.OSDDisks), osdWhy)
	if len(dc.WipeCandidates) > 0 {
		t.Row("wipe candidates", strings.Join(dc.WipeCandidates, ","), "eligible only after an explicit wipe (never by default)")
	}
	if err := t.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = render.NewTable(w, "LEVEL", "ROLE", "CHECK", "FINDING")
	blocked := map[roles.Role]int{}
	for _, fd := range f.Findings {
		t.Row(fd.Level, string(fd.Role), fd.Check, fd.Message)
		if fd.Level == hwprobe.LevelError {
			blocked[fd.Role]++
		}
	}
	if err := t.Flush(); err != nil {
		return err
	}

	var ready, notReady []string
	for _, r := range f.Roles {
		if n := blocked[r]; n > 0 {
			notReady = append(notReady, fmt.Sprintf("%s (%d error(s))", r, n))
		} else {
			ready = append(ready, string(r))
		}
	}
	fmt.Fprintln(w)
	if len(ready) > 0 {
		fmt.Fprintf(w, "Ready for: %s\n", strings.Join(ready, ", "))
	}
	if len(notReady) > 0 {
		fmt.Fprintf(w, "Not ready for: %s: fix the errors above\n", strings.Join(notReady, ", "))
	}
	return nil
}

// osdVerdict is the OSD column: yes, wipe (after consent), unknown, no.
func osdVerdict(d hwprobe.Disk) string {
	switch {
	case d.Eligible:
		return "yes"
	case d.WipeEligible:
		return "wipe"
	}
	for _, c := range hwprobe.CheckOrder {
		if d.Checks[c] == hwprobe.Fail {
			return "no"
		}
	}
	return "unknown"
}

// diskWhy is the WHY column: the failed checks, with the unknown ones
// named only; or, when nothing failed, the unknown ones in full.
func diskWhy(d hwprobe.Disk) string {
	var failed, unknown []string
	for _, r := range d.Reasons {
		if strings.HasPrefix(r, hwprobe.UnknownPrefix) {
			unknown = append(unknown, r)
		} else {
			failed = append(failed, r)
		}
	}
	if len(failed) == 0 {
		return strings.Join(unknown, "; ")
	}
	var names []string
	for _, c := range hwprobe.CheckOrder {
		if d.Checks[c] == hwprobe.Unknown && d.Checks[hwprobe.CheckType] == hwprobe.Pass {
			names = append(names, c)
		}
	}
	if len(names) > 0 {
		failed = append(failed, "not checked: "+strings.Join(names, ", "))
	}
	return strings.Join(failed, "; ")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orNone(ss []string) string {
	if len(ss) == 0 {
		return "none"
	}
	return strings.Join(ss, ", ")
}
