package daemon

import (
	"log"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/canonical/lxd/lxd/response"
	lxdapi "github.com/canonical/lxd/shared/api"
)

// joinPath is microcluster's join endpoint (POST, reachable before trust):
// a joiner presents its name, address and the token's secret there.
const joinPath = "/cluster/1.0/cluster"

// heartbeatPath is microcluster's heartbeat endpoint. This pinned version
// serves it before trust and, on a POST that does not begin a round,
// replaces the node's trust store with the member list in the body: anyone
// reaching port 7443 could make their own certificate a member's and drop
// the real members (measured: a forged heartbeat answered 200, then the
// forger's certificate was let into a members-only endpoint and node1 lost
// its dqlite leader). Only the leader sends heartbeats over TCP, with its
// member certificate (a round begins over the control socket).
const heartbeatPath = "/cluster/internal/heartbeat"

// joinGate is what cloudd puts in front of every request microcluster's
// TCP server handles (the control socket passes untouched):
//
//   - A request whose client presents more than one certificate is refused
//     (403). microcluster trusts a request when any certificate it
//     presents is in the trust store, but TLS proves only the first one
//     (the client signs with its key), so anyone who had read a member's
//     certificate (every TLS handshake with a member shows it) could send
//     it second and pass for that member. The cluster's own clients send
//     one.
//   - A heartbeat must present a certificate of the trust store (trusted)
//     or, for a member the local trust store does not list yet (one that
//     joined while this node was down), of a member in the cluster database
//     (member: a database read, made only for a source the guard admits).
//     Any other is answered 403.
//   - A POST to the join endpoint from a client that is not a member by its
//     certificate goes through the same per-source rate limit and backoff
//     as cloudd's own untrusted endpoints (the guard is shared: a source
//     guessing secrets at one endpoint waits at all of them). microcluster
//     checks the secret itself and has no limit of its own. A member that
//     is not the leader forwards a join with its own certificate, so it is
//     not counted. A member's address is no exemption: an address is not a
//     certificate, and everything HAProxy forwards from the floating
//     address comes from one.
//
// A refused attempt gets 429 with Retry-After, a refusal 403, both with an
// error body in LXD's format (what microcluster's client reads). A join
// answered 2xx counts as a known secret, anything else as a failure, which
// the guard's backoff counts (the first is free); so does each refusal.
type joinGate struct {
	next    http.Handler
	guard   *attemptGuard
	trusted func(r *http.Request) bool
	member  func(r *http.Request) bool
	now     func() time.Time
	// log, when set, gets a line for each request refused (rate-limited by
	// its writer).
	log *log.Logger
}

// gated marks a handler limitServers has already wrapped.
type gated interface{ joinGated() }

func (g *joinGate) joinGated() {}

// newJoinGate gates next. trusted reports whether a request presents a
// certificate of the trust store, member whether it presents one of a
// member in the cluster database (either may be nil: none does).
func newJoinGate(next http.Handler, guard *attemptGuard, trusted, member func(r *http.Request) bool, now func() time.Time) *joinGate {
	return &joinGate{next: next, guard: guard, trusted: trusted, member: member, now: now}
}

func (g *joinGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if fromSocket(r) {
		// The control socket: root on this machine.
		g.next.ServeHTTP(w, r)
		return
	}
	src := sourceKey(r.RemoteAddr)
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 1 {
		g.guard.result(src, false, g.now())
		g.refused(w, src, http.StatusForbidden, "the client presented %d certificates: present one, your own", len(r.TLS.PeerCertificates))
		return
	}
	switch path.Clean(r.URL.Path) {
	case heartbeatPath:
		if g.trusted != nil && g.trusted(r) {
			g.next.ServeHTTP(w, r)
			return
		}
		if g.wait(w, src, "heartbeats") {
			return
		}
		if g.member != nil && g.member(r) {
			g.next.ServeHTTP(w, r)
			return
		}
		g.guard.result(src, false, g.now())
		g.refused(w, src, http.StatusForbidden, "a heartbeat is accepted only from a cluster member (a certificate of the trust store)")
		return
	case joinPath:
		if !strings.EqualFold(r.Method, http.MethodPost) || (g.trusted != nil && g.trusted(r)) {
			g.next.ServeHTTP(w, r)
			return
		}
		if g.wait(w, src, "join attempts") {
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		g.next.ServeHTTP(rec, r)
		code := rec.code
		if code == 0 {
			code = http.StatusOK
		}
		g.guard.result(src, code >= 200 && code < 300, g.now())
	default:
		g.next.ServeHTTP(w, r)
	}
}

// wait answers 429 when the guard makes src wait, and says whether it did.
func (g *joinGate) wait(w http.ResponseWriter, src, what string) bool {
	wait := g.guard.admit(src, g.now())
	if wait <= 0 {
		return false
	}
	secs := int((wait + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	_ = response.SmartError(tooMany(what, src, wait)).Render(w)
	return true
}

// refused answers code with the sentence and logs it.
func (g *joinGate) refused(w http.ResponseWriter, src string, code int, format string, args ...any) {
	err := lxdapi.StatusErrorf(code, format, args...)
	if g.log != nil {
		g.log.Printf("refused a request from %s: %v", src, err)
	}
	_ = response.SmartError(err).Render(w)
}

// fromSocket reports whether r came over the control socket.
func fromSocket(r *http.Request) bool {
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return la.Network() == "unix"
	}
	return r.RemoteAddr == "@"
}

// sourceKey is the address r came from, without port or IPv6 zone (the
// guard's key: one per machine however it writes its address).
func sourceKey(remote string) string {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().WithZone("").Unmap().String()
	}
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}

// statusRecorder notes the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Flush passes through (microcluster's responses may flush).
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
