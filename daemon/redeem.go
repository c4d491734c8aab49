package daemon

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/canonical/lxd/lxd/response"
	"github.com/canonical/lxd/shared"
	"github.com/canonical/microcluster/cluster"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
)

// redeemWindow is how long the microcluster secret handed out by a
// redemption stays usable: one join attempt.
const redeemWindow = 2 * time.Minute

// The join path. A cloudctl join token carries cloudd's secret, never
// microcluster's: microcluster's join endpoint checks only that a secret
// exists (no name, no expiry) and hands the joiner the cluster's
// certificate and key. So the joiner first redeems its token here
// (POST /1.0/token-redeem, reachable before it is trusted): in one
// transaction of the cluster database cloudd checks the secret, the name it
// is bound to, its expiry and that it was never used, marks it used by that
// name, and only then creates a fresh microcluster secret for that name,
// which the joiner joins with at once. Two joiners with one token: the
// cluster database serialises the transactions, one gets the secret, the
// other the answer of a used token. The fresh secret is withdrawn by the
// token sweep after redeemWindow if no join used it.

// redeemToken spends a token: see above. A refusal is a TokenCheckResult
// with Valid false and the reason, like checkToken's.
// The joiner (joinerOf: the certificate it presented) is recorded with the
// redemption: the same node may redeem the token again while its join has
// not reached the cluster (resumable).
func (d *Daemon) redeemToken(ctx context.Context, s *state.State, req api.TokenCheck, joiner string) (api.TokenCheckResult, error) {
	res := api.TokenCheckResult{Reason: "unknown"}
	if err := api.ValidNodeName(req.Name); err != nil || req.Secret == "" {
		return res, nil
	}
	now := d.cfg.Now()
	sum := api.SecretSHA256(req.Secret)
	fresh, err := shared.RandomCryptoString()
	if err != nil {
		return res, fmt.Errorf("generate join secret: %w", err)
	}
	err = s.Database.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
		var err error
		if res, err = judgeToken(ctx, tx, req.Name, sum, joiner, now); err != nil || !res.Valid {
			return err
		}
		resumed := res.Resumed
		res.Valid, res.Resumed = false, false
		member, err := cluster.InternalClusterMemberExists(ctx, tx, req.Name)
		if err != nil {
			return fmt.Errorf("check members: %w", err)
		}
		if member {
			res.Reason, res.UsedBy = "used", req.Name
			return nil
		}
		if err := setTokenState(ctx, tx, req.Name, api.TokenUsed, req.Name, now); err != nil {
			return err
		}
		if err := setConfig(ctx, tx, redeemerKey(req.Name), joiner); err != nil {
			return err
		}
		if err := deleteInternalToken(ctx, tx, req.Name); err != nil {
			return err
		}
		// The secret is usable for req.Name only (joinbind.go).
		if err := ensureJoinBinding(ctx, tx); err != nil {
			return err
		}
		if _, err := cluster.CreateInternalTokenRecord(ctx, tx, cluster.InternalTokenRecord{Name: req.Name, Secret: fresh}); err != nil {
			return fmt.Errorf("record microcluster token: %w", err)
		}
		res.Valid, res.Reason, res.Secret, res.Resumed = true, "ok", fresh, resumed
		return nil
	})
	if err != nil {
		return api.TokenCheckResult{}, err
	}
	if res.Valid {
		if res.Resumed {
			d.log.Info("join token redeemed again by the node that redeemed it (its join had not reached the cluster)", "name", req.Name)
		} else {
			d.log.Info("join token redeemed", "name", req.Name)
		}
		d.kickSweep()
	}
	return res, nil
}

func (d *Daemon) handleTokenRedeem(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	return d.untrustedToken(r, func(req api.TokenCheck) (api.TokenCheckResult, error) { return d.redeemToken(ctx, s, req, joinerOf(r)) })
}

// tokenNameBySecret is the name of the token whose secret hashes to sum, or "".
func tokenNameBySecret(ctx context.Context, tx *sql.Tx, sum string) (string, error) {
	var name string
	err := tx.QueryRowContext(ctx, `SELECT name FROM cloud_join_tokens WHERE secret_sha256 = ?`, sum).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read join tokens: %w", err)
	}
	return name, nil
}

// tokenUpdatedAt is when the token's state last changed.
func tokenUpdatedAt(ctx context.Context, tx *sql.Tx, name string) (time.Time, error) {
	var at time.Time
	if err := tx.QueryRowContext(ctx, `SELECT updated_at FROM cloud_join_tokens WHERE name = ?`, name).Scan(&at); err != nil {
		return at, fmt.Errorf("read join token %q: %w", name, err)
	}
	return at, nil
}
