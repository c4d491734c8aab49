package bootstrap

import (
	"net/netip"

	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
)

// disk builds a probed disk from raw facts; Decide evaluates it like the probe.
func disk(name string, gib uint64, typ, model string, mod func(*hwprobe.Disk)) hwprobe.Disk {
	d := hwprobe.Disk{Name: name, Path: "/dev/" + name, SizeBytes: gib << 30, Type: typ, Model: model, Kind: hwprobe.KindDisk,
		Partitions: []string{}, Holders: []hwprobe.Holder{}, Mounts: []hwprobe.Mount{}, Signatures: []string{}}
	if mod != nil {
		mod(&d)
	}
	return d
}

// testFacts is a 64 GiB, 8-core machine with KVM, two NICs and five disks:
// sda (system disk: partitioned, mounted), sdb and sdc (eligible), sdd (an
// old GPT label: usable after a wipe) and loop0.
func testFacts() Facts {
	hw := hwprobe.Facts{
		Source: "snapshot",
		Memory: hwprobe.Memory{PhysicalBytes: 64 << 30, UsableBytes: 63 << 30, InstalledGiB: 64, PhysicalSource: "memory-blocks"},
		CPU:    hwprobe.CPU{Arch: "amd64", Model: "Test CPU", Sockets: 1, Cores: 8, Threads: 16, VirtFlags: []string{"vmx"}},
		KVM:    hwprobe.KVM{Verdict: hwprobe.KVMYes, Reason: "vmx flag and a usable /dev/kvm"},
		Disks: []hwprobe.Disk{
			disk("sda", 480, "ssd", "System SSD", func(d *hwprobe.Disk) {
				d.Partitions = []string{"sda1", "sda2"}
				d.Mounts = []hwprobe.Mount{{Device: "sda2", Mountpoint: "/", FSType: "ext4"}}
				d.Signatures = []string{"gpt"}
			}),
			disk("sdb", 2048, "ssd", "Samsung SSD 870", nil),
			disk("sdc", 1024, "hdd", "ST1000NM", nil),
			disk("sdd", 500, "ssd", "Old SSD", func(d *hwprobe.Disk) { d.Signatures = []string{"gpt"} }),
			disk("loop0", 20, "unknown", "", func(d *hwprobe.Disk) { d.Kind = hwprobe.KindLoop }),
		},
		NICs: []hwprobe.NIC{{Name: "eth0", State: "up"}, {Name: "eth1", State: "up"}},
	}
	m, err := manifests.Default()
	if err != nil {
		panic(err)
	}
	pol := PolicyFromManifest(m)
	hw.Decide(pol, roles.All)
	return Facts{
		Hardware: hw,
		Source:   "test machine",
		Hostname: "node1",
		Addresses: []HostAddress{
			{Interface: "eth0", Prefix: netip.MustParsePrefix("10.0.0.1/24")},
			{Interface: "eth1", Prefix: netip.MustParsePrefix("192.168.5.10/24")},
		},
		DefaultAddress: "10.0.0.1",
		DiskAliases:    map[string]string{"/dev/disk/by-id/wwn-0x5000c500a1b2c3d4": "/dev/sdd", "/dev/disk/by-id/ata-Samsung_SSD_870": "/dev/sdb"},
		Policy:         pol,
		PoolSizeMax:    3,
	}
}

// smallFacts is a 1-core, 2 GiB machine without KVM and without disks.
func smallFacts() Facts {
	f := testFacts()
	f.Hardware.Memory = hwprobe.Memory{PhysicalBytes: 2 << 30, UsableBytes: 2 << 30, InstalledGiB: 2, PhysicalSource: "memory-blocks"}
	f.Hardware.CPU.Cores, f.Hardware.CPU.Threads, f.Hardware.CPU.VirtFlags = 1, 1, []string{}
	f.Hardware.KVM = hwprobe.KVM{Verdict: hwprobe.KVMNo, Reason: "the CPU advertises neither vmx nor svm"}
	f.Hardware.Disks = nil
	f.Hardware.Decide(f.Policy, roles.All)
	return f
}

// noKVMFacts is testFacts without KVM.
func noKVMFacts() Facts {
	f := testFacts()
	f.Hardware.KVM = hwprobe.KVM{Verdict: hwprobe.KVMNo, Reason: "the CPU advertises neither vmx nor svm"}
	f.Hardware.Decide(f.Policy, roles.All)
	return f
}

// factsNamed returns a fixture by name, for golden files.
func factsNamed(name string) Facts {
	switch name {
	case "small":
		return smallFacts()
	case "onecore":
		f := testFacts()
		f.Hardware.CPU.Cores, f.Hardware.CPU.Threads = 1, 1
		f.Hardware.Decide(f.Policy, roles.All)
		return f
	case "nokvm":
		return noKVMFacts()
	case "noaddress":
		f := testFacts()
		f.DefaultAddress = ""
		return f
	}
	return testFacts()
}
