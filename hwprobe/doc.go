// Package hwprobe reads the hardware facts cloudctl decides from, on the live
// machine or in a ghw snapshot, and turns them into decisions and findings.
//
// Facts come from github.com/jaypipes/ghw (memory, CPU, block devices, NICs)
// and, where ghw is blind, from sysfs, the mount table and the first bytes of
// each disk: holders (LVM, md, multipath, bcache, dm-crypt), mounts of a disk
// or of anything stacked on it, partition-table and filesystem signatures,
// and disks that already carry a Ceph OSD. A fact that cannot be read (a
// snapshot has no /dev, no holders and no udev data) is reported as unknown,
// never guessed: a disk whose eligibility depends on an unknown fact is not
// eligible, and says why.
//
// The decisions (MySQL topology, OSD disks) and the per-role readiness
// findings are computed from the facts and a [Policy], whose thresholds are
// data: the manifest supplies them, [DefaultPolicy] holds the defaults.
//
// The hardware is reached through a [Source]: [OpenMachine] for the running
// machine, [OpenSnapshot] for a ghw snapshot (a tarball or an unpacked
// directory). Tests supply their own. The JSON form of [Facts] is a
// documented contract (docs/probe.md).
package hwprobe
