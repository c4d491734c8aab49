package api

import (
	"errors"
	"testing"
)

// FuzzDecodeJoinToken: any text either decodes to a token that encodes back
// to a token decoding the same, or fails with ErrTokenMalformed; never panics.
func FuzzDecodeJoinToken(f *testing.F) {
	if s, err := sampleToken().Encode(); err == nil {
		f.Add(s)
		f.Add(s[:len(s)-3])
		f.Add(" " + s + "\n")
	}
	f.Add("")
	f.Add(JoinTokenPrefix)
	f.Add(JoinTokenPrefix + "e30.00000000")
	f.Fuzz(func(t *testing.T, s string) {
		jt, err := DecodeJoinToken(s)
		if err != nil {
			if !errors.Is(err, ErrTokenMalformed) {
				t.Fatalf("error does not wrap ErrTokenMalformed: %v", err)
			}
			return
		}
		again, err := jt.Encode()
		if err != nil {
			t.Fatalf("a decoded token does not encode: %v", err)
		}
		back, err := DecodeJoinToken(again)
		if err != nil {
			t.Fatalf("a re-encoded token does not decode: %v", err)
		}
		if back.Name != jt.Name || back.Secret != jt.Secret || back.Fingerprint != jt.Fingerprint || !back.ExpiresAt.Equal(jt.ExpiresAt) {
			t.Fatalf("round trip changed the token: %+v → %+v", jt, back)
		}
	})
}
