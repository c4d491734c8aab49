package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDepsScriptRemovesPolicyRC runs scripts/deps.sh with stand-ins for
// dpkg-query (every package missing), apt-get and go: the policy-rc.d it adds
// exists during the install and is gone afterwards, also when the install
// fails; one that was there before is left alone.
func TestDepsScriptRemovesPolicyRC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("deps.sh installs only as root")
	}
	script, err := filepath.Abs("../scripts/deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		existing bool
		aptFails bool
	}{{"added and removed", false, false}, {"removed after a failed install", false, true}, {"an existing one is kept", true, false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			policy := filepath.Join(dir, "policy-rc.d")
			seen := filepath.Join(dir, "seen")
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			aptRC := "0"
			if tc.aptFails {
				aptRC = "100"
			}
			for name, body := range map[string]string{
				"dpkg-query": "exit 1\n",
				"apt-get":    `if [ "$1" = install ]; then if [ -x "` + policy + `" ]; then echo present > "` + seen + `"; else echo absent > "` + seen + `"; fi; exit ` + aptRC + `; fi` + "\nexit 0\n",
				"go":         "exit 0\n",
			} {
				if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tc.existing {
				if err := os.WriteFile(policy, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command("bash", script)
			cmd.Env = append(os.Environ(), "PATH="+bin+":/usr/bin:/bin", "CLOUDCTL_POLICY_RC="+policy)
			out, err := cmd.CombinedOutput()
			if tc.aptFails != (err != nil) {
				t.Fatalf("deps.sh: %v: %s", err, out)
			}
			b, _ := os.ReadFile(seen)
			if strings.TrimSpace(string(b)) != "present" {
				t.Fatalf("policy-rc.d during the install: %q", b)
			}
			_, statErr := os.Stat(policy)
			if tc.existing && statErr != nil {
				t.Fatalf("the policy-rc.d that was there before was removed")
			}
			if !tc.existing && statErr == nil {
				t.Fatalf("the policy-rc.d deps.sh added is still there (%s)", out)
			}
		})
	}
}
