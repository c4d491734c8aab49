package tests

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/tests/harness"
)

// loopDevice attaches a sparse file of size bytes, starting with head, to a
// free loop device (with partition scanning) and detaches it when the test
// ends.
func loopDevice(t *testing.T, size int64, head []byte) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(f, head, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(f, size); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "--find", "--show", "--partscan", f).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
			t.Logf("losetup --detach %s: %v: %s", dev, err, out)
		}
	})
	return dev
}

// mbrOnePartition is a DOS partition table (a master boot record) with one
// Linux partition of 1 GiB from sector 2048.
func mbrOnePartition() []byte {
	b := make([]byte, 512)
	e := b[446:462]
	e[4] = 0x83 // Linux
	binary.LittleEndian.PutUint32(e[8:12], 2048)
	binary.LittleEndian.PutUint32(e[12:16], 2<<20) // sectors of 512 bytes
	b[510], b[511] = 0x55, 0xAA
	return b
}

func must(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// TestStorageDisks: the disk rules on real block devices, admitted as disks
// through the manifest (storage.admit_loop_devices, off by default). A
// partitioned or a mounted disk in a preseed is refused, naming the file and
// line, before anything starts; a disk that only carries a filesystem
// signature is refused without wipe and, with wipe: true, erased and made
// an OSD.
func TestStorageDisks(t *testing.T) {
	const size = 12 << 30 // above the manifest's 10 GiB minimum; sparse
	// A partition table with one partition (the kernel reads it when the
	// device is attached).
	parted := loopDevice(t, size, mbrOnePartition())
	mounted, signed := loopDevice(t, size, nil), loopDevice(t, size, nil)
	// A filesystem, mounted (in the machine's mount namespace, which the
	// nodes' network namespaces share).
	must(t, "mkfs.ext4", "-q", "-F", mounted)
	mnt := t.TempDir()
	must(t, "mount", mounted, mnt)
	t.Cleanup(func() { _ = exec.Command("umount", mnt).Run() })
	// A filesystem signature only.
	must(t, "mkfs.ext4", "-q", "-F", signed)

	dir := t.TempDir()
	manifest := filepath.Join(dir, "manifest.yaml")
	if err := os.WriteFile(manifest, []byte(fmt.Sprintf("storage:\n  admit_loop_devices: [%s, %s, %s]\n", parted, mounted, signed)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := harness.NewWithOptions(t, 1, harness.Options{DaemonArgs: []string{"--manifest", manifest}})
	n1 := c.Node(1)
	preseed := func(name, disk string, wipe bool) string {
		p := filepath.Join(dir, name+".yaml")
		w := ""
		if wipe {
			w = "\n        wipe: true"
		}
		doc := fmt.Sprintf("version: 1\nnodes:\n  - name: %s\n    address: %s\n    roles: [storage]\n    disks:\n      - path: %s%s\n", n1.Name, n1.IP, disk, w)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notBootstrapped := func(t *testing.T) {
		t.Helper()
		r := n1.Run("status")
		if r.Code == 0 || !strings.Contains(r.Stderr, "not part of a cluster") {
			t.Fatalf("after a refused bootstrap, status: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
	}

	for _, tc := range []struct{ name, disk, want string }{
		{"partitioned", parted, "partition"},
		{"mounted", mounted, "mounted"},
		{"signature-without-wipe", signed, "wipe"},
	} {
		t.Run(tc.name+" refused before anything starts", func(t *testing.T) {
			f := preseed(tc.name, tc.disk, false)
			r := n1.Run("bootstrap", "--preseed", f)
			oneSentence(t, r, tc.want)
			// The message names the file and the line of the disk.
			if !strings.Contains(r.Stderr, filepath.Base(f)+":7") {
				t.Fatalf("the refusal does not name %s:7: %s", filepath.Base(f), r.Stderr)
			}
			t.Logf("%s: %s", tc.name, strings.TrimSpace(r.Stderr[strings.Index(r.Stderr, "Error: "):]))
			notBootstrapped(t)
		})
	}
	// Nothing was touched: the signature is still there.
	if out, _ := exec.Command("blkid", "-p", "-o", "value", "-s", "TYPE", signed).Output(); strings.TrimSpace(string(out)) != "ext4" {
		t.Fatalf("the refused disk %s lost its signature: blkid says %q", signed, out)
	}

	t.Run("signature with wipe: erased and made an OSD", func(t *testing.T) {
		n1.MustRun(t, "bootstrap", "--preseed", preseed("wipe", signed, true))
		var last string
		harness.Eventually(t, 6*time.Minute, "an OSD up on "+signed, func() error {
			st, err := status(t, n1)
			if err != nil {
				return err
			}
			for _, l := range st.Layers {
				if l.Name != api.LayerStorage {
					continue
				}
				var det api.StorageDetails
				if err := json.Unmarshal(l.Details, &det); err != nil {
					return fmt.Errorf("storage layer: %s (%s)", l.Health, l.Reason)
				}
				last = fmt.Sprintf("%s %s %+v", l.Health, l.Reason, det.OSDs)
				for _, o := range det.OSDs {
					if o.Path == signed && o.Up && !o.FileBacked {
						return nil
					}
				}
			}
			return fmt.Errorf("no OSD up on %s yet: %s", signed, last)
		})
		// The probe now says the disk is an OSD, not an ext4 filesystem.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if out, _ := n1.Output(ctx, "blkid", "-p", "-o", "value", "-s", "TYPE", signed); strings.TrimSpace(string(out)) == "ext4" {
			t.Fatalf("%s still carries its ext4 signature after the wipe", signed)
		}
	})
}
