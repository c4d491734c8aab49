package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cloudctl/cloudctl/roles/driver"
)

// RecoverAlone implements driver.Recoverer: after `cloudctl cluster recover`
// the survivor's monitor forms the monitor quorum alone. Its store's monmap
// loses the monitors of the lost members (ceph-mon --extract-monmap,
// monmaptool --rm, ceph-mon --inject-monmap, with the monitor stopped) and
// the cluster database forgets them; the loop starts the monitor again. The
// lost members' OSDs are purged by the usual clean-up once they are removed.
func (d *Driver) RecoverAlone(ctx context.Context, env *driver.Env, lost []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := layout{dir: env.Dir}
	local := env.Local.Name
	if !exists(filepath.Join(l.monData(local), doneMarker)) {
		return nil // no monitor on this node: nothing of Ceph to rebuild here
	}
	d.stopDaemon(env, "mon", local)
	if err := os.MkdirAll(l.run(), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", l.run(), err)
	}
	monmap := filepath.Join(l.run(), "monmap.recover")
	defer os.Remove(monmap)
	if _, err := d.Cmd.Run(ctx, d.bin(env, "ceph-mon"), "-c", l.conf(), "-i", local, "--extract-monmap", monmap); err != nil {
		return fmt.Errorf("extract the monmap of the monitor %s: %w", local, err)
	}
	out, err := d.Cmd.Run(ctx, d.bin(env, "monmaptool"), "--print", monmap)
	if err != nil {
		return fmt.Errorf("read the monmap of the monitor %s: %w", local, err)
	}
	inMap := map[string]bool{}
	for _, f := range strings.Fields(string(out)) {
		if name, ok := strings.CutPrefix(f, "mon."); ok {
			inMap[name] = true
		}
	}
	removed := false
	for _, n := range lost {
		if n == local || !inMap[n] {
			continue
		}
		if _, err := d.Cmd.Run(ctx, d.bin(env, "monmaptool"), monmap, "--rm", n); err != nil {
			return fmt.Errorf("remove the monitor of %s from the monmap: %w", n, err)
		}
		removed = true
	}
	if removed {
		if _, err := d.Cmd.Run(ctx, d.bin(env, "ceph-mon"), "-c", l.conf(), "-i", local, "--inject-monmap", monmap); err != nil {
			return fmt.Errorf("inject the new monmap into the monitor %s: %w", local, err)
		}
		env.Log.Warn("storage: the monitor of this node now forms the monitor quorum alone", "dropped", lost)
	}
	for _, n := range lost {
		if n == local {
			continue
		}
		if err := deleteMonitor(ctx, env.DB, n); err != nil {
			return err
		}
	}
	d.conns.close()
	return nil
}
