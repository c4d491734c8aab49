package daemon

import (
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/roles/driver"
)

func TestPreflightMemo(t *testing.T) {
	var m preflightMemo
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	if m.cachedEnv(t0) != nil {
		t.Fatal("an empty memo remembers an environment")
	}
	env := &driver.Env{}
	m.rememberEnv(env, t0)
	if m.cachedEnv(t0.Add(preflightMemoTTL-time.Millisecond)) != env {
		t.Fatal("the environment within its time")
	}
	for _, at := range []time.Time{t0.Add(preflightMemoTTL), t0.Add(-time.Second)} {
		if m.cachedEnv(at) != nil {
			t.Fatalf("remembered at %s, used at %s", t0, at)
		}
	}
}
