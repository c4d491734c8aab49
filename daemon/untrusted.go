package daemon

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/canonical/lxd/lxd/response"
	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/api"
)

// Limits of cloudd's endpoints reachable before trust (token-check,
// token-redeem): anyone on the network can call them.
const (
	// untrustedBody is the largest body they read: a name and a secret.
	untrustedBody = 4 << 10
	// guardSources is how many source addresses the guard remembers; the
	// least recently seen is forgotten first, so memory stays bounded
	// whatever the number of sources.
	guardSources = 4096
	// guardRate and guardBurst: attempts per second per source, sustained and in a burst.
	guardRate  = 5.0
	guardBurst = 10.0
	// After a second wrong secret a source waits backoffBase, doubling with
	// each further wrong secret up to backoffMax; a right one clears it.
	backoffBase = 250 * time.Millisecond
	backoffMax  = 30 * time.Second
)

// attemptGuard rate-limits the untrusted endpoints per source address and
// backs off a source that keeps presenting wrong secrets. Its zero value is
// ready to use.
type attemptGuard struct {
	mu      sync.Mutex
	sources map[string]*attempts
}

type attempts struct {
	tokens   float64
	last     time.Time
	failures int
	until    time.Time
}

// admit reports how long src must wait before its next attempt (zero: go).
func (g *attemptGuard) admit(src string, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.get(src, now)
	if now.Before(a.until) {
		return a.until.Sub(now)
	}
	// A clock stepped back (NTP) must not take a source's tokens away.
	if el := now.Sub(a.last); el > 0 {
		a.tokens += el.Seconds() * guardRate
	}
	if a.tokens > guardBurst {
		a.tokens = guardBurst
	}
	a.last = now
	if a.tokens < 1 {
		return time.Duration((1 - a.tokens) / guardRate * float64(time.Second))
	}
	a.tokens--
	return 0
}

// result records whether src presented a secret the cluster knows.
func (g *attemptGuard) result(src string, known bool, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.get(src, now)
	if known {
		// A source that knows a secret is not guessing: it gets its burst
		// back. A join asks each member several times (the plan, the
		// checks back, the token, the redemption, the join itself: about
		// 3 per member), more than one burst with three members or more.
		a.failures, a.until, a.tokens = 0, time.Time{}, guardBurst
		return
	}
	// The first wrong secret is free (a joiner with a stale token asks
	// preflight and token-check in a row and must get its sentence).
	a.failures++
	if a.failures == 1 {
		return
	}
	wait := backoffBase << min(a.failures-2, 16)
	if wait > backoffMax || wait <= 0 {
		wait = backoffMax
	}
	a.until = now.Add(wait)
}

// size is how many sources are remembered.
func (g *attemptGuard) size() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.sources)
}

func (g *attemptGuard) get(src string, now time.Time) *attempts {
	if g.sources == nil {
		g.sources = map[string]*attempts{}
	}
	if a, ok := g.sources[src]; ok {
		return a
	}
	if len(g.sources) >= guardSources {
		oldest, at := "", now
		for k, v := range g.sources {
			if v.last.Before(at) || oldest == "" {
				oldest, at = k, v.last
			}
		}
		delete(g.sources, oldest)
	}
	a := &attempts{tokens: guardBurst, last: now}
	g.sources[src] = a
	return a
}

// tooMany is the answer to a source the guard makes wait.
func tooMany(what, src string, wait time.Duration) error {
	return lxdapi.StatusErrorf(http.StatusTooManyRequests, "too many %s from %s: wait %s and try again", what, src, wait.Round(time.Millisecond))
}

// sourceOf is the address a request came from.
func sourceOf(r *http.Request) string {
	return sourceKey(r.RemoteAddr)
}

// untrustedToken serves token-check and token-redeem: rate limit and
// backoff per source, a small body, and the verdict recorded for the
// source's backoff.
func (d *Daemon) untrustedToken(r *http.Request, serve func(req api.TokenCheck) (api.TokenCheckResult, error)) response.Response {
	src := sourceOf(r)
	now := d.cfg.Now()
	if r.ContentLength > untrustedBody {
		return response.SmartError(lxdapi.StatusErrorf(http.StatusRequestEntityTooLarge, "the request body is %d bytes; a join token check is at most %d", r.ContentLength, untrustedBody))
	}
	if wait := d.untrusted.admit(src, now); wait > 0 {
		return response.SmartError(tooMany("join token attempts", src, wait))
	}
	if err := readUntrustedBody(r, untrustedBody); err != nil {
		d.untrusted.result(src, false, now)
		return response.SmartError(err)
	}
	var req api.TokenCheck
	if err := decode(r, &req); err != nil {
		d.untrusted.result(src, false, now)
		return response.SmartError(err)
	}
	res, err := serve(req)
	if err != nil {
		return response.SmartError(err)
	}
	d.untrusted.result(src, res.Reason != "unknown", now)
	return response.SyncResponse(true, res)
}

// readUntrustedBody reads r's body whole, at most max bytes, and puts it
// back as r.Body. The time its body may take is bounded by the read
// deadline the API servers' connection hook set (connCap, apiBodyTimeout);
// a body that ran out of it gets its own sentence.
func readUntrustedBody(r *http.Request, max int64) error {
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, max))
	var tooBig *http.MaxBytesError
	var nerr net.Error
	switch {
	case errors.As(err, &tooBig):
		return lxdapi.StatusErrorf(http.StatusRequestEntityTooLarge, "the request body is over %d bytes, the most this endpoint reads", max)
	case errors.As(err, &nerr) && nerr.Timeout():
		return lxdapi.StatusErrorf(http.StatusRequestTimeout, "the request body did not arrive in time (%s after its headers)", apiBodyTimeout)
	case err != nil:
		return lxdapi.StatusErrorf(http.StatusBadRequest, "read the request body: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	return nil
}
