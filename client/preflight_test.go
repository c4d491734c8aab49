package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/preflight"
)

// tokenServer answers the token check with reason (a cluster on loopback,
// pinned by its certificate's fingerprint, as a token pins it).
func tokenServer(t *testing.T, reason, usedBy string) api.JoinToken {
	t.Helper()
	return sequenceServer(t, "node3", api.TokenCheckResult{Valid: reason == "ok", Reason: reason, UsedBy: usedBy})
}

// TestTokenFirst: failed preflight checks are explained by the token when
// it stopped being usable while they ran (the two-machine race of one
// token); otherwise the findings stand as they are.
func TestTokenFirst(t *testing.T) {
	ctx := context.Background()
	now := time.Now
	failed := preflight.Findings{{Check: "name", From: "node1", To: "node3", Severity: preflight.Fail, Message: "node3 is already a member"}}
	passed := preflight.Findings{{Check: "name", From: "node1", To: "node3", Severity: preflight.OK, Message: "free"}}

	t.Run("used meanwhile: the token's sentence", func(t *testing.T) {
		jt := tokenServer(t, "used", "node2")
		fs, err := tokenFirst(ctx, Joiner{Token: jt}, "node3", now, failed)
		if !errors.Is(err, ErrTokenRejected) || !strings.Contains(err.Error(), "already used by node2") || fs != nil {
			t.Fatalf("got %v, %v", fs, err)
		}
	})
	t.Run("still valid: the findings", func(t *testing.T) {
		jt := tokenServer(t, "ok", "")
		fs, err := tokenFirst(ctx, Joiner{Token: jt}, "node3", now, failed)
		if err != nil || len(fs) != 1 || fs[0].Message != "node3 is already a member" {
			t.Fatalf("got %v, %v", fs, err)
		}
	})
	t.Run("no failure: the token is not asked", func(t *testing.T) {
		jt := tokenServer(t, "used", "node2")
		fs, err := tokenFirst(ctx, Joiner{Token: jt}, "node3", now, passed)
		if err != nil || len(fs) != 1 {
			t.Fatalf("got %v, %v", fs, err)
		}
	})
	t.Run("expired meanwhile: the token's sentence, without asking", func(t *testing.T) {
		jt := api.JoinToken{Name: "node3", ExpiresAt: time.Now().Add(-time.Minute)}
		_, err := tokenFirst(ctx, Joiner{Token: jt}, "node3", now, failed)
		if !errors.Is(err, ErrTokenRejected) || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("cluster unreachable: the findings", func(t *testing.T) {
		jt := tokenServer(t, "used", "node2")
		jt.Addresses = []string{"127.0.0.1:1"}
		fs, err := tokenFirst(ctx, Joiner{Token: jt}, "node3", now, failed)
		if err != nil || len(fs) != 1 {
			t.Fatalf("got %v, %v", fs, err)
		}
	})
}
