package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
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
	g := newJoinGate(next, &guard, func(r *http.Request) bool { return r.Header.Get("X-Test-Member") == "yes" }, nil, clock)
	do := func(method, target, from string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader("{}"))
		r.RemoteAddr = from
		if strings.HasPrefix(from, "10.0.0.1:") {
			r.Header.Set("X-Test-Member", "yes") // a member, by its certificate
		}
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
	lim := defaultAPILimits(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now, nil, &guard, nil, nil)
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

// TestHeartbeatGate: a heartbeat reaches microcluster only with a
// certificate of the trust store (or over the control socket); others are
// refused with 403 before microcluster reads them, and a source that keeps
// trying is made to wait.
func TestHeartbeatGate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var reached int
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ })
	var guard attemptGuard
	trusted := func(r *http.Request) bool { return r.Header.Get("X-Test-Member") == "yes" }
	// A member the trust store does not list yet, found in the database.
	var dbReads int
	inDB := func(r *http.Request) bool { dbReads++; return r.Header.Get("X-Test-Member") == "db" }
	g := newJoinGate(next, &guard, trusted, inDB, func() time.Time { return now })
	do := func(from string, member bool) int {
		r := httptest.NewRequest("POST", "/cluster/internal/heartbeat", strings.NewReader(`{"begin_round":false}`))
		r.RemoteAddr = from
		if member {
			r.Header.Set("X-Test-Member", "yes")
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		return w.Code
	}
	if code := do("192.0.2.7:1", false); code != http.StatusForbidden || reached != 0 {
		t.Fatalf("a heartbeat without a member's certificate: got %d, handler reached %d times", code, reached)
	}
	_ = do("192.0.2.7:1", false)
	if code := do("192.0.2.7:1", false); code != http.StatusTooManyRequests {
		t.Fatalf("a third forged heartbeat: got %d, want 429", code)
	}
	if code := do("192.0.2.8:1", true); code != http.StatusOK || reached != 1 {
		t.Fatalf("a member's heartbeat: got %d, reached %d", code, reached)
	}
	if code := do("@", false); code != http.StatusOK || reached != 2 {
		t.Fatalf("the control socket: got %d, reached %d", code, reached)
	}
	// The database is read for a source the guard admits, not for one it
	// makes wait.
	reads := dbReads
	r := httptest.NewRequest("POST", "/cluster/internal/heartbeat", strings.NewReader("{}"))
	r.RemoteAddr = "192.0.2.9:1"
	r.Header.Set("X-Test-Member", "db")
	w := httptest.NewRecorder()
	g.ServeHTTP(w, r)
	if w.Code != http.StatusOK || reached != 3 || dbReads != reads+1 {
		t.Fatalf("a member known to the database: got %d, reached %d, reads %d", w.Code, reached, dbReads-reads)
	}
	if code := do("192.0.2.7:1", false); code != http.StatusTooManyRequests || dbReads != reads+1 {
		t.Fatalf("a waiting source: got %d, database read %d times", code, dbReads-reads-1)
	}
}

// TestGateOneCertificate: a client presenting more than one certificate is
// refused on every path (microcluster would trust it for any of them, and
// TLS proves only the first), one certificate passes to the handler.
func TestGateOneCertificate(t *testing.T) {
	var reached int
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { reached++ })
	var guard attemptGuard
	g := newJoinGate(next, &guard, nil, nil, time.Now)
	for _, n := range []int{1, 2} {
		r := httptest.NewRequest("GET", "/cluster/1.0/cluster", nil)
		r.RemoteAddr = "192.0.2.7:1"
		r.TLS = &tls.ConnectionState{PeerCertificates: make([]*x509.Certificate, n)}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		want := map[int]int{1: http.StatusOK, 2: http.StatusForbidden}[n]
		if w.Code != want || !strings.Contains(w.Body.String(), map[int]string{1: "", 2: "present one"}[n]) {
			t.Fatalf("%d certificates: got %d %s", n, w.Code, w.Body.String())
		}
	}
	if reached != 1 {
		t.Fatalf("handler reached %d times, want 1", reached)
	}
}

// TestGateSources: the control socket is told by the listener's address,
// not by a source that does not parse; an IPv6 source with a zone is a TCP
// source keyed without its zone.
func TestGateSources(t *testing.T) {
	sock := httptest.NewRequest("POST", "/cluster/internal/heartbeat", nil)
	sock = sock.WithContext(context.WithValue(sock.Context(), http.LocalAddrContextKey, &net.UnixAddr{Name: "/run/x.socket", Net: "unix"}))
	sock.RemoteAddr = ""
	if !fromSocket(sock) {
		t.Fatal("a request on the unix listener is not the control socket")
	}
	tcp := httptest.NewRequest("POST", "/cluster/internal/heartbeat", nil)
	tcp = tcp.WithContext(context.WithValue(tcp.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.ParseIP("fd00::2"), Port: 7443}))
	tcp.RemoteAddr = "[fe80::1%eth0]:4000"
	if fromSocket(tcp) {
		t.Fatal("a link-local TCP source passed for the control socket")
	}
	for in, want := range map[string]string{"[fe80::1%eth0]:4000": "fe80::1", "192.0.2.7:1": "192.0.2.7", "[::ffff:192.0.2.7]:1": "192.0.2.7", "@": "@"} {
		if got := sourceKey(in); got != want {
			t.Errorf("sourceKey(%q) = %q, want %q", in, got, want)
		}
	}
}
