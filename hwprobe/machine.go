package hwprobe

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/jaypipes/ghw"
)

// ghwOpts are the options every ghw call gets: the source's root as chroot,
// no external tools (ethtool, lsblk), no warnings on stderr.
func ghwOpts(ctx context.Context, src Source) []any {
	return []any{ctx, ghw.WithChroot(src.Root()), ghw.WithDisableTools(), ghw.WithDisableWarnings()}
}

// ReadMemory reads installed and usable RAM alone, without a whole probe
// (cloudd sizes and decides with it).
func ReadMemory(ctx context.Context, src Source) (Memory, error) { return readMemory(ctx, src) }

// readMemory reads installed and usable RAM: the online memory blocks and
// MemTotal, the figures ghw gives. On the running machine onlineBlockBytes
// counts the blocks (ghw takes six system calls a block, and a machine has
// one block per 128 MiB); ghw reads snapshots (untrusted files, which it
// reads as it always did) and machines without memory blocks (its boot-log
// fallback).
func readMemory(ctx context.Context, src Source) (Memory, error) {
	if src.Host() == nil {
		return ghwMemory(ctx, src)
	}
	if physical, ok := onlineBlockBytes(src.Root()); ok {
		if usable, err := memTotal(src.FS()); err == nil {
			return memoryFrom(src.FS(), physical, usable), nil
		}
	}
	return ghwMemory(ctx, src)
}

// ghwMemory is ghw's reading of the memory.
func ghwMemory(ctx context.Context, src Source) (Memory, error) {
	info, err := ghw.Memory(ghwOpts(ctx, src)...)
	if err != nil {
		return Memory{}, fmt.Errorf("memory: %w", err)
	}
	return memoryFrom(src.FS(), info.TotalPhysicalBytes, info.TotalUsableBytes), nil
}

// onlineBlockBytes is the size of root's online memory blocks
// (sys/devices/system/memory/memoryN/state reads "online"), as ghw counts
// them, with one openat, read and close a block. ok is false when the
// blocks cannot all be read: the caller asks ghw, which falls back further.
func onlineBlockBytes(root string) (total int64, ok bool) {
	dir := filepath.Join(root, "sys/devices/system/memory")
	raw, err := os.ReadFile(filepath.Join(dir, "block_size_bytes"))
	if err != nil {
		return 0, false
	}
	size, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 16, 64)
	if err != nil || size <= 0 {
		return 0, false
	}
	d, err := os.Open(dir)
	if err != nil {
		return 0, false
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, false
	}
	dfd := int(d.Fd())
	buf := make([]byte, 32)
	for _, name := range names {
		if !isMemoryBlock(name) {
			continue
		}
		fd, err := syscall.Openat(dfd, name+"/state", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return 0, false
		}
		n, err := syscall.Read(fd, buf)
		syscall.Close(fd)
		if err != nil || n < 0 {
			return 0, false
		}
		if strings.TrimSpace(string(buf[:n])) == "online" {
			total += size
		}
	}
	return total, true
}

// isMemoryBlock reports whether name is memoryN, a memory block's directory.
func isMemoryBlock(name string) bool {
	digits, ok := strings.CutPrefix(name, "memory")
	if !ok || digits == "" {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// memTotal is /proc/meminfo's MemTotal in bytes.
func memTotal(fsys fs.FS) (int64, error) {
	raw, err := fs.ReadFile(fsys, "proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc/meminfo: MemTotal %q: %w", f[0], err)
		}
		if len(f) > 1 && f[1] != "kB" {
			return 0, fmt.Errorf("proc/meminfo: MemTotal in %q, not kB", f[1])
		}
		if kb < 1 {
			return 0, fmt.Errorf("proc/meminfo: MemTotal is %d kB", kb)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("proc/meminfo has no MemTotal")
}

// memoryFrom picks the installed RAM and says where it came from. ghw
// counts online memory blocks in sysfs, else reads the boot log, else
// falls back to MemTotal.
func memoryFrom(fsys fs.FS, physical, usable int64) Memory {
	m := Memory{UsableBytes: uint64(max(usable, 0))}
	switch {
	case physical <= 0 || physical <= usable:
		m.PhysicalBytes, m.PhysicalSource = m.UsableBytes, "meminfo"
	case exists(fsys, "sys/devices/system/memory/block_size_bytes"):
		m.PhysicalBytes, m.PhysicalSource = uint64(physical), "memory-blocks"
	default:
		m.PhysicalBytes, m.PhysicalSource = uint64(physical), "syslog"
	}
	m.InstalledGiB = roundGiB(m.PhysicalBytes)
	return m
}

// roundGiB rounds a byte count to the nearest GiB.
func roundGiB(b uint64) int { return int(math.Round(float64(b) / GiB)) }

// readCPU reads processors, cores, threads, architecture and virtualization flags.
func readCPU(ctx context.Context, src Source) (CPU, error) {
	info, err := ghw.CPU(ghwOpts(ctx, src)...)
	if err != nil {
		return CPU{}, fmt.Errorf("cpu: %w", err)
	}
	c := CPU{
		Sockets:   len(info.Processors),
		Cores:     int(info.TotalCores),
		Threads:   int(info.TotalHardwareThreads),
		VirtFlags: []string{},
	}
	flags := map[string]bool{}
	for _, p := range info.Processors {
		if c.Vendor == "" {
			c.Vendor, c.Model = strings.TrimSpace(p.Vendor), strings.TrimSpace(p.Model)
		}
		for _, f := range p.Capabilities {
			flags[f] = true
		}
	}
	c.Arch = archOf(src)
	for _, f := range virtFlagNames(c.Arch) {
		if flags[f] {
			c.VirtFlags = append(c.VirtFlags, f)
		}
	}
	return c, nil
}

// virtFlagNames are the CPU flags that advertise hardware virtualization.
func virtFlagNames(arch string) []string {
	switch arch {
	case "amd64", "386":
		return []string{"vmx", "svm"}
	case "s390x":
		return []string{"sie"}
	case "unknown":
		return []string{"vmx", "svm", "sie"}
	}
	return nil // arm64, ppc64le, riscv64: not visible in /proc/cpuinfo
}

// archOf is uname -m on a live machine; for a snapshot it is read from
// /proc/cpuinfo, which names the architecture's own fields.
func archOf(src Source) string {
	if h := src.Host(); h != nil {
		if m, err := h.Machine(); err == nil {
			return goArch(m)
		}
	}
	b, err := fs.ReadFile(src.FS(), "proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	return archFromCPUInfo(string(b))
}

func goArch(machine string) string {
	switch machine {
	case "x86_64", "amd64":
		return "amd64"
	case "i386", "i486", "i586", "i686":
		return "386"
	case "aarch64", "arm64", "aarch64_be":
		return "arm64"
	case "s390x":
		return "s390x"
	case "ppc64le", "ppc64", "riscv64", "mips64":
		return machine
	case "loongarch64":
		return "loong64"
	}
	if strings.HasPrefix(machine, "armv") {
		return "arm"
	}
	return machine
}

// archFromCPUInfo recognises the architecture by the fields its kernel
// writes to /proc/cpuinfo; "unknown" when none match.
func archFromCPUInfo(s string) string {
	fields := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		k = strings.TrimSpace(k)
		if _, seen := fields[k]; !seen {
			fields[k] = strings.TrimSpace(v)
		}
	}
	switch {
	case fields["vendor_id"] == "IBM/S390" || strings.Contains(" "+fields["features"]+" ", " zarch "):
		return "s390x"
	case fields["flags"] != "":
		if strings.Contains(" "+fields["flags"]+" ", " lm ") {
			return "amd64"
		}
		return "386"
	case fields["CPU architecture"] == "8" || fields["CPU architecture"] == "AArch64":
		return "arm64"
	case fields["CPU architecture"] != "":
		return "arm"
	case strings.HasPrefix(fields["isa"], "rv64"):
		return "riscv64"
	}
	return "unknown"
}

// kvmDevice is what could be learned about /dev/kvm.
type kvmDevice struct {
	State  string // usable, missing or unknown
	Detail string
}

func probeKVMDevice(src Source) kvmDevice {
	h := src.Host()
	if h == nil {
		return kvmDevice{Unknown, "a snapshot has no /dev, so /dev/kvm cannot be checked"}
	}
	v, err := h.KVMAPIVersion()
	switch {
	case err == nil && v == 12:
		return kvmDevice{"usable", "/dev/kvm answers (API version 12)"}
	case err == nil:
		return kvmDevice{"missing", fmt.Sprintf("/dev/kvm answers an unsupported API version %d", v)}
	case errors.Is(err, fs.ErrNotExist):
		return kvmDevice{"missing", "/dev/kvm does not exist (kvm module not loaded, or virtualization disabled)"}
	case errors.Is(err, syscall.ENODEV) || errors.Is(err, syscall.ENXIO):
		return kvmDevice{"missing", "/dev/kvm has no driver behind it (kvm module not loaded)"}
	case errors.Is(err, fs.ErrPermission):
		return kvmDevice{Unknown, "/dev/kvm exists but cannot be opened: permission denied (run as root or join the kvm group)"}
	}
	return kvmDevice{Unknown, "/dev/kvm cannot be checked: " + err.Error()}
}

// kvmModules lists the loaded kvm modules (kvm_intel, kvm_amd, kvm_pvm, ...).
func kvmModules(fsys fs.FS) []string {
	ents, err := fs.ReadDir(fsys, "sys/module")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "kvm_") {
			out = append(out, e.Name())
		}
	}
	return out
}

// kvmVerdict applies the rule: on x86 the CPU flag (vmx/svm) and a usable
// /dev/kvm; elsewhere /dev/kvm alone; unknown when a needed fact is unknown.
func kvmVerdict(arch string, virtFlags []string, dev kvmDevice, modules []string) KVM {
	x86 := arch == "amd64" || arch == "386"
	if !x86 {
		switch dev.State {
		case "usable":
			return KVM{KVMYes, dev.Detail + " on " + arch}
		case "missing":
			return KVM{KVMNo, dev.Detail}
		}
		return KVM{KVMUnknown, dev.Detail}
	}
	if len(virtFlags) == 0 {
		r := "the CPU advertises neither vmx nor svm (virtualization disabled in firmware, or not passed through to this VM)"
		if dev.State == "usable" {
			r += "; /dev/kvm exists"
			if len(modules) > 0 {
				r += " (" + strings.Join(modules, ", ") + ")"
			}
			r += " but without hardware virtualization ordinary VMs cannot use it"
		}
		return KVM{KVMNo, r}
	}
	flag := strings.Join(virtFlags, "+")
	switch dev.State {
	case "usable":
		return KVM{KVMYes, "CPU flag " + flag + " and " + dev.Detail}
	case "missing":
		return KVM{KVMNo, "CPU flag " + flag + " is present but " + dev.Detail}
	}
	return KVM{KVMUnknown, "CPU flag " + flag + " is present, but " + dev.Detail}
}

// readNICs lists network interfaces (loopback excluded).
func readNICs(ctx context.Context, src Source) ([]NIC, error) {
	info, err := ghw.Network(ghwOpts(ctx, src)...)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	fsys := src.FS()
	out := make([]NIC, 0, len(info.NICs))
	for _, n := range info.NICs {
		dir := "sys/class/net/" + n.Name
		nic := NIC{Name: n.Name, MAC: n.MACAddress, Virtual: n.IsVirtual}
		if nic.MAC == "" {
			nic.MAC, _ = readString(fsys, dir+"/address")
		}
		if n.PCIAddress != nil {
			nic.PCIAddress = *n.PCIAddress
		}
		nic.State = nicState(fsys, dir)
		speed := n.Speed
		if speed == "" {
			speed, _ = readString(fsys, dir+"/speed")
		}
		if v, err := strconv.Atoi(strings.TrimSuffix(speed, "Mb/s")); err == nil && v > 0 {
			nic.SpeedMbps = v
		}
		if h := src.Host(); h != nil {
			if addrs, err := h.InterfaceAddrs(n.Name); err == nil {
				nic.Addresses = addrs
			}
		}
		out = append(out, nic)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// nicState reads operstate; "unknown" (tun, dummy, some virtual NICs) is
// settled by the carrier and the IFF_UP flag when sysfs has them.
func nicState(fsys fs.FS, dir string) string {
	op, err := readString(fsys, dir+"/operstate")
	if err != nil {
		return "unknown"
	}
	switch op {
	case "up":
		return "up"
	case "down", "lowerlayerdown", "notpresent", "dormant":
		return "down"
	}
	flags, err := readString(fsys, dir+"/flags")
	if err != nil {
		return "unknown"
	}
	f, err := strconv.ParseUint(strings.TrimPrefix(flags, "0x"), 16, 32)
	if err != nil {
		return "unknown"
	}
	if f&0x1 == 0 { // IFF_UP
		return "down"
	}
	switch carrier, _ := readString(fsys, dir+"/carrier"); carrier {
	case "1":
		return "up"
	case "0":
		return "down"
	}
	return "unknown"
}
