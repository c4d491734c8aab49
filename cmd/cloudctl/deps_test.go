package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCLIDoesNotLinkRoleRuntimes: the CLI knows the roles' planning side
// only; their runtime libraries and drivers stay in cloudd.
func TestCLIDoesNotLinkRoleRuntimes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go tool")
	}
	out, err := exec.CommandContext(t.Context(), "go", "list", "-tags", "pacific libsqlite3", "-deps", "github.com/cloudctl/cloudctl/cmd/cloudctl").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, out)
	}
	forbidden := []string{
		"github.com/go-sql-driver/mysql",
		"github.com/ceph/go-ceph/",
		"github.com/cloudctl/cloudctl/roles/control",
		"github.com/cloudctl/cloudctl/roles/storage",
		"github.com/cloudctl/cloudctl/roles/compute",
		"github.com/cloudctl/cloudctl/roles/endpoint",
		"github.com/cloudctl/cloudctl/daemon",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			// A role's pure planning package is what the CLI may use.
			if strings.HasPrefix(pkg, f) && !strings.HasSuffix(pkg, "/plan") {
				t.Errorf("cloudctl links %s", pkg)
			}
		}
	}
}
