package daemon

import (
	"sync"
	"time"

	"github.com/cloudctl/cloudctl/roles/driver"
)

// preflightMemoTTL is how long the preflight endpoints reuse what they read
// from the cluster database.
const preflightMemoTTL = 5 * time.Second

// preflightMemo keeps, for preflightMemoTTL, the cluster's environment as
// the preflight endpoints read it from the cluster database through its
// leader. A joiner asks every member twice (its plan, then its probe) and
// the members of its token's addresses once more, all at once; each ask
// cost two transactions through the leader (the token, the environment), so
// the leader's queue grew with the cluster and the preflight with it (45 ms
// before node 2's join, 170 ms before node 10's). An environment a few
// seconds old still makes a good plan (the preflight changes nothing); the
// token is judged at every ask, since a join run again after it was cut off
// must see its token spent.
type preflightMemo struct {
	mu    sync.Mutex
	env   *driver.Env
	envAt time.Time
}

// cachedEnv is the environment read less than preflightMemoTTL before now.
func (m *preflightMemo) cachedEnv(now time.Time) *driver.Env {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.env == nil || now.Sub(m.envAt) < 0 || now.Sub(m.envAt) >= preflightMemoTTL {
		return nil
	}
	return m.env
}

// rememberEnv records env as read at now.
func (m *preflightMemo) rememberEnv(env *driver.Env, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.env, m.envAt = env, now
}
