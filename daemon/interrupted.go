package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// bootstrapPending marks a bootstrap under way: written when the bootstrap
// begins (preBootstrap) and removed once the first node is recorded
// (postBootstrap). Found when cloudd starts, it means the last bootstrap
// died before it finished.
const bootstrapPending = "bootstrap.pending"

// bootstrapState is what microcluster writes into the state directory while
// it bootstraps a node: its name and address, its trust store entry, the
// cluster certificate and the cluster database.
var bootstrapState = []string{"database", "daemon.yaml", "truststore", "cluster.crt", "cluster.key"}

// markBootstrap records that a bootstrap began.
func (d *Daemon) markBootstrap() error {
	p := filepath.Join(d.cfg.StateDir, bootstrapPending)
	if err := os.WriteFile(p, []byte(d.cfg.Now().UTC().Format(time.RFC3339)+"\n"), 0o600); err != nil {
		return fmt.Errorf("record the bootstrap in %s: %w", p, err)
	}
	return nil
}

// bootstrapDone records that the bootstrap finished.
func (d *Daemon) bootstrapDone() error {
	p := filepath.Join(d.cfg.StateDir, bootstrapPending)
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("record the end of the bootstrap (%s): %w", p, err)
	}
	return nil
}

// clearInterruptedBootstrap runs before microcluster opens the state
// directory. A bootstrap that died midway (cloudd killed, the power cut)
// leaves a state microcluster cannot start from or bootstrap again: a
// trust store entry without a database ("a remote with name … already
// exists"), a database without its schema (cloudd exits at every start), or
// one that never opens ("Database is still starting"). No other node can
// have joined a cluster whose first node was never recorded, so nothing is
// lost by starting again: the half-made state is deleted and the same
// `cloudctl bootstrap` works. It reports whether it cleared anything.
func (d *Daemon) clearInterruptedBootstrap() (bool, error) {
	marker := filepath.Join(d.cfg.StateDir, bootstrapPending)
	b, err := os.ReadFile(marker)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", marker, err)
	}
	var removed []string
	for _, name := range bootstrapState {
		p := filepath.Join(d.cfg.StateDir, name)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			return false, fmt.Errorf("clear the state of the interrupted bootstrap: %w", err)
		}
		removed = append(removed, name)
	}
	if err := os.Remove(marker); err != nil {
		return false, fmt.Errorf("clear the state of the interrupted bootstrap: %w", err)
	}
	d.log.Warn("the last bootstrap of this node stopped before it finished: its half-made state was cleared; run the same `cloudctl bootstrap` again",
		"began", string(trimNL(b)), "removed", removed)
	return true, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
