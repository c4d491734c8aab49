package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canonical/lxd/shared"

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

// sequenceServer answers the token check of a token for name with each of
// results in turn, the last one for good (a cluster on loopback, pinned by
// its certificate's fingerprint, as a token pins it).
func sequenceServer(t *testing.T, name string, results ...api.TokenCheckResult) api.JoinToken {
	t.Helper()
	var mu sync.Mutex
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/1.0/token-check" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		res := results[0]
		if len(results) > 1 {
			results = results[1:]
		}
		mu.Unlock()
		if res.Reason == "down" {
			// The cluster out of reach for a moment.
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		md, _ := json.Marshal(res)
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "sync", "metadata": json.RawMessage(md)})
	}))
	t.Cleanup(srv.Close)
	return api.JoinToken{
		Name:        name,
		Secret:      "s3cret",
		Fingerprint: shared.CertFingerprint(srv.Certificate()),
		Addresses:   []string{strings.TrimPrefix(srv.URL, "https://")},
		ExpiresAt:   time.Now().Add(time.Hour),
	}
}

// TestAwaitTokenBack: the wait for a token spent by this node's own
// unfinished join ends with the token back, or with the sentence of what
// it became meanwhile (never the stale "gives it back at"), waiting on
// while the cluster is out of reach for a moment; a token spent
// by another node, or due back too late, is not waited for.
func TestAwaitTokenBack(t *testing.T) {
	ctx := context.Background()
	spent := api.TokenCheckResult{Reason: "used", UsedBy: "node2", RetryAt: time.Now().Add(30 * time.Second)}
	for _, tc := range []struct {
		name    string
		results []api.TokenCheckResult
		back    bool
		waited  bool
		errHas  string
	}{
		{"given back", []api.TokenCheckResult{spent, {Valid: true, Reason: "ok"}}, true, true, ""},
		{"revoked meanwhile", []api.TokenCheckResult{spent, {Reason: "revoked"}}, false, true, "revoked"},
		{"expired meanwhile", []api.TokenCheckResult{spent, {Reason: "expired"}}, false, true, "expired"},
		{"out of reach for a moment, then back", []api.TokenCheckResult{spent, {Reason: "down"}, {Valid: true, Reason: "ok"}}, true, true, ""},
		{"used by another node", []api.TokenCheckResult{{Reason: "used", UsedBy: "node9", RetryAt: spent.RetryAt}}, false, false, ""},
		{"back too late to wait", []api.TokenCheckResult{{Reason: "used", UsedBy: "node2", RetryAt: time.Now().Add(2 * maxTokenWait)}}, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			jt := sequenceServer(t, "node2", tc.results...)
			waited := false
			back, err := AwaitTokenBack(ctx, Joiner{Token: jt}, "node2", time.Now, func(time.Time) { waited = true })
			if back != tc.back || waited != tc.waited {
				t.Fatalf("back %v, waited %v; want %v, %v (err %v)", back, waited, tc.back, tc.waited, err)
			}
			if tc.errHas == "" && err != nil {
				t.Fatalf("error %v; want none", err)
			}
			if tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas) || strings.Contains(err.Error(), "gives the token back")) {
				t.Fatalf("error %v; want one about %q", err, tc.errHas)
			}
		})
	}
}

// TestAwaitJoinOutcome: a join that lost its token's redemption to another
// join of its name waits for that join's outcome: joined, the answer is the
// sentence of a used token; given up, the token is back; still under way
// after the limit, the answer is the token's state then.
func TestAwaitJoinOutcome(t *testing.T) {
	ctx := context.Background()
	underWay := api.TokenCheckResult{Reason: "used", UsedBy: "node2", RetryAt: time.Now().Add(2 * time.Minute)}
	joined := api.TokenCheckResult{Reason: "used", UsedBy: "node2"}
	for _, tc := range []struct {
		name    string
		results []api.TokenCheckResult
		limit   time.Duration
		back    bool
		waited  bool
		errHas  string
	}{
		{"the other join finished", []api.TokenCheckResult{underWay, underWay, joined}, time.Minute, false, true, "tokens are single-use"},
		{"the other join was given up", []api.TokenCheckResult{underWay, {Valid: true, Reason: "ok"}}, time.Minute, true, true, ""},
		{"out of reach for a moment", []api.TokenCheckResult{underWay, {Reason: "down"}, joined}, time.Minute, false, true, "tokens are single-use"},
		{"still under way after the limit", []api.TokenCheckResult{underWay}, 1500 * time.Millisecond, false, true, "gives the token back"},
		{"used for good already", []api.TokenCheckResult{joined}, time.Minute, false, false, "tokens are single-use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			jt := sequenceServer(t, "node2", tc.results...)
			waited := false
			back, err := AwaitJoinOutcome(ctx, Joiner{Token: jt}, "node2", time.Now, tc.limit, func() { waited = true })
			if back != tc.back || waited != tc.waited {
				t.Fatalf("back %v, waited %v; want %v, %v (err %v)", back, waited, tc.back, tc.waited, err)
			}
			if tc.errHas == "" && err != nil {
				t.Fatalf("error %v; want none", err)
			}
			if tc.errHas != "" && (err == nil || !strings.Contains(err.Error(), tc.errHas)) {
				t.Fatalf("error %v; want one with %q", err, tc.errHas)
			}
		})
	}
}

// TestNewJoiner: a node with no cloudd certificate presents none; one with
// a certificate presents it; certificate files that cannot be used stop
// the join with the files named, rather than joining without them.
func TestNewJoiner(t *testing.T) {
	jt := api.JoinToken{Name: "node2"}
	dir := t.TempDir()
	j, err := NewJoiner(jt, dir)
	if err != nil || j.Cert != nil {
		t.Fatalf("no certificate: %+v, %v", j.Cert, err)
	}
	crt, key, err := shared.GenerateMemCert(false, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.crt"), crt, 0o644); err != nil {
		t.Fatal(err)
	}
	// The certificate without its key.
	if _, err := NewJoiner(jt, dir); err == nil || !strings.Contains(err.Error(), "server.key") {
		t.Fatalf("a certificate without its key: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.key"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewJoiner(jt, dir); err == nil || !strings.Contains(err.Error(), "--state-dir") {
		t.Fatalf("a damaged key: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "server.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err = NewJoiner(jt, dir)
	if err != nil || j.Cert == nil || j.Token.Name != "node2" {
		t.Fatalf("a certificate and its key: %+v, %v", j, err)
	}
}
