package client

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
)

// TestExplainUsed: a used token is refused with one sentence; when its join
// has not finished, the sentence says when the cluster gives it back.
func TestExplainUsed(t *testing.T) {
	jt := api.JoinToken{Name: "node2"}
	done := explainCheck(api.TokenCheckResult{Reason: "used", UsedBy: "node2"}, jt)
	if !errors.Is(done, ErrTokenRejected) || !strings.Contains(done.Error(), "already used by node2; tokens are single-use") || strings.Contains(done.Error(), "gives the token back") {
		t.Fatalf("used token: %v", done)
	}
	at := time.Date(2026, 12, 1, 1, 52, 10, 0, time.FixedZone("CET", 3600))
	open := explainCheck(api.TokenCheckResult{Reason: "used", UsedBy: "node2", RetryAt: at}, jt)
	msg := open.Error()
	if !errors.Is(open, ErrTokenRejected) || strings.Contains(msg, "\n") ||
		!strings.Contains(msg, "already used by node2, and that join has not finished") ||
		!strings.Contains(msg, "gives the token back at 00:52:10 UTC") ||
		!strings.Contains(msg, "`cloudctl cluster add node2`") {
		t.Fatalf("unfinished join: %v", open)
	}
}
