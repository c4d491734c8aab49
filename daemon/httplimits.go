package daemon

import (
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"time"
	"unsafe"
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
//   - ErrorLog sends net/http's per-connection errors ("http: TLS handshake
//     error from ...", one per cut connection) to cloudd's log, at most
//     apiErrorBurst lines a second with a count of those dropped, so slow
//     clients cannot grow the log without bound.
//
// ReadTimeout and WriteTimeout are not set: they stay on a hijacked
// connection and would cut dqlite's.
const (
	apiReadHeaderTimeout = 10 * time.Second
	apiIdleTimeout       = 2 * time.Minute
	apiMaxHeaderBytes    = 64 << 10
	apiErrorBurst        = 10
)

// serverLimits are the values limitServers sets.
type serverLimits struct {
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	ErrorLog          *log.Logger
}

func defaultAPILimits(lg *slog.Logger, now func() time.Time) serverLimits {
	return serverLimits{
		ReadHeaderTimeout: apiReadHeaderTimeout,
		IdleTimeout:       apiIdleTimeout,
		MaxHeaderBytes:    apiMaxHeaderBytes,
		ErrorLog:          log.New(&limitedLog{log: lg, burst: apiErrorBurst, now: now}, "", 0),
	}
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
		if srv.ReadHeaderTimeout == lim.ReadHeaderTimeout && srv.IdleTimeout == lim.IdleTimeout && srv.MaxHeaderBytes == lim.MaxHeaderBytes && (lim.ErrorLog == nil || srv.ErrorLog == lim.ErrorLog) {
			continue
		}
		srv.ReadHeaderTimeout, srv.IdleTimeout, srv.MaxHeaderBytes = lim.ReadHeaderTimeout, lim.IdleTimeout, lim.MaxHeaderBytes
		if lim.ErrorLog != nil {
			srv.ErrorLog = lim.ErrorLog
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
		d.log.Info("cluster API limits set", "servers", found, "read_header_timeout", lim.ReadHeaderTimeout, "idle_timeout", lim.IdleTimeout, "max_header_bytes", lim.MaxHeaderBytes)
	}
}
