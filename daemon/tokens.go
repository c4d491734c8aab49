package daemon

import (
	"context"
	"crypto/subtle"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/canonical/lxd/shared"
	lxdapi "github.com/canonical/lxd/shared/api"
	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
)

// tokenHistory is how long used, revoked and expired tokens are remembered.
const tokenHistory = 7 * 24 * time.Hour

// clusterFingerprint is the SHA-256 fingerprint of the cluster certificate,
// the one a joiner pins.
func clusterFingerprint(s *state.State) (string, error) {
	cert, err := s.ClusterCert().PublicKeyX509()
	if err != nil {
		return "", fmt.Errorf("read cluster certificate: %w", err)
	}
	return shared.CertFingerprint(cert), nil
}

func clusterName(ctx context.Context, tx *sql.Tx) (string, error) {
	return getConfig(ctx, tx, "cluster_name")
}

// issueToken creates microcluster's token record and cloudd's metadata in one
// transaction, and returns the cloudctl token string.
func (d *Daemon) issueToken(ctx context.Context, s *state.State, req api.TokenRequest) (api.Token, error) {
	if err := api.ValidNodeName(req.Name); err != nil {
		return api.Token{}, lxdapi.StatusErrorf(http.StatusBadRequest, "%v", err)
	}
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if req.TTLSeconds == 0 {
		ttl = api.DefaultTokenTTL
	}
	if ttl < time.Second || ttl > 30*24*time.Hour {
		return api.Token{}, lxdapi.StatusErrorf(http.StatusBadRequest, "invalid token lifetime %s: use between 1s and 720h", ttl)
	}
	secret, err := shared.RandomCryptoString()
	if err != nil {
		return api.Token{}, fmt.Errorf("generate token secret: %w", err)
	}
	fp, err := clusterFingerprint(s)
	if err != nil {
		return api.Token{}, err
	}
	var addrs []string
	for _, a := range s.Remotes().Addresses() {
		addrs = append(addrs, a.String())
	}
	if len(addrs) == 0 {
		addrs = []string{s.Address().URL.Host}
	}
	sort.Strings(addrs)
	now := d.cfg.Now()
	row := tokenRow{Name: req.Name, SecretSHA256: api.SecretSHA256(secret), State: api.TokenPending, IssuedAt: now, ExpiresAt: now.Add(ttl)}
	var cname string
	err = s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		exists, err := cluster.InternalClusterMemberExists(ctx, tx, req.Name)
		if err != nil {
			return fmt.Errorf("check members: %w", err)
		}
		if exists {
			return lxdapi.StatusErrorf(http.StatusConflict, "%q is already a member of this cluster: choose another name, or remove it first with `cloudctl cluster remove %s`", req.Name, req.Name)
		}
		old, err := getToken(ctx, tx, req.Name)
		if err != nil {
			return err
		}
		if old != nil && old.State == api.TokenPending && old.ExpiresAt.After(now) {
			return lxdapi.StatusErrorf(http.StatusConflict, "a join token for %q is already pending (expires %s): use it, or revoke it first with `cloudctl cluster tokens revoke %s`",
				req.Name, old.ExpiresAt.UTC().Format(time.RFC3339), req.Name)
		}
		// microcluster's own secret is made only when the joiner redeems
		// this one (redeemToken); a stale record under this name goes.
		if err := deleteInternalToken(ctx, tx, req.Name); err != nil {
			return err
		}
		if err := putToken(ctx, tx, row, now); err != nil {
			return err
		}
		cname, err = clusterName(ctx, tx)
		return err
	})
	if err != nil {
		return api.Token{}, err
	}
	jt := api.JoinToken{Name: req.Name, Cluster: cname, Secret: secret, Fingerprint: fp, Addresses: addrs, ExpiresAt: row.ExpiresAt.UTC()}
	str, err := jt.Encode()
	if err != nil {
		return api.Token{}, err
	}
	d.log.Info("join token issued", "name", req.Name, "expires_at", row.ExpiresAt.UTC())
	t := row.api()
	t.Token = str
	return t, nil
}

// internalTokenExists reports whether microcluster holds a token record for
// name.
func internalTokenExists(ctx context.Context, tx *sql.Tx, name string) (bool, error) {
	// The generated mapper has no statement for a name-only filter.
	recs, err := cluster.GetInternalTokenRecords(ctx, tx)
	if err != nil {
		return false, fmt.Errorf("read microcluster tokens: %w", err)
	}
	for _, r := range recs {
		if r.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// deleteInternalToken removes microcluster's token record for name, if any.
func deleteInternalToken(ctx context.Context, tx *sql.Tx, name string) error {
	found, err := internalTokenExists(ctx, tx, name)
	if err != nil || !found {
		return err
	}
	if err := cluster.DeleteInternalTokenRecord(ctx, tx, name); err != nil {
		return fmt.Errorf("delete microcluster token %q: %w", name, err)
	}
	return nil
}

// revokeToken withdraws a pending token, or one redeemed by a join that has
// not finished.
func (d *Daemon) revokeToken(ctx context.Context, s *state.State, name string) error {
	now := d.cfg.Now()
	return s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return revokeTokenTx(ctx, tx, name, now)
	})
}

// revokeTokenTx is revokeToken inside tx.
func revokeTokenTx(ctx context.Context, tx *sql.Tx, name string, now time.Time) error {
	t, err := getToken(ctx, tx, name)
	if err != nil {
		return err
	}
	if t != nil && t.State == api.TokenUsed {
		// Redeemed by a join that has not finished: revoking it withdraws
		// the one-join secret, and the sweep never gives the token back.
		back, err := unfinishedUntil(ctx, tx, t)
		if err != nil {
			return err
		}
		if !back.IsZero() {
			if err := deleteInternalToken(ctx, tx, name); err != nil {
				return err
			}
			// A member it left pending stays the redeemer's: the sweep
			// still releases it (halfJoinSince), the token stays revoked.
			usedBy := ""
			if pending, err := pendingMember(ctx, tx, name); err != nil {
				return err
			} else if pending {
				usedBy = t.UsedBy
			}
			return setTokenState(ctx, tx, name, api.TokenRevoked, usedBy, now)
		}
	}
	if t == nil || t.State != api.TokenPending {
		if t == nil {
			return lxdapi.StatusErrorf(http.StatusNotFound, "there is no join token for %q: `cloudctl cluster tokens list` shows the pending ones", name)
		}
		return lxdapi.StatusErrorf(http.StatusConflict, "the join token for %q is already %s: nothing to revoke", name, t.State)
	}
	if err := deleteInternalToken(ctx, tx, name); err != nil {
		return err
	}
	return setTokenState(ctx, tx, name, api.TokenRevoked, "", now)
}

// listTokens returns every remembered token, pending first.
func (d *Daemon) listTokens(ctx context.Context, s *state.State) ([]api.Token, error) {
	var out []api.Token
	now := d.cfg.Now()
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		rows, err := getTokens(ctx, tx)
		if err != nil {
			return err
		}
		for _, r := range rows {
			if r.State == api.TokenPending && !r.ExpiresAt.After(now) {
				r.State = api.TokenExpired
			}
			out = append(out, r.api())
		}
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool {
		return out[i].State == api.TokenPending && out[j].State != api.TokenPending
	})
	return out, err
}

// checkToken tells a joiner (the fingerprint of the certificate it
// presented, or "") whether its token can be used now. It changes nothing.
func (d *Daemon) checkToken(ctx context.Context, s *state.State, req api.TokenCheck, joiner string) (api.TokenCheckResult, error) {
	var res api.TokenCheckResult
	now := d.cfg.Now()
	sum := api.SecretSHA256(req.Secret)
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		res, err = judgeToken(ctx, tx, req.Name, sum, joiner, now)
		return err
	})
	return res, err
}

// joinerOf is the SHA-256 (hex) of the certificate the client of r proved
// it holds (the first of its chain: the only one TLS proves), or "" when it
// presented none. A joining cloudctl presents its node's cloudd
// certificate, so the cluster can tell the node that redeemed a token from
// any other holder of the token.
func joinerOf(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return ""
	}
	return shared.CertFingerprint(r.TLS.PeerCertificates[0])
}

// redeemerKey is the cloud_config key holding the fingerprint of the joiner
// that redeemed the token of name (joinerOf; empty: one that presented no
// certificate).
func redeemerKey(name string) string { return "token-redeemer/" + name }

// resumable reports whether t, a used token, was redeemed by joiner for a
// join that never reached the cluster and has not expired: no member of its
// name, and the one-join secret of the redemption still unused (a member
// that joined and was removed later, even by force while its node kept its
// certificate, spent it). That node may redeem it again at once (a join cut
// off between the redemption and microcluster's join, or whose
// microcluster join failed before it was recorded), instead of waiting for
// the sweep to give it back. Any other holder of the token still gets the
// answer of a used token.
func resumable(ctx context.Context, tx *sql.Tx, t *tokenRow, joiner string, now time.Time) (bool, error) {
	if joiner == "" || !t.ExpiresAt.After(now) {
		return false, nil
	}
	open, err := unjoined(ctx, tx, *t)
	if err != nil || !open {
		return false, err
	}
	live, err := internalTokenExists(ctx, tx, t.Name)
	if err != nil || !live {
		return false, err
	}
	by, err := getConfig(ctx, tx, redeemerKey(t.Name))
	if err != nil {
		return false, err
	}
	return by == joiner, nil
}

// judgeToken reads, inside tx, the token of name and judges the secret whose
// SHA-256 is sum against it at now: Valid only for a pending, unexpired
// token of that name, or for a used one that joiner may redeem again
// (resumable). A wrong secret learns nothing of the name's tokens
// (an older one, a newer one) nor the cluster's name; a secret that is good
// under another name learns that name ("wrong-name").
func judgeToken(ctx context.Context, tx *sql.Tx, name, sum, joiner string, now time.Time) (api.TokenCheckResult, error) {
	res := api.TokenCheckResult{Reason: "unknown"}
	t, err := getToken(ctx, tx, name)
	if err != nil {
		return res, err
	}
	if t == nil || subtle.ConstantTimeCompare([]byte(t.SecretSHA256), []byte(sum)) != 1 {
		other, err := tokenNameBySecret(ctx, tx, sum)
		if err != nil {
			return res, err
		}
		if other != "" {
			res.Reason, res.UsedBy = "wrong-name", other
		}
		return res, nil
	}
	if res.Cluster, err = clusterName(ctx, tx); err != nil {
		return res, err
	}
	res.ExpiresAt = t.ExpiresAt
	switch {
	case t.State == api.TokenUsed:
		res.Reason, res.UsedBy = "used", t.UsedBy
		again, err := resumable(ctx, tx, t, joiner, now)
		if err != nil {
			return res, err
		}
		if again {
			res.Valid, res.Reason, res.Resumed = true, "ok", true
			return res, nil
		}
		back, err := unfinishedUntil(ctx, tx, t)
		if err != nil {
			return res, err
		}
		// Given back only if it has not expired by then.
		if !back.IsZero() && t.ExpiresAt.After(back) {
			res.RetryAt = back
		}
	case t.State == api.TokenRevoked:
		res.Reason = "revoked"
	case t.State == api.TokenExpired || !t.ExpiresAt.After(now):
		res.Reason = "expired"
	default:
		res.Valid, res.Reason = true, "ok"
	}
	return res, nil
}

// unfinishedUntil is, for a token redeemed by a join that has not finished,
// about when the sweep gives the token back if that join never comes: for
// a microcluster secret still unused (no member of its name) redeemWindow
// after the redemption, for a member still pending (halfjoin.go)
// halfJoinGrace after it, plus a few sweeps. Zero otherwise.
func unfinishedUntil(ctx context.Context, tx *sql.Tx, t *tokenRow) (time.Time, error) {
	open, err := unjoined(ctx, tx, *t)
	if err != nil {
		return time.Time{}, err
	}
	if !open {
		// A member of its name, still pending, its secret spent: a join
		// under way, or one that died, which releaseHalfJoins gives up.
		at, half, err := halfJoinSince(ctx, tx, t.Name)
		if err != nil || !half {
			return time.Time{}, err
		}
		if pending, err := pendingMember(ctx, tx, t.Name); err != nil || !pending {
			return time.Time{}, err
		}
		return at.Add(halfJoinGrace + giveBackSlack), nil
	}
	live, err := internalTokenExists(ctx, tx, t.Name)
	if err != nil || !live {
		return time.Time{}, err
	}
	at, err := tokenUpdatedAt(ctx, tx, t.Name)
	if err != nil {
		return time.Time{}, err
	}
	return at.Add(redeemWindow + giveBackSlack), nil
}

// unjoined reports whether t was spent under its own name and no member has
// that name: a redemption whose join has not completed.
func unjoined(ctx context.Context, tx *sql.Tx, t tokenRow) (bool, error) {
	if t.State != api.TokenUsed || t.UsedBy != t.Name {
		return false, nil
	}
	member, err := cluster.InternalClusterMemberExists(ctx, tx, t.Name)
	if err != nil {
		return false, fmt.Errorf("check members: %w", err)
	}
	return !member, nil
}

// giveBackSlack covers the sweep's cadence (2 s while a secret is live) and
// a leader that saw the redemption a little later than it was written.
const giveBackSlack = 10 * time.Second

// giveBack returns a redeemed token whose join never came (no member of its
// name) to the pending state, or marks it expired: a join that failed does
// not burn its token. It reports whether the token is pending again.
func giveBack(ctx context.Context, tx *sql.Tx, r tokenRow, now time.Time) (bool, error) {
	open, err := unjoined(ctx, tx, r)
	if err != nil || !open {
		return false, err
	}
	if !r.ExpiresAt.After(now) {
		return false, setTokenState(ctx, tx, r.Name, api.TokenExpired, "", now)
	}
	return true, setTokenState(ctx, tx, r.Name, api.TokenPending, "", now)
}

// sweepIdle is how often the sweep looks again when no token is pending
// (or this member is not the dqlite leader): issuing a token kicks it.
const sweepIdle = 30 * time.Second

// sweepLoop revokes expired tokens and records used ones, on the dqlite
// leader only, every TokenSweep while tokens are pending and rarely
// otherwise: a cluster with no pending token is quiet.
func (d *Daemon) sweepLoop(ctx context.Context) {
	timer := time.NewTimer(d.cfg.TokenSweep)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-d.sweepKick:
		}
		next := sweepIdle
		if s := d.getState(); s != nil && s.Database != nil && s.Database.IsOpen(ctx) == nil {
			if leader, err := d.isLeader(ctx, s); err == nil && leader {
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				pending, err := d.reconcileTokens(sctx, s)
				cancel()
				if err != nil && !errors.Is(err, context.Canceled) {
					d.log.Warn("token sweep failed", "error", err)
				}
				// A release may wait for the members' answers (trust stores).
				hctx, cancel := context.WithTimeout(ctx, 90*time.Second)
				half, herr := d.releaseHalfJoins(hctx, s)
				cancel()
				if herr != nil && !errors.Is(herr, context.Canceled) {
					d.log.Warn("token sweep: releasing a join that stopped midway failed", "error", herr)
				}
				pending += half
				if err == nil {
					err = herr
				}
				if pending > 0 || err != nil {
					next = d.cfg.TokenSweep
				}
			}
		} else {
			next = d.cfg.TokenSweep
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(next)
	}
}

// kickSweep makes the token sweep look now.
func (d *Daemon) kickSweep() {
	select {
	case d.sweepKick <- struct{}{}:
	default:
	}
}

// isLeader reports whether this member is the dqlite leader.
func (d *Daemon) isLeader(ctx context.Context, s *state.State) (bool, error) {
	lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := s.Database.Leader(lctx)
	if err != nil {
		return false, fmt.Errorf("find dqlite leader: %w", err)
	}
	defer c.Close()
	info, err := c.Leader(lctx)
	if err != nil {
		return false, fmt.Errorf("find dqlite leader: %w", err)
	}
	return info != nil && info.Address == s.Address().URL.Host, nil
}

// reconcileTokens expires pending tokens past their time (revoking
// microcluster's record), marks consumed ones used, and prunes old history.
// It writes only when something changed (or the hourly prune is due) and
// returns how many tokens are still pending.
func (d *Daemon) reconcileTokens(ctx context.Context, s *state.State) (int, error) {
	now := d.cfg.Now()
	pending := 0
	err := s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		pending = 0
		rows, err := getTokens(ctx, tx)
		if err != nil {
			return err
		}
		recs, err := cluster.GetInternalTokenRecords(ctx, tx)
		if err != nil {
			return fmt.Errorf("read microcluster tokens: %w", err)
		}
		live := map[string]bool{}
		for _, r := range recs {
			live[r.Name] = true
		}
		changed := false
		for _, r := range rows {
			if r.State != api.TokenPending {
				// A redeemed token's microcluster secret serves one join
				// attempt, for redeemWindow at most.
				if live[r.Name] {
					// The redemption was stamped by the member that served
					// it: members' clocks agree within seconds (a join is
					// refused from 5 s apart, `cluster check` reports drift).
					at, err := tokenUpdatedAt(ctx, tx, r.Name)
					if err != nil {
						return err
					}
					if now.Sub(at) > redeemWindow {
						if err := deleteInternalToken(ctx, tx, r.Name); err != nil {
							return err
						}
						changed = true
						d.log.Info("join token: redeemed secret not used in time, withdrawn", "name", r.Name)
						back, err := giveBack(ctx, tx, r, now)
						if err != nil {
							return err
						}
						if back {
							pending++
							d.log.Warn("join token: the join that redeemed it never finished; the token can be used again", "name", r.Name, "expires_at", r.ExpiresAt)
						}
					} else {
						pending++
					}
				}
				continue
			}
			switch {
			case !r.ExpiresAt.After(now):
				if err := deleteInternalToken(ctx, tx, r.Name); err != nil {
					return err
				}
				if err := setTokenState(ctx, tx, r.Name, api.TokenExpired, "", now); err != nil {
					return err
				}
				changed = true
				d.log.Info("join token expired", "name", r.Name)
			default:
				pending++
			}
		}
		d.mu.Lock()
		due := now.Sub(d.lastPrune) > time.Hour
		d.mu.Unlock()
		if !changed && !due {
			return nil
		}
		if err := pruneTokens(ctx, tx, now, tokenHistory); err != nil {
			return err
		}
		d.mu.Lock()
		d.lastPrune = now
		d.mu.Unlock()
		return nil
	})
	return pending, err
}
