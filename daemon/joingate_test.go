package daemon

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestJoinGate: wrong-secret joins from one source are refused with 429 once
// its burst and backoff are spent, while other paths, members and other
// sources pass; a successful join clears the source's backoff.
func TestJoinGate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	var reached int
	status := http.StatusBadRequest
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		w.WriteHeader(status)
	})
	var guard attemptGuard
	g := newJoinGate(next, &guard, func(ip string) bool { return ip == "10.0.0.1" }, clock)
	do := func(method, target, from string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader("{}"))
		r.RemoteAddr = from
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		return w
	}

	// Two wrong secrets: the first is free, the second starts the backoff.
	for i := 0; i < 2; i++ {
		if w := do("POST", joinPath, "192.0.2.7:4000"); w.Code != http.StatusBadRequest {
			t.Fatalf("attempt %d: got %d, want the handler's 400", i, w.Code)
		}
	}
	w := do("POST", joinPath, "192.0.2.7:4001")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("third wrong attempt: got %d, want 429", w.Code)
	}
	if w.Header().Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	var body struct {
		Type  string `json:"type"`
		Error string `json:"error"`
		Code  int    `json:"error_code"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Code != 429 || !strings.Contains(body.Error, "too many join attempts from 192.0.2.7") {
		t.Fatalf("429 body: %s (%v)", w.Body.String(), err)
	}
	if reached != 2 {
		t.Fatalf("the handler was reached %d times, want 2", reached)
	}
	// A cleaned path variant is gated too.
	if w := do("POST", "/cluster/1.0//cluster/", "192.0.2.7:4002"); w.Code != http.StatusTooManyRequests {
		t.Fatalf("unclean path: got %d, want 429", w.Code)
	}
	// Other methods and paths, members and other sources are not held back.
	for _, c := range []struct{ method, target, from string }{
		{"GET", joinPath, "192.0.2.7:1"},
		{"POST", "/cluster/1.0/heartbeat", "192.0.2.7:1"},
		{"POST", joinPath, "10.0.0.1:1"},
		{"POST", joinPath, "192.0.2.8:1"},
		{"POST", joinPath, "@"},
	} {
		if w := do(c.method, c.target, c.from); w.Code == http.StatusTooManyRequests {
			t.Fatalf("%s %s from %s: refused", c.method, c.target, c.from)
		}
	}
	// After the wait, a successful join clears the backoff.
	now = now.Add(time.Minute)
	status = http.StatusOK
	if w := do("POST", joinPath, "192.0.2.7:4003"); w.Code != http.StatusOK {
		t.Fatalf("after the wait: got %d", w.Code)
	}
	status = http.StatusBadRequest
	if w := do("POST", joinPath, "192.0.2.7:4004"); w.Code != http.StatusBadRequest {
		t.Fatalf("first failure after a success: got %d, want the handler's 400", w.Code)
	}
}

// TestLimitServersGatesOnce: limitServers wraps each server's handler in the
// gate once, however often it runs.
func TestLimitServersGatesOnce(t *testing.T) {
	var guard attemptGuard
	lim := defaultAPILimits(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now, nil, &guard)
	inner := http.NewServeMux()
	s := &http.Server{Handler: inner}
	e := &fakeEndpoints{listeners: map[int]fakeEndpoint{1: &fakeNetwork{server: s}}}
	for i := 0; i < 3; i++ {
		if _, _, err := limitServers(e, lim); err != nil {
			t.Fatal(err)
		}
	}
	g, ok := s.Handler.(*joinGate)
	if !ok {
		t.Fatalf("handler is a %T, want the join gate", s.Handler)
	}
	if g.next != http.Handler(inner) {
		t.Fatalf("the gate wraps a %T, want microcluster's handler itself (wrapped twice?)", g.next)
	}
}
