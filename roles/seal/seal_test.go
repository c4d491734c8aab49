package seal

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var (
	control = Kind{Role: "control", Label: "cloudctl control seal key\x00", ClearRemedy: "delete the row"}
	storage = Kind{Role: "storage", Label: "cloudctl storage seal key\x00", ClearRemedy: "put it back"}
)

func TestSealOpen(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewKey()
	s, err := k.Seal("admin_key", "hunter2")
	if err != nil {
		t.Fatal(err)
	}
	if !IsSealed(s) || strings.Contains(s, "hunter2") {
		t.Fatalf("sealed value %q", s)
	}
	if got, err := storage.Open(k, "admin_key", s, false); err != nil || got != "hunter2" {
		t.Fatalf("open: %q, %v", got, err)
	}
	if _, err := storage.Open(k, "mon_key", s, false); err == nil {
		t.Fatal("a value sealed for one row opened as another")
	}
	if _, err := storage.Open(other, "admin_key", s, false); err == nil || !strings.Contains(err.Error(), "does not open with this node's key (key "+storage.ID(other)+")") {
		t.Fatalf("a value opened with another key: %v", err)
	}
	raw := []byte(s)
	raw[len(raw)-3] ^= 1
	if _, err := storage.Open(k, "admin_key", string(raw), false); err == nil {
		t.Fatal("a tampered value opened")
	}
	if _, err := storage.Open(k, "admin_key", Prefix+"AAAA", false); err == nil {
		t.Fatal("a value shorter than a nonce opened")
	}
	if _, err := storage.Open(nil, "admin_key", s, true); err == nil || !strings.Contains(err.Error(), "holds no key") {
		t.Fatalf("a sealed value without a key: %v", err)
	}
	if got, err := storage.Open(nil, "admin_key", "clear", true); err != nil || got != "clear" {
		t.Fatalf("a value stored in the clear by an older version: %q, %v", got, err)
	}
	if _, err := storage.Open(k, "admin_key", "clear", false); err == nil || !strings.Contains(err.Error(), "the storage secret admin_key is stored in the clear although the secrets are sealed: refusing it (put it back)") {
		t.Fatalf("a value in the clear although a key is recorded: %v", err)
	}
	if got, err := storage.Open(k, "admin_key", "", false); err != nil || got != "" {
		t.Fatalf("an empty value: %q, %v", got, err)
	}
	s2, _ := k.Seal("admin_key", "hunter2")
	if s2 == s {
		t.Fatal("two seals of one value are equal (nonce reused)")
	}
}

// A value the control role sealed before this package existed still opens,
// and its key keeps its id: the format and the id derivation are unchanged.
func TestControlFormatUnchanged(t *testing.T) {
	var k Key
	for i := range k {
		k[i] = byte(i)
	}
	// Made with roles/control/seal.go as of a82eba1 (sealKey.seal, .id).
	const sealed = "sealed1:GKGZ5fhVhJKSZQmSP87xk1U+YQ3wBZBth/9FSxYeZ7rh5jE="
	if id := control.ID(&k); id != "921f413b12649acb1c83860a5fb5b6f9" {
		t.Fatalf("control key id %s", id)
	}
	if got, err := control.Open(&k, "credential:identity", sealed, false); err != nil || got != "hunter2" {
		t.Fatalf("open a value sealed by the earlier control code: %q, %v", got, err)
	}
	if control.ID(&k) == storage.ID(&k) {
		t.Fatal("one key has the same id for two roles")
	}
}

func TestKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "storage")
	if k, err := storage.Load(dir); err != nil || k != nil {
		t.Fatalf("no key: %v %v", k, err)
	}
	k, _ := NewKey()
	if err := storage.Write(dir, k); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, File))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("key directory: %v %v", di, err)
	}
	got, err := storage.Load(dir)
	if err != nil || got == nil || *got != *k {
		t.Fatalf("load: %v %v", got, err)
	}
	// Replaced whole; no temporary file left behind.
	k2, _ := NewKey()
	if err := storage.Write(dir, k2); err != nil {
		t.Fatal(err)
	}
	if got, _ := storage.Load(dir); got == nil || *got != *k2 {
		t.Fatal("the key was not replaced")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".seal.key-*")); len(left) > 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	if err := os.WriteFile(filepath.Join(dir, File), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := storage.Load(dir); err == nil || !strings.Contains(err.Error(), "remove it and it is fetched again from a storage node") {
		t.Fatalf("a short key file: %v", err)
	}
	if err := storage.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := storage.Remove(dir); err != nil {
		t.Fatalf("removing no key: %v", err)
	}
	if _, ok := KeyFrom(make([]byte, 31)); ok {
		t.Fatal("a 31-byte key")
	}
}
