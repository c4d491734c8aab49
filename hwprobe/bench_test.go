package hwprobe

import (
	"context"
	"testing"
)

// BenchmarkProbeLive probes this machine (the work behind `cloudctl probe`).
// Timings are reported, never asserted.
func BenchmarkProbeLive(b *testing.B) {
	m, err := OpenMachine()
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	for b.Loop() {
		if _, err := Probe(ctx, m, DefaultPolicy(), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProbeSnapshot probes the unpacked R610 snapshot (8 block
// devices, 24 threads); unpacking is not measured.
func BenchmarkProbeSnapshot(b *testing.B) {
	dirs := snapshotDirs(b)
	s, err := OpenSnapshot(dirs["linux-amd64-8581cf3a529e5d8b97ea876eade2f60d"])
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for b.Loop() {
		if _, err := Probe(ctx, s, DefaultPolicy(), nil); err != nil {
			b.Fatal(err)
		}
	}
}
