package daemon

import (
	"fmt"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/roles/driver"
)

func TestPreflightMemo(t *testing.T) {
	var m preflightMemo
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	if m.validSecret("a", t0) || m.cachedEnv(t0) != nil {
		t.Fatal("an empty memo remembers something")
	}
	m.rememberValid("a", t0)
	env := &driver.Env{}
	m.rememberEnv(env, t0)
	if !m.validSecret("a", t0.Add(preflightMemoTTL-time.Millisecond)) || m.validSecret("b", t0) {
		t.Fatal("the valid secret within its time, or only it")
	}
	if m.cachedEnv(t0.Add(time.Second)) != env {
		t.Fatal("the environment within its time")
	}
	for _, at := range []time.Time{t0.Add(preflightMemoTTL), t0.Add(-time.Second)} {
		if m.validSecret("a", at) || m.cachedEnv(at) != nil {
			t.Fatalf("remembered at %s, used at %s", t0, at)
		}
	}
	// Bounded: full of live entries, a new one is not kept; expired ones
	// make room.
	for i := 0; i < 2*preflightMemoMax; i++ {
		m.rememberValid(fmt.Sprint(i), t0)
	}
	if len(m.valid) != preflightMemoMax {
		t.Fatalf("%d secrets remembered, want at most %d", len(m.valid), preflightMemoMax)
	}
	later := t0.Add(preflightMemoTTL)
	m.rememberValid("new", later)
	if !m.validSecret("new", later) || len(m.valid) != 1 {
		t.Fatalf("expired entries not pruned: %d left", len(m.valid))
	}
}
