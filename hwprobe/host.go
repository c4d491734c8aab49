package hwprobe

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// liveHost is the running kernel: device nodes under dev, netlink, uname.
type liveHost struct {
	dev string // the /dev directory
}

// blockFile is an open block device.
type blockFile struct{ *os.File }

func (b blockFile) Size() (int64, error) {
	n, err := b.Seek(0, 2)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", b.Name(), err)
	}
	return n, nil
}

func (h liveHost) OpenBlock(name string) (BlockDevice, error) {
	if !validDevName(name) {
		return nil, fmt.Errorf("invalid device name %q", name)
	}
	// O_NONBLOCK: never wait for media or a tray.
	f, err := os.OpenFile(filepath.Join(h.dev, name), os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return blockFile{f}, nil
}

// kvmGetAPIVersion is KVM_GET_API_VERSION, _IO(0xAE, 0x00).
const kvmGetAPIVersion = 0xAE00

func (h liveHost) KVMAPIVersion() (int, error) {
	f, err := os.OpenFile(filepath.Join(h.dev, "kvm"), os.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("/dev/kvm: %w", err)
	}
	var v uintptr
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		v, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, kvmGetAPIVersion, 0)
	}); err != nil {
		return 0, fmt.Errorf("/dev/kvm: %w", err)
	}
	if errno != 0 {
		return 0, fmt.Errorf("/dev/kvm: KVM_GET_API_VERSION: %w", errno)
	}
	return int(v), nil
}

func (h liveHost) InterfaceAddrs(name string) ([]string, error) {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", name, err)
	}
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out, nil
}

func (h liveHost) Machine() (string, error) {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "", fmt.Errorf("uname: %w", err)
	}
	b := make([]byte, 0, len(u.Machine))
	for _, c := range u.Machine {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	if len(b) == 0 {
		return "", errors.New("uname: empty machine name")
	}
	return string(b), nil
}
