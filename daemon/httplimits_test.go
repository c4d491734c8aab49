package daemon

import (
	"bytes"
	"log/slog"
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
	found, changed, err := limitServers(eps.Interface(), defaultAPILimits(slog.Default(), time.Now))
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
