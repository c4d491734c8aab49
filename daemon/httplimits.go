package daemon

import (
	"crypto/tls"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/cloudctl/cloudctl/preflight"
)

// Limits of the cluster API's HTTP servers (port 7443 and the control
// socket). microcluster (this pinned version) builds its http.Server with
// no timeouts at all and keeps it, with the listener, in unexported fields
// of its internal endpoints package; it offers no option for them. Without
// a header timeout a client that opens connections and sends its request
// (or its TLS handshake) a byte at a time holds each connection, and a
// goroutine, for ever.
//
// cloudd sets the limits on microcluster's servers themselves, found by
// reflection through state.State.Endpoints (see limitServers). Only limits
// that are safe for every request microcluster serves are set:
//
//   - ReadHeaderTimeout bounds the TLS handshake and the reading of each
//     request's headers (net/http applies the smallest positive timeout to
//     the handshake). It is cleared once the headers are read, so the
//     long-lived connections microcluster hijacks (dqlite's replication
//     over /cluster/internal/database) are not cut.
//   - IdleTimeout closes a kept-alive connection that sends no next request.
//     It is longer than the 90 s after which cloudd's peer client
//     (peers.go) drops its idle connections, and microcluster's own clients
//     keep none, so no request of the cluster's races the server closing an
//     idle connection.
//   - MaxHeaderBytes caps the headers (net/http's default is 1 MiB).
//   - ConnState caps the connections one source address holds open at once
//     (apiConnsPerSource): the header timeout frees a slow connection after
//     10 s, but without a cap one machine could open connections faster
//     than that and hold a goroutine and a TLS state for each. A connection
//     over the cap is closed as it is accepted, before its handshake.
//     Connections microcluster hijacks (dqlite's) stop counting once
//     hijacked; the control socket (no source address) is not capped, nor
//     are the cluster's members: their connections include everything
//     HAProxy forwards from the floating address, many clients behind one
//     source (HAProxy bounds those with its own timeouts).
//   - The same hook gives each HTTP/1 request of those capped connections
//     apiBodyTimeout for its body: a read deadline set when its headers
//     are in (StateActive). net/http clears it itself when the body has
//     been read to its end or there is none (it starts its background read
//     of the connection then) and when a handler hijacks the connection,
//     so it does not cut dqlite's connections, nor a handler that reads its
//     body before slow work (cloudd's do; microcluster's join and heartbeat
//     too). A body that does not arrive in time fails the handler's read; a
//     request refused before its body was read keeps the deadline through
//     net/http's drain of the unread body (up to 256 KiB), which would
//     otherwise wait on a slow client for ever; the connection is then
//     closed. Without it a client sending its body a byte at a time held a
//     goroutine for as long as it liked. An HTTP/2 connection (microcluster
//     offers h2 in its TLS handshake; no client of the cluster's asks for
//     it) gets no deadline: nothing would clear it, and it would end the
//     connection with all its streams.
//   - Handler wraps microcluster's handler in the join gate (joinGate):
//     a client presenting more than one certificate is refused (only the
//     first is proven; microcluster trusts any), the join endpoint,
//     reachable before trust, gets the per-source rate limit and backoff
//     of cloudd's own untrusted endpoints, and the heartbeat endpoint
//     (which this version serves before trust and which rewrites the trust
//     store) is closed to all but the members' certificates.
//   - ErrorLog sends net/http's per-connection errors ("http: TLS handshake
//     error from ...", one per cut connection) to cloudd's log, at most
//     apiErrorBurst lines a second with a count of those dropped, so slow
//     clients cannot grow the log without bound.
//
// ReadTimeout and WriteTimeout are not set: they have no exemption for the
// members (whose connections carry what HAProxy forwards), and
// WriteTimeout, counted from each request's headers, would bound how long
// a handler may take to answer (role convergence, the join preflight).
const (
	apiReadHeaderTimeout = 10 * time.Second
	apiIdleTimeout       = 2 * time.Minute
	apiMaxHeaderBytes    = 64 << 10
	apiErrorBurst        = 10
	// apiBodyTimeout: a request of a source that is not a member must
	// send its body within this of its headers (see connCap). A joiner's
	// preflight pads its request to 64 KiB and gives the exchange
	// preflight.ExchangeTimeout, for machines under load: the body gets
	// longer than that.
	apiBodyTimeout = preflight.ExchangeTimeout + 5*time.Second
	// apiConnsPerSource is far above what members use (cloudd's peer
	// client keeps a few connections to each member, microcluster's
	// clients one per request, HAProxy's checks one at a time).
	apiConnsPerSource = 64
)

// serverLimits are the values limitServers sets.
type serverLimits struct {
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	ErrorLog          *log.Logger
	// ConnState, when set, is installed on servers that have none (the
	// per-source connection cap, connCap.state).
	ConnState func(net.Conn, http.ConnState)
	// Handler, when set, wraps each server's handler once (the join gate,
	// joinGate); a handler already wrapped is left as it is.
	Handler func(http.Handler) http.Handler
}

// defaultAPILimits are the limits of a daemon whose members' addresses
// member reports (nil: none is exempt from the connection cap). With a
// guard, microcluster's handler is wrapped in the join gate (joinGate),
// which asks trusted and memberCert whether a request presents a member's
// certificate (of the trust store, of the cluster database).
func defaultAPILimits(lg *slog.Logger, now func() time.Time, member func(ip string) bool, guard *attemptGuard, trusted, memberCert func(r *http.Request) bool) serverLimits {
	// The refusals have a budget of their own: a burst of handshake errors
	// must not hide them.
	capLog := log.New(&limitedLog{log: lg, burst: apiErrorBurst, now: now}, "", 0)
	lim := serverLimits{
		ReadHeaderTimeout: apiReadHeaderTimeout,
		IdleTimeout:       apiIdleTimeout,
		MaxHeaderBytes:    apiMaxHeaderBytes,
		ErrorLog:          log.New(&limitedLog{log: lg, burst: apiErrorBurst, now: now}, "", 0),
		ConnState:         newConnCap(apiConnsPerSource, apiBodyTimeout, capLog, member).state,
	}
	if guard != nil {
		gateLog := log.New(&limitedLog{log: lg, burst: apiErrorBurst, now: now}, "", 0)
		lim.Handler = func(next http.Handler) http.Handler {
			g := newJoinGate(next, guard, trusted, memberCert, now)
			g.log = gateLog
			return g
		}
	}
	return lim
}

// connCap counts the open connections of each source address of the
// cluster API's servers and closes those over max as they are accepted,
// and gives each request on a counted connection bodyTime for its body
// (above). Connections accepted before it was installed are not counted
// (their close is ignored), so it never counts below zero.
type connCap struct {
	max      int
	bodyTime time.Duration
	log      *log.Logger
	exempt   func(ip string) bool

	mu    sync.Mutex
	per   map[string]int
	conns map[net.Conn]string
}

func newConnCap(max int, bodyTime time.Duration, lg *log.Logger, exempt func(ip string) bool) *connCap {
	return &connCap{max: max, bodyTime: bodyTime, log: lg, exempt: exempt, per: map[string]int{}, conns: map[net.Conn]string{}}
}

// state is an http.Server ConnState hook.
func (c *connCap) state(conn net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		tcp, ok := conn.RemoteAddr().(*net.TCPAddr)
		if !ok {
			return
		}
		src := tcp.IP.String()
		if c.exempt != nil && c.exempt(src) {
			return
		}
		c.mu.Lock()
		if c.per[src] >= c.max {
			c.mu.Unlock()
			c.log.Printf("refused a connection from %s: it already holds %d open connections to the cluster API", src, c.max)
			_ = conn.Close()
			return
		}
		c.per[src]++
		c.conns[conn] = src
		c.mu.Unlock()
	case http.StateActive:
		// A request's headers are in (net/http fires this after reading
		// them): its body, if any, must follow within bodyTime.
		c.mu.Lock()
		_, counted := c.conns[conn]
		c.mu.Unlock()
		if counted && c.bodyTime > 0 && !isHTTP2(conn) {
			_ = conn.SetReadDeadline(time.Now().Add(c.bodyTime))
		}
	case http.StateHijacked, http.StateClosed:
		c.mu.Lock()
		if src, ok := c.conns[conn]; ok {
			delete(c.conns, conn)
			if c.per[src]--; c.per[src] <= 0 {
				delete(c.per, src)
			}
		}
		c.mu.Unlock()
	}
}

// isHTTP2 reports whether conn negotiated HTTP/2 in its TLS handshake
// (complete by the time net/http reports it active).
func isHTTP2(conn net.Conn) bool {
	tc, ok := conn.(*tls.Conn)
	return ok && tc.ConnectionState().NegotiatedProtocol == "h2"
}

// open is how many counted connections src holds.
func (c *connCap) open(src string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.per[src]
}

// limitedLog writes net/http's error lines to cloudd's log, at most burst
// in each second; the number dropped is logged with the next line let
// through.
type limitedLog struct {
	log   *slog.Logger
	burst int
	now   func() time.Time

	mu      sync.Mutex
	window  time.Time
	n       int
	dropped int
}

func (l *limitedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.window) >= time.Second {
		l.window, l.n = now, 0
	}
	if l.n >= l.burst {
		l.dropped++
		return len(p), nil
	}
	l.n++
	if l.dropped > 0 {
		l.log.Warn("cluster API: error lines dropped (too many)", "count", l.dropped)
		l.dropped = 0
	}
	l.log.Warn("cluster API", "error", strings.TrimSpace(string(p)))
	return len(p), nil
}

// limitServers sets lim on every http.Server microcluster's endpoints
// (state.State.Endpoints, a *endpoints.Endpoints) serve, and returns how
// many servers it found and how many it changed. It relies on this layout
// of the pinned microcluster (internal/endpoints):
//
//	type Endpoints struct { mu sync.RWMutex; listeners map[EndpointType]Endpoint; ... }
//	type Network struct { server *http.Server; ... }   // and Socket alike
//
// and fails with an error naming what it did not find if that changes, so
// an upgrade of microcluster cannot drop the limits silently:
// TestLimitServersLayout checks Endpoints' layout (the real type, taken from
// state.State), TestSlowClients that the servers behind port 7443 cut slow
// clients.
//
// net/http reads these fields for each connection and request, so setting
// them on a running server takes effect for the next ones. A field is
// written only when it differs, so calling this again is cheap.
func limitServers(endpoints any, lim serverLimits) (found, changed int, err error) {
	v := reflect.ValueOf(endpoints)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return 0, 0, fmt.Errorf("limit the API servers: microcluster's endpoints are a %T, not a pointer to a struct", endpoints)
	}
	e := v.Elem()
	mu := e.FieldByName("mu")
	if !mu.IsValid() || mu.Type() != reflect.TypeOf(sync.RWMutex{}) {
		return 0, 0, fmt.Errorf("limit the API servers: microcluster's %s has no mu sync.RWMutex", e.Type())
	}
	listeners := e.FieldByName("listeners")
	if !listeners.IsValid() || listeners.Kind() != reflect.Map {
		return 0, 0, fmt.Errorf("limit the API servers: microcluster's %s has no listeners map", e.Type())
	}
	lock := (*sync.RWMutex)(unsafe.Pointer(mu.UnsafeAddr()))
	lock.RLock()
	defer lock.RUnlock()
	srvType := reflect.TypeOf(&http.Server{})
	it := listeners.MapRange()
	for it.Next() {
		l := it.Value()
		if l.Kind() == reflect.Interface {
			l = l.Elem()
		}
		if l.Kind() != reflect.Pointer || l.IsNil() || l.Elem().Kind() != reflect.Struct {
			return found, changed, fmt.Errorf("limit the API servers: a microcluster listener is a %s", l.Type())
		}
		f := l.Elem().FieldByName("server")
		if !f.IsValid() || f.Type() != srvType {
			return found, changed, fmt.Errorf("limit the API servers: microcluster's %s has no server *http.Server", l.Elem().Type())
		}
		if f.IsNil() {
			continue
		}
		srv := (*http.Server)(unsafe.Pointer(f.Pointer()))
		found++
		if lim.ConnState != nil && srv.ConnState != nil && reflect.ValueOf(srv.ConnState).Pointer() != reflect.ValueOf(lim.ConnState).Pointer() {
			return found, changed, fmt.Errorf("limit the API servers: microcluster's server already has a ConnState hook; cloudd's connection cap would replace it")
		}
		_, isGated := srv.Handler.(gated)
		wrap := lim.Handler != nil && srv.Handler != nil && !isGated
		if srv.ReadHeaderTimeout == lim.ReadHeaderTimeout && srv.IdleTimeout == lim.IdleTimeout && srv.MaxHeaderBytes == lim.MaxHeaderBytes &&
			(lim.ErrorLog == nil || srv.ErrorLog == lim.ErrorLog) && (lim.ConnState == nil || srv.ConnState != nil) && !wrap {
			continue
		}
		if wrap {
			srv.Handler = lim.Handler(srv.Handler)
		}
		srv.ReadHeaderTimeout, srv.IdleTimeout, srv.MaxHeaderBytes = lim.ReadHeaderTimeout, lim.IdleTimeout, lim.MaxHeaderBytes
		if lim.ErrorLog != nil {
			srv.ErrorLog = lim.ErrorLog
		}
		if lim.ConnState != nil && srv.ConnState == nil {
			srv.ConnState = lim.ConnState
		}
		changed++
	}
	return found, changed, nil
}

// limitAPIServers applies apiLimits to the servers s's endpoints hold now
// (run from every hook that follows microcluster starting a server).
func (d *Daemon) limitAPIServers(endpoints any) {
	lim := d.apiLimits
	found, changed, err := limitServers(endpoints, lim)
	if err != nil {
		d.log.Error("the cluster API runs without header timeouts", "err", err)
		return
	}
	if changed > 0 {
		d.log.Info("cluster API limits set", "servers", found, "read_header_timeout", lim.ReadHeaderTimeout, "idle_timeout", lim.IdleTimeout, "max_header_bytes", lim.MaxHeaderBytes, "conns_per_source", apiConnsPerSource)
	}
}
