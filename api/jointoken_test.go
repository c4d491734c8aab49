package api

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func sampleToken() JoinToken {
	return JoinToken{Name: "node2", Cluster: "cloud", Secret: "s3cret", Fingerprint: "ab12",
		Addresses: []string{"10.0.0.1:7443"}, ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func TestJoinTokenRoundTrip(t *testing.T) {
	s, err := sampleToken().Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s, JoinTokenPrefix) || strings.ContainsAny(s, " \n+/=") {
		t.Fatalf("token is not one copy-pasteable word: %q", s)
	}
	got, err := DecodeJoinToken("  " + s + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "node2" || got.Secret != "s3cret" || !got.ExpiresAt.Equal(sampleToken().ExpiresAt) || got.Addresses[0] != "10.0.0.1:7443" {
		t.Fatalf("round trip changed the token: %+v", got)
	}
}

func TestJoinTokenRejectsDamage(t *testing.T) {
	s, err := sampleToken().Encode()
	if err != nil {
		t.Fatal(err)
	}
	flip := []byte(s)
	flip[len(JoinTokenPrefix)+5] ^= 1
	cases := map[string]string{
		"empty":            "",
		"foreign":          "eyJzZWNyZXQiOiJ4In0=",
		"cut at end":       s[:len(s)-1],
		"cut before sum":   s[:len(s)-9],
		"cut in half":      s[:len(s)/2],
		"one char changed": string(flip),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := DecodeJoinToken(in)
			if !errors.Is(err, ErrTokenMalformed) {
				t.Fatalf("want ErrTokenMalformed, got %v", err)
			}
		})
	}
	missing := sampleToken()
	missing.Secret = ""
	ms, _ := missing.Encode()
	if _, err := DecodeJoinToken(ms); !errors.Is(err, ErrTokenMalformed) || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("token without secret: %v", err)
	}
}

func TestMicroclusterTokenRoundTrip(t *testing.T) {
	in := MicroclusterToken{Secret: "x", Fingerprint: "f", JoinAddresses: []string{"10.0.0.1:7443"}}
	s, err := EncodeMicroclusterToken(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeMicroclusterToken(s)
	if err != nil || out.Secret != "x" || out.JoinAddresses[0] != "10.0.0.1:7443" {
		t.Fatalf("got %+v, %v", out, err)
	}
	if _, err := DecodeMicroclusterToken("!!"); err == nil {
		t.Fatal("garbage decoded")
	}
}

func TestSecretSHA256(t *testing.T) {
	if SecretSHA256("a") == SecretSHA256("b") || len(SecretSHA256("a")) != 64 {
		t.Fatal("bad hash")
	}
}
