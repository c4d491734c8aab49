package storage

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cloudctl/cloudctl/roles/cephclient"
)

// NewKey returns a new cephx secret in Ceph's text form: the base64 of an
// AES key record (type 1, creation time, length 16, 16 random bytes), as
// `ceph-authtool --gen-print-key` prints it.
func NewKey(now time.Time) (string, error) {
	b := make([]byte, 2+4+4+2+16)
	binary.LittleEndian.PutUint16(b[0:], 1)
	binary.LittleEndian.PutUint32(b[2:], uint32(now.Unix()))
	binary.LittleEndian.PutUint32(b[6:], uint32(now.Nanosecond()))
	binary.LittleEndian.PutUint16(b[10:], 16)
	if _, err := rand.Read(b[12:]); err != nil {
		return "", fmt.Errorf("generate a cephx key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// validKey reports whether s decodes as a cephx AES key record.
func validKey(s string) bool { return cephclient.ValidKey(s) }

// NewUUID returns a random (version 4) UUID.
func NewUUID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a uuid: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}
