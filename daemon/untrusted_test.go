package daemon

import (
	"fmt"
	"testing"
	"time"
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
