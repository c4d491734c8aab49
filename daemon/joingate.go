package daemon

import (
	"net"
	"net/http"
	"path"
	"strconv"
	"time"

	"github.com/canonical/lxd/lxd/response"
	lxdapi "github.com/canonical/lxd/shared/api"
)

// joinPath is microcluster's join endpoint (POST, reachable before trust):
// a joiner presents its name, address and the token's secret there.
const joinPath = "/cluster/1.0/cluster"

// joinGate puts microcluster's join endpoint behind the same per-source
// rate limit and backoff as cloudd's own untrusted endpoints (the guard is
// shared: a source guessing secrets at one endpoint waits at all of them).
// microcluster checks the secret itself and has no limit of its own, so
// without the gate anyone reaching port 7443 could try secrets as fast as
// the leader answers.
//
// Only a POST to joinPath from a TCP source that is not a member is gated:
// a non-leader member forwards a join to the leader from its own address,
// and the control socket has no source. A refused attempt gets 429 with
// Retry-After and an error body in LXD's format (what microcluster's
// client reads). An answer of 2xx counts as a known secret, anything else
// as a failure, which the guard's backoff counts (the first is free).
type joinGate struct {
	next   http.Handler
	guard  *attemptGuard
	member func(ip string) bool
	now    func() time.Time
}

// gated marks a handler limitServers has already wrapped.
type gated interface{ joinGated() }

func (g *joinGate) joinGated() {}

func newJoinGate(next http.Handler, guard *attemptGuard, member func(ip string) bool, now func() time.Time) *joinGate {
	return &joinGate{next: next, guard: guard, member: member, now: now}
}

func (g *joinGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || path.Clean(r.URL.Path) != joinPath {
		g.next.ServeHTTP(w, r)
		return
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || net.ParseIP(host) == nil || (g.member != nil && g.member(host)) {
		g.next.ServeHTTP(w, r)
		return
	}
	if wait := g.guard.admit(host, g.now()); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		_ = response.SmartError(lxdapi.StatusErrorf(http.StatusTooManyRequests, "too many join attempts from %s: wait %s and try again", host, wait.Round(time.Millisecond))).Render(w)
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	g.next.ServeHTTP(rec, r)
	code := rec.code
	if code == 0 {
		code = http.StatusOK
	}
	g.guard.result(host, code >= 200 && code < 300, g.now())
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
