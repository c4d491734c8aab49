package hwprobe

import (
	"fmt"
	"strings"
)

// UnknownPrefix starts the reasons that are unknown facts rather than failed checks.
const UnknownPrefix = "unknown "

// kindReason explains why a kind of device cannot hold an OSD.
var kindReason = map[string]string{
	KindLoop:         "loop device, not a whole disk",
	KindRAM:          "RAM disk, not a whole disk",
	KindZRAM:         "zram device (compressed RAM), not a whole disk",
	KindOptical:      "optical drive",
	KindFloppy:       "floppy drive",
	KindDeviceMapper: "device-mapper device (LVM, multipath, crypt, ...), not a whole disk",
	KindMD:           "md RAID array, not a whole disk",
	KindNBD:          "network block device, not a whole disk",
	KindRBD:          "Ceph RBD image, not a whole disk",
	KindBcache:       "bcache device, not a whole disk",
}

// Evaluate sets the checks, reasons and verdicts of a disk from its facts
// and the policy. It is pure: run again with another policy, it gives that
// policy's answer.
//
// A check whose facts are nil is unknown when Unknown explains why, and
// skipped otherwise (the device was not opened because its type excludes it).
func Evaluate(d *Disk, p Policy) {
	d.Checks = map[string]string{}
	failures := map[string]string{}
	fail := func(c, msg string) { d.Checks[c], failures[c] = Fail, msg }
	pass := func(c string) { d.Checks[c] = Pass }
	unknownOrSkipped := func(c string) {
		if _, ok := d.Unknown[c]; ok {
			d.Checks[c] = Unknown
		} else {
			d.Checks[c] = Skipped
		}
	}

	if r, bad := kindReason[d.Kind]; bad {
		fail(CheckType, fmt.Sprintf("%s (%s)", r, d.Name))
	} else if d.Transport != "" {
		fail(CheckType, fmt.Sprintf("reached over the network (%s), not a local disk (%s)", transportText(d.Transport), d.Name))
	} else {
		pass(CheckType)
	}

	if d.Removable {
		fail(CheckRemovable, "removable media")
	} else {
		pass(CheckRemovable)
	}

	switch {
	case d.SizeBytes == 0:
		fail(CheckSize, "size 0 (no medium)")
	case d.SizeBytes < p.MinOSDDiskBytes:
		fail(CheckSize, fmt.Sprintf("too small: %s, the minimum is %s", humanBytes(d.SizeBytes), humanBytes(p.MinOSDDiskBytes)))
	default:
		pass(CheckSize)
	}

	switch {
	case len(d.Partitions) > 0:
		fail(CheckPartitions, "has partitions: "+strings.Join(d.Partitions, ", "))
	case len(d.TableEntries) > 0:
		fail(CheckPartitions, "its partition table lists partition(s) "+strings.Join(d.TableEntries, ", ")+", which this kernel does not show")
	default:
		pass(CheckPartitions)
	}

	switch {
	case d.Signatures == nil:
		unknownOrSkipped(CheckSignatures)
	case len(d.Signatures) > 0:
		fail(CheckSignatures, "carries "+describeSignatures(d.Signatures))
	default:
		pass(CheckSignatures)
	}

	switch {
	case len(d.Mounts) > 0:
		fail(CheckMounts, "in use: "+describeMounts(d.Mounts))
	case d.Mounts == nil:
		unknownOrSkipped(CheckMounts)
	case d.Unknown[CheckMounts] != "":
		d.Checks[CheckMounts] = Unknown
	default:
		pass(CheckMounts)
	}

	switch {
	case len(d.Holders) > 0:
		fail(CheckHolders, describeHolders(d.Holders))
	case d.Holders == nil:
		unknownOrSkipped(CheckHolders)
	default:
		pass(CheckHolders)
	}

	switch {
	case d.OSD != "":
		fail(CheckOSD, "already used by a Ceph OSD ("+d.OSD+")")
	case d.Signatures != nil:
		pass(CheckOSD)
	default:
		unknownOrSkipped(CheckOSD)
	}

	// Reasons: every failed check, then every unknown fact (unless the type
	// already excludes the device, when the rest does not matter).
	d.Reasons = []string{}
	for _, c := range CheckOrder {
		if msg, ok := failures[c]; ok {
			d.Reasons = append(d.Reasons, msg)
		}
	}
	if d.Checks[CheckType] == Pass {
		for _, c := range CheckOrder {
			// An unknown fact is a reason even beside a failure of the
			// same check (mounted here, and maybe elsewhere too).
			if _, ok := d.Unknown[c]; !ok || d.Checks[c] == Pass || d.Checks[c] == Skipped {
				continue
			}
			if c == CheckOSD && d.Checks[CheckSignatures] == Unknown && d.Unknown[CheckOSD] == d.Unknown[CheckSignatures] {
				continue // same cause, already said under signatures
			}
			d.Reasons = append(d.Reasons, UnknownPrefix+c+": "+d.Unknown[c])
		}
		for _, c := range CheckOrder {
			if d.Checks[c] == Skipped {
				d.Reasons = append(d.Reasons, UnknownPrefix+c+": not checked")
			}
		}
	}

	d.Eligible, d.WipeEligible = true, true
	for _, c := range CheckOrder {
		st := d.Checks[c]
		if st != Pass {
			d.Eligible = false
		}
		if st != Pass && !(c == CheckSignatures && st == Fail) {
			d.WipeEligible = false
		}
	}
	if d.Eligible {
		d.WipeEligible = false
	}
}

func describeMounts(ms []Mount) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.Mountpoint == "[SWAP]" {
			parts = append(parts, m.Device+" is active swap")
			continue
		}
		parts = append(parts, m.Device+" mounted at "+m.Mountpoint)
	}
	return strings.Join(parts, ", ")
}

func describeHolders(hs []Holder) string {
	var parts, peers []string
	for _, h := range hs {
		who := h.Name
		if h.Label != "" {
			who += " " + h.Label
		}
		switch h.Kind {
		case "lvm":
			parts = append(parts, fmt.Sprintf("%s is an LVM physical volume (held by %s)", h.Of, who))
		case "multipath":
			parts = append(parts, fmt.Sprintf("%s is a multipath path (held by %s)", h.Of, who))
		case "multipath-peer":
			peers = append(peers, h.Name)
		case "md":
			parts = append(parts, fmt.Sprintf("%s is an md RAID member (of %s)", h.Of, who))
		case "bcache":
			parts = append(parts, fmt.Sprintf("%s is a bcache device (of %s)", h.Of, who))
		case "crypt":
			parts = append(parts, fmt.Sprintf("%s is encrypted (opened as %s)", h.Of, who))
		case "partition-mapping":
			parts = append(parts, fmt.Sprintf("%s is partition-mapped (by %s)", h.Of, who))
		default:
			parts = append(parts, fmt.Sprintf("%s is held by %s", h.Of, who))
		}
	}
	if len(peers) > 0 {
		parts = append(parts, fmt.Sprintf("%s is a multipath path (same WWID as %s)", hs[0].Of, strings.Join(peers, ", ")))
	}
	return strings.Join(parts, ", ")
}
