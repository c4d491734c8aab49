package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWriteIfChanged(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret")
	if changed, err := WriteIfChanged(p, []byte("a"), 0o600); err != nil || !changed {
		t.Fatalf("first write: changed=%v err=%v", changed, err)
	}
	if changed, err := WriteIfChanged(p, []byte("a"), 0o600); err != nil || changed {
		t.Fatalf("same content and mode: changed=%v err=%v", changed, err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, err := WriteIfChanged(p, []byte("a"), 0o600); err != nil || !changed {
		t.Fatalf("same content, other mode: changed=%v err=%v", changed, err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode after rewrite: %v %v", fi.Mode(), err)
	}
	if changed, err := WriteIfChanged(p, []byte("b"), 0o600); err != nil || !changed {
		t.Fatalf("new content: changed=%v err=%v", changed, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "b" {
		t.Fatalf("content %q", b)
	}
	ents, _ := os.ReadDir(filepath.Dir(p))
	if len(ents) != 1 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

func TestReplaceRewritesUnchanged(t *testing.T) {
	p := filepath.Join(t.TempDir(), "verdict")
	if err := Replace(p, []byte("ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(p, old, old); err != nil {
		t.Fatal(err)
	}
	if err := Replace(p, []byte("ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || !fi.ModTime().After(old.Add(time.Minute)) {
		t.Fatalf("an unchanged Replace must still renew the file's time: %v %v", fi.ModTime(), err)
	}
}

func TestReplaceMissingDirectory(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope", "f")
	if err := Replace(p, []byte("x"), 0o600); err == nil {
		t.Fatal("want an error for a missing directory")
	}
}
