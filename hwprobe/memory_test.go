package hwprobe

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jaypipes/ghw"
)

// TestReadMemoryAsGHW: readMemory gives ghw's figures on this machine, and
// the block count it uses there gives ghw's installed RAM on this machine
// and on every snapshot ghw ships (whose memory ghw itself reads).
func TestReadMemoryAsGHW(t *testing.T) {
	m, err := OpenMachine()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	srcs := []Source{m}
	for name, dir := range snapshotDirs(t) {
		s, err := OpenSnapshot(dir)
		if err != nil {
			t.Fatalf("snapshot %s: %v", name, err)
		}
		defer s.Close()
		srcs = append(srcs, s)
	}
	blocks := 0
	for _, src := range srcs {
		got, err := readMemory(context.Background(), src)
		if err != nil {
			t.Fatalf("readMemory of %s: %v", src.Describe(), err)
		}
		info, err := ghw.Memory(ghwOpts(context.Background(), src)...)
		if err != nil {
			t.Fatalf("ghw memory of %s: %v", src.Describe(), err)
		}
		if want := memoryFrom(src.FS(), info.TotalPhysicalBytes, info.TotalUsableBytes); got != want {
			t.Errorf("%s: readMemory %+v, ghw %+v", src.Describe(), got, want)
		}
		if n, ok := onlineBlockBytes(src.Root()); ok {
			blocks++
			if n != info.TotalPhysicalBytes {
				t.Errorf("%s: online blocks %d bytes, ghw %d", src.Describe(), n, info.TotalPhysicalBytes)
			}
		}
	}
	if blocks == 0 {
		t.Fatal("no source has memory blocks: the fast path was never compared")
	}
}

// TestOnlineBlockBytes counts online blocks only, and gives up (ghw then
// decides) on a block whose state cannot be read.
func TestOnlineBlockBytes(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "sys/devices/system/memory")
	write := func(rel, s string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := onlineBlockBytes(root); ok {
		t.Fatal("no block_size_bytes: want ok=false")
	}
	write("block_size_bytes", "8000000\n")
	write("memory0/state", "online\n")
	write("memory1/state", "offline\n")
	write("memory12/state", "online\n")
	write("power/state", "online\n") // not a block
	got, ok := onlineBlockBytes(root)
	if !ok || got != 2*0x8000000 {
		t.Fatalf("got %d, %v; want %d, true", got, ok, 2*0x8000000)
	}
	if err := os.MkdirAll(filepath.Join(dir, "memory13"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, ok := onlineBlockBytes(root); ok {
		t.Fatal("memory13 has no state: want ok=false")
	}
}
