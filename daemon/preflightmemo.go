package daemon

import (
	"sync"
	"time"

	"github.com/cloudctl/cloudctl/roles/driver"
)

// preflightMemoTTL is how long the preflight endpoints reuse what they read
// from the cluster database.
const preflightMemoTTL = 5 * time.Second

// preflightMemoMax bounds the join secrets remembered (only valid ones are,
// so only holders of a token can add entries).
const preflightMemoMax = 256

// preflightMemo keeps, for preflightMemoTTL, what the preflight endpoints
// read from the cluster database through its leader: which join secrets
// were valid, and the cluster's environment. A joiner asks every member
// twice (its plan, then its probe) and the members of its token's
// addresses once more, all at once; each ask cost two transactions through
// the leader (the token, the environment), so the leader's queue grew with
// the cluster and the preflight with it (45 ms before node 2's join, 170 ms
// before node 10's). The preflight changes nothing: an answer a few seconds
// old is still a good plan, and the token is judged again, in one
// transaction, when it is redeemed.
type preflightMemo struct {
	mu    sync.Mutex
	valid map[string]time.Time
	env   *driver.Env
	envAt time.Time
}

// validSecret reports whether key (token name, secret hash, joiner) was
// judged valid less than preflightMemoTTL before now.
func (m *preflightMemo) validSecret(key string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.valid[key]
	return ok && now.Sub(at) >= 0 && now.Sub(at) < preflightMemoTTL
}

// rememberValid records that key was judged valid at now.
func (m *preflightMemo) rememberValid(key string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.valid == nil {
		m.valid = map[string]time.Time{}
	}
	if len(m.valid) >= preflightMemoMax {
		for k, at := range m.valid {
			if now.Sub(at) >= preflightMemoTTL || now.Before(at) {
				delete(m.valid, k)
			}
		}
		if len(m.valid) >= preflightMemoMax {
			return
		}
	}
	m.valid[key] = now
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
