package hwprobe

import (
	"context"
	"fmt"
	"sync"

	"github.com/jaypipes/ghw"

	"github.com/cloudctl/cloudctl/roles"
)

// Probe reads the facts of a source, evaluates its disks against the
// policy, and takes the decisions and findings for the given roles (all
// roles when empty).
func Probe(ctx context.Context, src Source, p Policy, rs []roles.Role) (*Facts, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	f := &Facts{Source: "live"}
	if src.Host() == nil {
		f.Source = "snapshot"
	}
	if sp, ok := src.(interface{ Path() string }); ok {
		f.SourcePath = sp.Path()
	}

	// The four readers touch different parts of the source, and most of
	// their time is spent in system calls (a file per memory block, per
	// block device): side by side they take about half as long.
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i, read := range []func() error{
		func() (err error) { f.Memory, err = readMemory(ctx, src); return err },
		func() (err error) {
			if f.CPU, err = readCPU(ctx, src); err == nil {
				f.KVM = kvmVerdict(f.CPU.Arch, f.CPU.VirtFlags, probeKVMDevice(src), kvmModules(src.FS()))
			}
			return err
		},
		func() (err error) { f.Disks, err = newDiskEnv(src, p).readDisks(ctx); return err },
		func() (err error) { f.NICs, err = readNICs(ctx, src); return err },
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = read()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.Decide(p, rs)
	return f, nil
}

// InspectDevice checks one block device of this machine, named by any path
// that leads to it (/dev/sdb, /dev/disk/by-id/..., /dev/loop3), against the
// OSD eligibility rules. Unlike Probe it always reads the device, whatever
// its type, so that the signature, mount and holder checks can be run on
// any device (a loop device still fails the type check).
func InspectDevice(ctx context.Context, path string, p Policy) (*Disk, error) {
	m, err := OpenMachine()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return Inspect(ctx, m, path, p)
}

// Inspect is InspectDevice on any source; path is a /dev path inside it.
func Inspect(ctx context.Context, src Source, path string, p Policy) (*Disk, error) {
	env := newDiskEnv(src, p)
	name, ok := env.sb.resolveDevice(path)
	if !ok {
		return nil, fmt.Errorf("inspect %s: not a block device listed in /sys/block", path)
	}
	if parent := env.sb.byName[name].Parent; parent != "" {
		return nil, fmt.Errorf("inspect %s: %s is a partition of %s; OSDs take whole disks", path, name, parent)
	}
	info, err := ghw.Block(ghwOpts(ctx, src)...)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: block devices: %w", path, err)
	}
	for _, gd := range info.Disks {
		if gd.Name != name {
			continue
		}
		d := env.fromGHW(gd)
		env.complete(ctx, &d, true)
		Evaluate(&d, p)
		return &d, nil
	}
	return nil, fmt.Errorf("inspect %s: %s is not listed as a disk (size 0?)", path, name)
}
