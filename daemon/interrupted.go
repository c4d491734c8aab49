package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// markBootstrap records that a bootstrap began, durably: a power cut right
// after must find it.
func (d *Daemon) markBootstrap() error {
	p := filepath.Join(d.cfg.StateDir, bootstrapPending)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err == nil {
		_, err = f.WriteString(d.cfg.Now().UTC().Format(time.RFC3339) + "\n")
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = syncDir(d.cfg.StateDir)
	}
	if err != nil {
		return fmt.Errorf("record the bootstrap in %s: %w", p, err)
	}
	return nil
}

// bootstrapDone records that the bootstrap finished (or that this node
// joined instead), durably: a mark that came back after a power cut would
// clear a working member.
func (d *Daemon) bootstrapDone() error {
	p := filepath.Join(d.cfg.StateDir, bootstrapPending)
	err := os.Remove(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err == nil {
		err = syncDir(d.cfg.StateDir)
	}
	if err != nil {
		return fmt.Errorf("record the end of the bootstrap (%s): %w", p, err)
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
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
	// A bootstrap trusts only the node itself: more entries mean this node
	// went on to join or form a cluster, whatever the mark says.
	if trusted, _ := filepath.Glob(filepath.Join(d.cfg.StateDir, "truststore", "*.yaml")); len(trusted) > 1 {
		d.log.Warn("a bootstrap mark was left, but this node trusts other members: keeping its state", "trusted", len(trusted))
		return false, d.bootstrapDone()
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
	if err := d.bootstrapDone(); err != nil {
		return false, err
	}
	d.log.Warn("the last bootstrap of this node stopped before it finished: its half-made state was cleared; run the same `cloudctl bootstrap` again",
		"began", strings.TrimSpace(string(b)), "removed", removed)
	return true, nil
}
