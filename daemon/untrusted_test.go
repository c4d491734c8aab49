package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	lxdapi "github.com/canonical/lxd/shared/api"
)

func TestAttemptGuardBacksOff(t *testing.T) {
	var g attemptGuard
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if w := g.admit("10.0.0.9", now); w != 0 {
		t.Fatalf("first attempt waits %s", w)
	}
	g.result("10.0.0.9", false, now)
	if w := g.admit("10.0.0.9", now); w != 0 {
		t.Fatalf("after one wrong secret: wait %s, want none", w)
	}
	g.result("10.0.0.9", false, now)
	if w := g.admit("10.0.0.9", now); w != backoffBase {
		t.Fatalf("after two wrong secrets: wait %s, want %s", w, backoffBase)
	}
	// Each further wrong secret doubles the wait, up to backoffMax.
	for i := 0; i < 20; i++ {
		now = now.Add(time.Hour)
		if w := g.admit("10.0.0.9", now); w != 0 {
			t.Fatalf("attempt after the wait was refused: %s", w)
		}
		g.result("10.0.0.9", false, now)
	}
	if w := g.admit("10.0.0.9", now); w != backoffMax {
		t.Fatalf("wait after many wrong secrets %s, want %s", w, backoffMax)
	}
	// Another source is not affected; a right secret clears the backoff.
	if w := g.admit("10.0.0.8", now); w != 0 {
		t.Fatalf("another source waits %s", w)
	}
	now = now.Add(time.Hour)
	g.admit("10.0.0.9", now)
	g.result("10.0.0.9", true, now)
	if w := g.admit("10.0.0.9", now); w != 0 {
		t.Fatalf("after a right secret: wait %s", w)
	}
	// A source that presents a right secret gets its burst back: a join
	// to five members asks more than one burst's worth in a second.
	for i := 0; i < 20; i++ {
		if w := g.admit("10.0.0.7", now); w != 0 {
			t.Fatalf("request %d of a joiner with a right secret waits %s", i, w)
		}
		g.result("10.0.0.7", true, now)
	}
}

func TestAttemptGuardRateAndMemory(t *testing.T) {
	var g attemptGuard
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ok := 0
	for i := 0; i < 100; i++ {
		if g.admit("10.0.0.9", now) == 0 {
			ok++
		}
	}
	if ok != int(guardBurst) {
		t.Fatalf("%d attempts in one instant admitted, want the burst of %v", ok, guardBurst)
	}
	for i := 0; i < 3*guardSources; i++ {
		g.admit(fmt.Sprintf("src-%d", i), now.Add(time.Duration(i)*time.Millisecond))
	}
	if n := g.size(); n != guardSources {
		t.Fatalf("the guard remembers %d sources, want at most %d", n, guardSources)
	}
}

// TestUntrustedBodyTime: on a server with the API servers' connection hook
// (connCap) and no read timeout, a client that sends its headers and then
// its body a byte at a time is cut once the body's deadline passes, whether
// the handler reads the body or refuses before reading it; a whole (or
// empty) body is read, and the deadline does not cut a slow handler after
// it nor the kept-alive connection's next request.
func TestUntrustedBodyTime(t *testing.T) {
	const limit = 300 * time.Millisecond
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Refuse") != "" {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		if err := readUntrustedBody(r, 64); err != nil {
			var se lxdapi.StatusError
			if errors.As(err, &se) {
				w.WriteHeader(se.Status())
			}
			_, _ = io.WriteString(w, err.Error())
			return
		}
		b, _ := io.ReadAll(r.Body)
		// Longer than the deadline: once the body is in, net/http's
		// background read of the connection must not hit the deadline and
		// cancel the request (the real handlers' database work takes its
		// context).
		time.Sleep(2 * limit)
		if err := r.Context().Err(); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, err.Error())
			return
		}
		_, _ = fmt.Fprintf(w, "got %q", b)
	}))
	srv.Config.ConnState = newConnCap(64, limit, log.New(io.Discard, "", 0), nil).state
	srv.Start()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	// send writes the request's headers at once, then its body one byte
	// every gap; it returns what the server answered and whether the server
	// closed the connection before the body was all sent.
	send := func(t *testing.T, c net.Conn, hdr, body string, gap time.Duration) (status string, cut bool) {
		t.Helper()
		if _, err := io.WriteString(c, hdr); err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(c)
		answered := make(chan string, 1)
		go func() {
			resp, err := http.ReadResponse(rd, nil)
			if err != nil {
				answered <- "error: " + err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answered <- resp.Status + " " + string(b)
		}()
		for i := 0; i < len(body); i++ {
			select {
			case s := <-answered:
				return s, true
			case <-time.After(gap):
			}
			if _, err := c.Write([]byte{body[i]}); err != nil {
				return <-answered, true
			}
		}
		select {
		case s := <-answered:
			return s, false
		case <-time.After(time.Minute):
			t.Fatal("no answer a minute after the whole body was sent")
			return "", false
		}
	}
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	post := func(body string, extra string) string {
		return fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n%s\r\n", len(body), extra)
	}
	// closed waits (up to a minute: no timing is asserted) for the server
	// to close c.
	closed := func(t *testing.T, c net.Conn) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(time.Minute))
		_, err := io.Copy(io.Discard, c)
		// A reset (a dripped byte the server never read) is a close too.
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server did not close the connection within a minute: %v", err)
		}
	}

	t.Run("a slow body is cut", func(t *testing.T) {
		body := strings.Repeat("x", 60) // 60 × 1 s, far past the deadline
		c := dial(t)
		status, cut := send(t, c, post(body, ""), body, time.Second)
		if !cut || !strings.HasPrefix(status, "408 ") {
			t.Fatalf("answer %q (cut before the body was sent: %v); want 408 before the body is in", status, cut)
		}
		closed(t, c)
	})
	t.Run("a refusal before the body is read is cut too", func(t *testing.T) {
		body := strings.Repeat("x", 60)
		c := dial(t)
		status, cut := send(t, c, post(body, "X-Refuse: 1\r\n"), body, time.Second)
		if !cut || !strings.HasPrefix(status, "429 ") {
			t.Fatalf("answer %q (cut: %v); want 429 before the body is in", status, cut)
		}
		closed(t, c)
	})
	t.Run("a whole body is read; the connection lives on", func(t *testing.T) {
		c := dial(t)
		for i := 0; i < 2; i++ {
			status, cut := send(t, c, post(`{"a":1}`, "")+`{"a":1}`, "", 0)
			if cut || status != `200 OK got "{\"a\":1}"` {
				t.Fatalf("request %d: answer %q (cut: %v)", i+1, status, cut)
			}
		}
	})
	t.Run("an empty body: the handler is not cut", func(t *testing.T) {
		// net/http's background read starts before the handler when there
		// is no body: the deadline must be set before that.
		status, cut := send(t, dial(t), post("", ""), "", 0)
		if cut || status != `200 OK got ""` {
			t.Fatalf("answer %q (cut: %v)", status, cut)
		}
	})
	t.Run("an oversized body is refused", func(t *testing.T) {
		body := strings.Repeat("x", 100)
		c := dial(t)
		status, _ := send(t, c, post(body, "")+body, "", 0)
		if !strings.HasPrefix(status, "413 ") {
			t.Fatalf("answer %q; want 413", status)
		}
	})
}

// TestBodyDeadlineSkipsHTTP2: a request over HTTP/2 gets no body deadline
// (nothing would clear it, and it would end the connection with all its
// streams): two requests on one HTTP/2 connection, each with a handler
// slower than the deadline, both answered.
func TestBodyDeadlineSkipsHTTP2(t *testing.T) {
	const limit = 300 * time.Millisecond
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := readUntrustedBody(r, 64); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		time.Sleep(3 * limit)
		if err := r.Context().Err(); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, r.Proto)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = newConnCap(64, limit, log.New(io.Discard, "", 0), nil).state
	srv.StartTLS()
	t.Cleanup(srv.Close)
	hc := srv.Client()
	for i := 0; i < 2; i++ {
		resp, err := hc.Post(srv.URL, "application/json", strings.NewReader(`{"a":1}`))
		if err != nil {
			t.Fatalf("request %d over HTTP/2: %v", i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "HTTP/2.0" {
			t.Fatalf("request %d: %s %q; want 200 over HTTP/2.0", i+1, resp.Status, b)
		}
	}
}
