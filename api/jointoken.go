package api

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"time"
)

// JoinTokenPrefix starts every cloudctl join token.
const JoinTokenPrefix = "cloudctl1-"

// JoinToken is what `cloudctl cluster add` prints and `cloudctl cluster join`
// takes. It carries what microcluster's own token holds (secret, cluster
// certificate fingerprint, join addresses) plus the node name it is bound to
// and its expiry.
// A checksum catches a token cut short by a copy and paste.
type JoinToken struct {
	Name        string    `json:"n"`
	Cluster     string    `json:"c"`
	Secret      string    `json:"s"`
	Fingerprint string    `json:"f"`
	Addresses   []string  `json:"a"`
	ExpiresAt   time.Time `json:"e"`
}

// Microcluster rebuilds the token string microcluster's JoinCluster takes
// from the same secret, fingerprint and addresses.
func (t JoinToken) Microcluster() (string, error) {
	return EncodeMicroclusterToken(MicroclusterToken{Secret: t.Secret, Fingerprint: t.Fingerprint, JoinAddresses: t.Addresses})
}

// ErrTokenMalformed means the string is not a whole cloudctl join token.
var ErrTokenMalformed = errors.New("malformed join token")

// Encode renders the token as a single copy-pasteable word.
func (t JoinToken) Encode() (string, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encode join token: %w", err)
	}
	body := base64.RawURLEncoding.EncodeToString(b)
	return fmt.Sprintf("%s%s.%08x", JoinTokenPrefix, body, crc32.ChecksumIEEE([]byte(body))), nil
}

// DecodeJoinToken parses a token printed by `cloudctl cluster add`. Every
// failure wraps ErrTokenMalformed and says what is wrong with it.
func DecodeJoinToken(s string) (JoinToken, error) {
	var t JoinToken
	s = strings.TrimSpace(s)
	if s == "" {
		return t, fmt.Errorf("%w: it is empty", ErrTokenMalformed)
	}
	if !strings.HasPrefix(s, JoinTokenPrefix) {
		return t, fmt.Errorf("%w: it does not start with %q", ErrTokenMalformed, JoinTokenPrefix)
	}
	rest := strings.TrimPrefix(s, JoinTokenPrefix)
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 || len(rest)-dot-1 != 8 {
		return t, fmt.Errorf("%w: it is incomplete (its end is missing)", ErrTokenMalformed)
	}
	body, sum := rest[:dot], rest[dot+1:]
	if fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(body))) != sum {
		return t, fmt.Errorf("%w: its checksum does not match (it was cut or mistyped)", ErrTokenMalformed)
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return t, fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return t, fmt.Errorf("%w: %v", ErrTokenMalformed, err)
	}
	if t.Name == "" || t.Secret == "" || t.Fingerprint == "" || len(t.Addresses) == 0 {
		return t, fmt.Errorf("%w: a field is missing", ErrTokenMalformed)
	}
	return t, nil
}

// SecretSHA256 returns the hex SHA-256 of a token secret.
func SecretSHA256(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// MicroclusterToken is the part of microcluster's token cloudctl reads.
type MicroclusterToken struct {
	Secret        string   `json:"secret"`
	Fingerprint   string   `json:"fingerprint"`
	JoinAddresses []string `json:"join_addresses"`
}

// DecodeMicroclusterToken reads microcluster's base64 JSON token.
func DecodeMicroclusterToken(s string) (MicroclusterToken, error) {
	var t MicroclusterToken
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return t, fmt.Errorf("decode microcluster token: %w", err)
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return t, fmt.Errorf("decode microcluster token: %w", err)
	}
	return t, nil
}

// EncodeMicroclusterToken renders microcluster's token format.
func EncodeMicroclusterToken(t MicroclusterToken) (string, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encode microcluster token: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}
