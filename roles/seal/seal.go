// Package seal keeps a role's secrets sealed in the cluster database, which
// every member holds a copy of: AES-256-GCM under a key that only the
// role's nodes hold, in <state-dir>/<role>/seal.key (0600 root). Each value
// is bound to its row's name, so a sealed value cannot be moved to another
// row. A key is named by an id derived with a per-role label, so the ids of
// two roles' keys never match.
//
// This package holds what is the same for every role: the key, its id,
// seal and open, and the key file. Who may fetch a key, when a node deletes
// its copy, and what happens to secrets whose key is lost are each role's
// own.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

const (
	// File is the key's file in the role's directory.
	File = "seal.key"
	// Prefix marks a sealed value; a value without it was stored in the
	// clear (by an older version, or by hand).
	Prefix = "sealed1:"
)

// Key is a key secrets are sealed with.
type Key [32]byte

// NewKey makes a random key.
func NewKey() (*Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return nil, fmt.Errorf("random: %w", err)
	}
	return &k, nil
}

// KeyFrom copies b into a key; false when b is not a key's length.
func KeyFrom(b []byte) (*Key, bool) {
	var k Key
	if len(b) != len(k) {
		return nil, false
	}
	copy(k[:], b)
	return &k, true
}

// Seal encrypts plain for the row called name (the name is authenticated
// with it, so a sealed value cannot be moved to another row).
func (k *Key) Seal(name, plain string) (string, error) {
	gcm, err := k.aead()
	if err != nil {
		return "", err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	out := gcm.Seal(nonce, nonce, []byte(plain), []byte(name))
	return Prefix + base64.StdEncoding.EncodeToString(out), nil
}

func (k *Key) aead() (cipher.AEAD, error) {
	b, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, fmt.Errorf("seal cipher: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("seal cipher: %w", err)
	}
	return g, nil
}

// IsSealed reports whether v is a sealed value.
func IsSealed(v string) bool { return strings.HasPrefix(v, Prefix) }

// Kind is one role's use of sealing: the label its keys' ids are derived
// with and the words of its messages. It holds no key.
type Kind struct {
	// Role names the role in messages ("control": "the control seal
	// key", "a control node").
	Role string
	// Label is hashed before the key into its id. It must differ between
	// roles and never change: recorded ids depend on it.
	Label string
	// ClearRemedy says what to do about a value found in the clear once
	// the secrets are sealed (a clause, after "refusing it").
	ClearRemedy string
}

// ID names k without revealing it.
func (c Kind) ID(k *Key) string {
	h := sha256.Sum256(append([]byte(c.Label), k[:]...))
	return hex.EncodeToString(h[:16])
}

// Path is the key's file in dir.
func (c Kind) Path(dir string) string { return filepath.Join(dir, File) }

// Open decrypts a value sealed for the row called name. A value that is
// not sealed is returned as it is when clearOK (no key is recorded yet: an
// older version stored it in the clear); otherwise it is refused, since
// once a key is recorded every secret is written sealed, and a clear one is
// somebody's forgery. k may be nil (this node holds no key).
func (c Kind) Open(k *Key, name, value string, clearOK bool) (string, error) {
	if !IsSealed(value) {
		if value != "" && !clearOK {
			return "", fmt.Errorf("the %s secret %s is stored in the clear although the secrets are sealed: refusing it (%s)", c.Role, name, c.ClearRemedy)
		}
		return value, nil
	}
	if k == nil {
		return "", fmt.Errorf("%s is sealed and this node holds no key for it", name)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(value, Prefix))
	if err != nil {
		return "", fmt.Errorf("%s: sealed value is not base64: %w", name, err)
	}
	gcm, err := k.aead()
	if err != nil {
		return "", err
	}
	if len(raw) < gcm.NonceSize() {
		return "", fmt.Errorf("%s: sealed value too short", name)
	}
	plain, err := gcm.Open(nil, raw[:gcm.NonceSize()], raw[gcm.NonceSize():], []byte(name))
	if err != nil {
		return "", fmt.Errorf("%s does not open with this node's key (key %s): %w", name, c.ID(k), err)
	}
	return string(plain), nil
}

// Load reads the key in dir; nil without error when there is none.
func (c Kind) Load(dir string) (*Key, error) {
	p := c.Path(dir)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the %s seal key: %w", c.Role, err)
	}
	k, ok := KeyFrom(b)
	if !ok {
		return nil, fmt.Errorf("the %s seal key %s holds %d bytes, not %d: remove it and it is fetched again from a %s node", c.Role, p, len(b), len(Key{}), c.Role)
	}
	return k, nil
}

// Write stores k in dir, 0600, replacing any other whole, and makes the
// file's name durable before it returns (the key's id is recorded in the
// cluster database next).
func (c Kind) Write(dir string, k *Key) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%s directory: %w", c.Role, err)
	}
	f, err := os.CreateTemp(dir, ".seal.key-*")
	if err != nil {
		return fmt.Errorf("write the %s seal key: %w", c.Role, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write the %s seal key: %w", c.Role, err)
	}
	if _, err := f.Write(k[:]); err != nil {
		f.Close()
		return fmt.Errorf("write the %s seal key: %w", c.Role, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write the %s seal key: %w", c.Role, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write the %s seal key: %w", c.Role, err)
	}
	if err := os.Rename(tmp, c.Path(dir)); err != nil {
		return fmt.Errorf("write the %s seal key: %w", c.Role, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write the %s seal key: %w", c.Role, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write the %s seal key: sync %s: %w", c.Role, dir, err)
	}
	return nil
}

// Remove deletes the key in dir (nothing when there is none).
func (c Kind) Remove(dir string) error {
	if err := os.Remove(c.Path(dir)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete the %s seal key: %w", c.Role, err)
	}
	return nil
}
