package daemon

import (
	"bytes"
	"log"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/canonical/microcluster/state"
)

// TestLimitServersLayout: limitServers understands the pinned microcluster's
// Endpoints type (taken from state.State, as cloudd receives it).
func TestLimitServersLayout(t *testing.T) {
	f, ok := reflect.TypeOf(state.State{}).FieldByName("Endpoints")
	if !ok || f.Type.Kind() != reflect.Pointer {
		t.Fatalf("state.State has no Endpoints pointer")
	}
	eps := reflect.New(f.Type.Elem())
	found, changed, err := limitServers(eps.Interface(), defaultAPILimits(slog.Default(), time.Now, nil, nil, nil, nil))
	if err != nil || found != 0 || changed != 0 {
		t.Fatalf("empty endpoints: found %d changed %d err %v", found, changed, err)
	}
}

type fakeNetwork struct{ server *http.Server }

type fakeEndpoint interface{}

type fakeEndpoints struct {
	mu        sync.RWMutex
	listeners map[int]fakeEndpoint
}

// TestLimitServers: the limits land on each server once; a layout it does
// not know is an error, not a silent no-op.
func TestLimitServers(t *testing.T) {
	a, b := &http.Server{}, &http.Server{}
	e := &fakeEndpoints{listeners: map[int]fakeEndpoint{1: &fakeNetwork{server: a}, 2: &fakeNetwork{server: b}, 3: &fakeNetwork{}}}
	lim := serverLimits{ReadHeaderTimeout: time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 4096}
	found, changed, err := limitServers(e, lim)
	if err != nil || found != 2 || changed != 2 {
		t.Fatalf("first: found %d changed %d err %v", found, changed, err)
	}
	for _, s := range []*http.Server{a, b} {
		if s.ReadHeaderTimeout != time.Second || s.IdleTimeout != time.Minute || s.MaxHeaderBytes != 4096 {
			t.Fatalf("limits not set: %+v", s)
		}
	}
	if found, changed, err = limitServers(e, lim); err != nil || found != 2 || changed != 0 {
		t.Fatalf("second: found %d changed %d err %v", found, changed, err)
	}
	type other struct{ listeners []int }
	if _, _, err := limitServers(&other{}, lim); err == nil || !strings.Contains(err.Error(), "mu") {
		t.Fatalf("unknown layout: want an error, got %v", err)
	}
	if _, _, err := limitServers(nil, lim); err == nil {
		t.Fatal("nil endpoints: want an error")
	}
}

// TestLimitedLog: at most burst lines a second reach the log, and the number
// dropped is told with the next line let through.
func TestLimitedLog(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := &limitedLog{log: slog.New(slog.NewTextHandler(&buf, nil)), burst: 2, now: func() time.Time { return now }}
	for i := 0; i < 5; i++ {
		if n, err := l.Write([]byte("http: TLS handshake error\n")); err != nil || n == 0 {
			t.Fatalf("write: %d %v", n, err)
		}
	}
	if got := strings.Count(buf.String(), "TLS handshake error"); got != 2 {
		t.Fatalf("in one second: want 2 lines, got %d:\n%s", got, buf.String())
	}
	now = now.Add(time.Second)
	_, _ = l.Write([]byte("http: TLS handshake error\n"))
	if !strings.Contains(buf.String(), "count=3") || strings.Count(buf.String(), "TLS handshake error") != 3 {
		t.Fatalf("next second: want the 3 dropped counted and one more line:\n%s", buf.String())
	}
}

// capConn is a connection from a TCP source that records its Close and
// its read deadline.
type capConn struct {
	net.Conn
	from     *net.TCPAddr
	closed   bool
	deadline time.Time
}

func (c *capConn) SetReadDeadline(t time.Time) error { c.deadline = t; return nil }

func (c *capConn) RemoteAddr() net.Addr { return c.from }
func (c *capConn) Close() error         { c.closed = true; return nil }

// TestConnCap: a source over the cap has its new connections closed as they
// are accepted; closed and hijacked ones free their place; other sources
// and connections without a TCP source are not affected; requests on the
// counted connections get a body deadline, the others none.
func TestConnCap(t *testing.T) {
	var logged bytes.Buffer
	c := newConnCap(2, time.Minute, log.New(&logged, "", 0), func(ip string) bool { return ip == "10.0.0.1" })
	a := func() *capConn { return &capConn{from: &net.TCPAddr{IP: net.ParseIP("10.0.0.9"), Port: 40000}} }
	c1, c2, c3 := a(), a(), a()
	for _, cn := range []*capConn{c1, c2, c3} {
		c.state(cn, http.StateNew)
	}
	if c1.closed || c2.closed || !c3.closed {
		t.Fatalf("closed: %v %v %v, want only the third", c1.closed, c2.closed, c3.closed)
	}
	if !strings.Contains(logged.String(), "refused a connection from 10.0.0.9") {
		t.Fatalf("refusal not logged: %q", logged.String())
	}
	c.state(c3, http.StateClosed) // the refused one's close changes nothing
	if n := c.open("10.0.0.9"); n != 2 {
		t.Fatalf("open after the refused one closed: %d", n)
	}
	other := &capConn{from: &net.TCPAddr{IP: net.ParseIP("10.0.0.8"), Port: 1}}
	c.state(other, http.StateNew)
	if other.closed {
		t.Fatal("another source was refused")
	}
	for i := 0; i < 3; i++ {
		m := &capConn{from: &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 2}}
		c.state(m, http.StateNew)
		if m.closed {
			t.Fatal("a member's connection was refused")
		}
	}
	unix := &capConn{}
	unixConn := &unixAddrConn{capConn: unix}
	c.state(unixConn, http.StateNew)
	if unix.closed {
		t.Fatal("a connection without a TCP source was refused")
	}
	// A request on a counted connection gets the body deadline; on a
	// member's or one without a TCP source, none.
	c.state(c1, http.StateActive)
	if c1.deadline.IsZero() {
		t.Fatal("no body deadline on a request from 10.0.0.9")
	}
	member := &capConn{from: &net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 3}}
	c.state(member, http.StateNew)
	c.state(member, http.StateActive)
	c.state(unixConn, http.StateActive)
	if !member.deadline.IsZero() || !unix.deadline.IsZero() {
		t.Fatalf("a body deadline on a member's (%v) or a socket's (%v) request", member.deadline, unix.deadline)
	}
	c.state(c1, http.StateHijacked)
	c.state(c1, http.StateClosed) // after a hijack: already uncounted
	c4 := a()
	c.state(c4, http.StateNew)
	if c4.closed || c.open("10.0.0.9") != 2 {
		t.Fatalf("a hijacked connection still counts: closed %v open %d", c4.closed, c.open("10.0.0.9"))
	}
	c.state(c2, http.StateClosed)
	c.state(c4, http.StateClosed)
	if n := c.open("10.0.0.9"); n != 0 {
		t.Fatalf("open after all closed: %d", n)
	}
	// A connection accepted before the hook was installed: its close is ignored.
	c.state(a(), http.StateClosed)
	if n := c.open("10.0.0.9"); n != 0 {
		t.Fatalf("an uncounted close went below zero: %d", n)
	}
}

type unixAddrConn struct{ *capConn }

func (c *unixAddrConn) RemoteAddr() net.Addr { return &net.UnixAddr{Name: "@", Net: "unix"} }

// TestLimitServersConnState: the cap is installed once; a server with a
// hook of its own is an error, not replaced silently.
func TestLimitServersConnState(t *testing.T) {
	cp := newConnCap(1, time.Minute, log.New(&bytes.Buffer{}, "", 0), nil)
	lim := serverLimits{ReadHeaderTimeout: time.Second, ConnState: cp.state}
	s := &http.Server{}
	e := &fakeEndpoints{listeners: map[int]fakeEndpoint{1: &fakeNetwork{server: s}}}
	if _, changed, err := limitServers(e, lim); err != nil || changed != 1 || s.ConnState == nil {
		t.Fatalf("first: changed %d err %v hook %v", changed, err, s.ConnState != nil)
	}
	if _, changed, err := limitServers(e, lim); err != nil || changed != 0 {
		t.Fatalf("second: changed %d err %v", changed, err)
	}
	theirs := &http.Server{ConnState: func(net.Conn, http.ConnState) {}}
	e2 := &fakeEndpoints{listeners: map[int]fakeEndpoint{1: &fakeNetwork{server: theirs}}}
	if _, _, err := limitServers(e2, lim); err == nil || !strings.Contains(err.Error(), "ConnState") {
		t.Fatalf("a foreign hook: want an error, got %v", err)
	}
}
