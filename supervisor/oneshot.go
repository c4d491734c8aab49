package supervisor

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// Commands runs one-off programs a role needs besides its daemons (a datadir
// initialisation, a Ceph mkfs). Tests of the decisions pass their own.
type Commands interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// Exec is the real Commands: the program's combined output, and on failure an
// error that ends with its last lines.
type Exec struct{}

// Run implements Commands.
func (Exec) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", filepath.Base(name), err, LastLines(out, 5))
	}
	return out, nil
}

// LastLines is the last n lines of b on one line, joined by " | ".
func LastLines(b []byte, n int) string {
	ls := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, " | ")
}
