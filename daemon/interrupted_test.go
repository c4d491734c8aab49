package daemon

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A bootstrap marked as begun and never finished has microcluster's
// half-made state cleared at the next start, and nothing else; a finished
// one (no marker) keeps everything.
func TestClearInterruptedBootstrap(t *testing.T) {
	dir := t.TempDir()
	d, err := New(Config{StateDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	made := []string{"database/info.yaml", "database/cluster.yaml", "daemon.yaml", "truststore/node1.yaml", "cluster.crt", "cluster.key"}
	kept := []string{"server.crt", "server.key", "control/keep"}
	write := func(names ...string) { writeFiles(t, dir, names...) }
	there := func(name string) bool { return fileThere(dir, name) }
	write(append(made, kept...)...)

	// A finished bootstrap: nothing is touched.
	if cleared, err := d.clearInterruptedBootstrap(); err != nil || cleared {
		t.Fatalf("without a marker: cleared %v, %v", cleared, err)
	}
	for _, n := range append(made, kept...) {
		if !there(n) {
			t.Fatalf("%s removed without a marker", n)
		}
	}

	// A bootstrap that began and did not finish.
	if err := d.markBootstrap(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, bootstrapPending)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("marker: %v %v", fi, err)
	}
	if cleared, err := d.clearInterruptedBootstrap(); err != nil || !cleared {
		t.Fatalf("with a marker: cleared %v, %v", cleared, err)
	}
	for _, n := range append(made, bootstrapPending, "database", "truststore") {
		if there(n) {
			t.Errorf("%s is still there after the interrupted bootstrap was cleared", n)
		}
	}
	for _, n := range kept {
		if !there(n) {
			t.Errorf("%s was removed, but the bootstrap did not make it", n)
		}
	}

	// A node that trusts other members went on to join: its state stays
	// whatever the mark says, and the mark goes.
	write(append(made, "truststore/node2.yaml")...)
	if err := d.markBootstrap(); err != nil {
		t.Fatal(err)
	}
	if cleared, err := d.clearInterruptedBootstrap(); err != nil || cleared {
		t.Fatalf("with other members trusted: cleared %v, %v", cleared, err)
	}
	for _, n := range made {
		if !there(n) {
			t.Fatalf("%s removed from a node that trusts other members", n)
		}
	}
	if there(bootstrapPending) {
		t.Fatal("the mark stayed")
	}

	// A bootstrap of a node with a cluster database is refused before the
	// mark is written.
	if err := d.preBootstrap(nil, nil); err == nil || !strings.Contains(err.Error(), "already has a cluster database") {
		t.Fatalf("preBootstrap with a database: %v", err)
	}
	if there(bootstrapPending) {
		t.Fatal("a refused bootstrap left its mark")
	}

	// bootstrapDone removes the marker, and is idempotent.
	if err := d.markBootstrap(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := d.bootstrapDone(); err != nil {
			t.Fatal(err)
		}
	}
	if there(bootstrapPending) {
		t.Fatal("marker still there after bootstrapDone")
	}
}

// A join marked as begun is cleared at the next start when the cluster
// database never took the node in (no info.yaml, or go-dqlite's join file
// still there), whatever the trust store holds, and kept, mark and all,
// when it did (finishInterruptedJoin records it then).
func TestClearInterruptedJoin(t *testing.T) {
	made := []string{"daemon.yaml", "truststore/node1.yaml", "truststore/node2.yaml", "cluster.crt", "cluster.key"}
	kept := []string{"server.crt", "server.key"}
	for _, tc := range []struct {
		name    string
		db      []string
		cleared bool
	}{
		{"before the database", nil, true},
		{"the database joining", []string{"database/info.yaml", "database/cluster.yaml", "database/join"}, true},
		{"the database joined", []string{"database/info.yaml", "database/cluster.yaml"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d, err := New(Config{StateDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				t.Fatal(err)
			}
			writeFiles(t, dir, append(append(append([]string{}, made...), kept...), tc.db...)...)
			there := func(name string) bool { return fileThere(dir, name) }
			if cleared, err := d.clearInterruptedJoin(); err != nil || cleared {
				t.Fatalf("without a mark: cleared %v, %v", cleared, err)
			}
			init := map[string]string{"k": "v"}
			if err := d.markJoin(joinMark{Name: "node2", InitConfig: init}); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(filepath.Join(dir, joinPending)); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("mark: %v %v", fi, err)
			}
			if m, err := d.readJoinMark(); err != nil || m == nil || m.Name != "node2" || m.InitConfig["k"] != "v" {
				t.Fatalf("mark read back: %+v, %v", m, err)
			}
			cleared, err := d.clearInterruptedJoin()
			if err != nil || cleared != tc.cleared {
				t.Fatalf("cleared %v, %v; want %v", cleared, err, tc.cleared)
			}
			for _, n := range kept {
				if !there(n) {
					t.Errorf("%s was removed, but the join did not make it", n)
				}
			}
			for _, n := range append(append([]string{}, made...), tc.db...) {
				if there(n) == tc.cleared {
					t.Errorf("%s: there %v after the start", n, there(n))
				}
			}
			if there(joinPending) == tc.cleared {
				t.Errorf("the mark: there %v after the start", there(joinPending))
			}
		})
	}
}

// A join that stopped before the cluster sent anything (the mark is
// written before the token is redeemed) leaves nothing to clear but its
// mark, and the node's own certificate stays.
func TestClearInterruptedJoinBeforeAnything(t *testing.T) {
	dir := t.TempDir()
	d, err := New(Config{StateDir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, "server.crt", "server.key")
	// microcluster makes both, empty, at every start.
	for _, sub := range []string{"database", "truststore"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.markJoin(joinMark{Name: "node2"}); err != nil {
		t.Fatal(err)
	}
	if cleared, err := d.clearInterruptedJoin(); err != nil || cleared {
		t.Fatalf("cleared %v, %v; want nothing cleared", cleared, err)
	}
	for _, n := range []string{"server.crt", "server.key", "database", "truststore"} {
		if !fileThere(dir, n) {
			t.Errorf("%s was removed", n)
		}
	}
	if fileThere(dir, joinPending) {
		t.Error("the mark stayed")
	}
}

// writeFiles creates each named file (and its directories) below dir.
func writeFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// fileThere reports whether name exists below dir.
func fileThere(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}
