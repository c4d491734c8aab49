package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEffectiveManifestAgreement(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "m.yaml")
	const mine = "mysql:\n  multi_threshold_gib: 1\n"
	if err := os.WriteFile(file, []byte(mine), 0o600); err != nil {
		t.Fatal(err)
	}
	d := testDaemon(t)
	if m, err := d.effectiveManifest(""); err != nil || m.MySQL.MultiThresholdGiB != 32 {
		t.Fatalf("no overlay anywhere: %v", err)
	}
	if m, err := d.effectiveManifest(mine); err != nil || m.MySQL.MultiThresholdGiB != 1 {
		t.Fatalf("bootstrap overlay: %v", err)
	}
	d.cfg.ManifestOverlay = file
	if m, err := d.effectiveManifest(mine); err != nil || m.MySQL.MultiThresholdGiB != 1 {
		t.Fatalf("the same overlay on both sides was refused: %v", err)
	}
	_, err := d.effectiveManifest("mysql:\n  multi_threshold_gib: 2\n")
	if err == nil || !strings.Contains(err.Error(), "differ") || strings.Count(err.Error(), "\n") > 0 {
		t.Fatalf("disagreeing manifests: %v", err)
	}
	if _, err := d.effectiveManifest(""); err == nil || !strings.Contains(err.Error(), "carries no manifest") {
		t.Fatalf("a bootstrap without cloudd's manifest: %v", err)
	}
}
