package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// TestProbeFollowsManifestThreshold: the MySQL decision comes from the
// manifest, so moving the threshold changes what probe prints.
func TestProbeFollowsManifestThreshold(t *testing.T) {
	snap := r610(t) // 66 GiB installed
	decision := func(args ...string) string {
		t.Helper()
		out, err := runProbeCmd(t, append([]string{"probe", "--snapshot", snap, "--format", "json", "--state-dir", t.TempDir()}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			Decisions struct {
				MySQLTopology string `json:"mysql_topology"`
			} `json:"decisions"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatal(err)
		}
		return v.Decisions.MySQLTopology
	}
	if got := decision(); got != "multi" {
		t.Fatalf("default threshold on 66 GiB: %s", got)
	}
	overlay := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(overlay, []byte("mysql:\n  multi_threshold_gib: 128\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := decision("--manifest", overlay); got != "single" {
		t.Fatalf("threshold 128 GiB on 66 GiB: %s", got)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("mysql:\n  multi_threshold: 128\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := runProbeCmd(t, "probe", "--snapshot", snap, "--manifest", bad); err == nil {
		t.Fatal("a manifest with an unknown key was accepted")
	}
}
