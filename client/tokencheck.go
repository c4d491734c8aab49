package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/canonical/lxd/shared"

	"github.com/cloudctl/cloudctl/api"
)

// ErrForeignCluster means the server at a join address does not hold the
// cluster certificate the token pins.
var ErrForeignCluster = errors.New("certificate mismatch")

// ErrTokenRejected means the cluster answered that the token cannot be used.
var ErrTokenRejected = errors.New("join token rejected")

// errTooManyAttempts means the cluster refused to look at the token now:
// this machine presented too many wrong ones (its answer says how long to wait).
var errTooManyAttempts = errors.New("the cluster is refusing join attempts from this machine for a while")

// Joiner is a node about to join, as the issuing cluster sees it: its
// token and its cloudd's certificate, which it presents in every TLS
// handshake with the cluster (nil: none). The cluster records the
// certificate with the token's redemption, so a join of this node cut off
// before it reached the cluster can be run again at once (the answer is
// Resumed), while anyone else holding the token is still refused.
type Joiner struct {
	Token api.JoinToken
	Cert  *tls.Certificate
}

// NewJoiner is jt presented by the node whose cloudd keeps its state in
// stateDir: its server certificate and key (root's, as cloudctl join runs).
// A node whose cloudd never made them presents none; certificate files that
// exist but cannot be read are an error, not a silent join without them
// (which could not resume).
func NewJoiner(jt api.JoinToken, stateDir string) (Joiner, error) {
	j := Joiner{Token: jt}
	crt, key := filepath.Join(stateDir, "server.crt"), filepath.Join(stateDir, "server.key")
	_, errCrt := os.Stat(crt)
	_, errKey := os.Stat(key)
	if errors.Is(errCrt, fs.ErrNotExist) && errors.Is(errKey, fs.ErrNotExist) {
		return j, nil
	}
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		return j, fmt.Errorf("cannot use this node's cloudd certificate (%s, %s) to join: %w: run cloudctl as root, with --state-dir naming this node's cloudd state directory", crt, key, err)
	}
	j.Cert = &cert
	return j, nil
}

// tlsConfig pins the token's cluster certificate and presents the node's.
func (j Joiner) tlsConfig() *tls.Config {
	if j.Cert == nil {
		return PinnedTLS(j.Token.Fingerprint)
	}
	return PinnedTLS(j.Token.Fingerprint, *j.Cert)
}

// CheckToken asks the issuing cluster, over TLS pinned to the token's
// certificate fingerprint, whether j's token can be used by a node called
// name. It changes nothing on either side. The error is one sentence for a
// person.
func CheckToken(ctx context.Context, j Joiner, name string, now time.Time) (api.TokenCheckResult, error) {
	jt := j.Token
	var res api.TokenCheckResult
	if name != jt.Name {
		return res, fmt.Errorf("%w: this token was issued for a node named %q, not %q: join with --name %s, or ask for a token for %s with `cloudctl cluster add %s`",
			ErrTokenRejected, jt.Name, name, jt.Name, name, name)
	}
	if !jt.ExpiresAt.IsZero() && !jt.ExpiresAt.After(now) {
		return res, fmt.Errorf("%w: this token expired at %s: ask for a new one with `cloudctl cluster add %s`", ErrTokenRejected, jt.ExpiresAt.UTC().Format(time.RFC3339), jt.Name)
	}
	var unreachable []string
	for _, addr := range jt.Addresses {
		r, err := checkAt(ctx, addr, j, name)
		if errors.Is(err, ErrForeignCluster) {
			return res, fmt.Errorf("%w: the server at %s is not the cluster that issued this token (its certificate does not match the one the token pins): the token belongs to another cluster, or the address now points somewhere else", ErrTokenRejected, addr)
		}
		if errors.Is(err, errTooManyAttempts) {
			return res, fmt.Errorf("%w: %v", ErrTokenRejected, err)
		}
		if err != nil {
			unreachable = append(unreachable, fmt.Sprintf("%s (%v)", addr, err))
			continue
		}
		return r, explainCheck(r, jt)
	}
	return res, fmt.Errorf("could not reach the cluster that issued this token at %s: check the network between this node and the cluster", strings.Join(unreachable, ", "))
}

func explainCheck(r api.TokenCheckResult, jt api.JoinToken) error {
	switch r.Reason {
	case "ok":
		return nil
	case "used":
		by := ""
		if r.UsedBy != "" {
			by = " by " + r.UsedBy
		}
		if !r.RetryAt.IsZero() {
			return fmt.Errorf("%w: this token was already used%s, and that join has not finished: if it was interrupted, the cluster gives the token back at %s, so run the same command again then; otherwise ask for a new one with `cloudctl cluster add %s`", ErrTokenRejected, by, r.RetryAt.UTC().Format("15:04:05 MST"), jt.Name)
		}
		return fmt.Errorf("%w: this token was already used%s; tokens are single-use: ask for a new one with `cloudctl cluster add %s`", ErrTokenRejected, by, jt.Name)
	case "revoked":
		return fmt.Errorf("%w: this token was revoked: ask for a new one with `cloudctl cluster add %s`", ErrTokenRejected, jt.Name)
	case "expired":
		return fmt.Errorf("%w: this token expired at %s: ask for a new one with `cloudctl cluster add %s`", ErrTokenRejected, r.ExpiresAt.UTC().Format(time.RFC3339), jt.Name)
	case "superseded":
		return fmt.Errorf("%w: a newer token was issued for %s after this one: use the newest token", ErrTokenRejected, jt.Name)
	case "wrong-name":
		return fmt.Errorf("%w: this token belongs to node %q, not %q", ErrTokenRejected, r.UsedBy, jt.Name)
	default:
		return fmt.Errorf("%w: the cluster does not know this token (never issued there, or long expired): ask for a new one with `cloudctl cluster add %s`", ErrTokenRejected, jt.Name)
	}
}

// maxTokenWait is how far off a token's return may be for AwaitTokenBack to
// wait for it: a member left pending by a join cut off midway is given up
// 85 s after the redemption. A secret redeemed and never used comes back
// 130 s after it; a join re-run at once is told when instead.
const maxTokenWait = 100 * time.Second

// tokenBackLate is how long after the time the cluster gave for a token's
// return AwaitTokenBack still waits (the sweep on a busy or idle leader).
const tokenBackLate = time.Minute

// AwaitTokenBack waits while jt is spent by a join of name itself that has
// not finished (a join cut off midway, which the cluster gives up) and the
// cluster gives it back within maxTokenWait: until the token is usable
// again, or tokenBackLate past the time the cluster said,
// telling waiting once when it begins. It reports whether the token is
// usable again after a wait, and says what to do when it waited in vain;
// in every other case it returns at once, leaving the token's state for
// CheckToken to explain.
func AwaitTokenBack(ctx context.Context, j Joiner, name string, now func() time.Time, waiting func(at time.Time)) (bool, error) {
	jt := j.Token
	var deadline time.Time
	for {
		r, err := CheckToken(ctx, j, name, now())
		if err == nil {
			return !deadline.IsZero(), nil
		}
		spent := r.Reason == "used" && r.UsedBy == name && !r.RetryAt.IsZero()
		switch {
		case spent && deadline.IsZero():
			if r.RetryAt.Sub(now()) > maxTokenWait {
				return false, nil
			}
			deadline = r.RetryAt.Add(tokenBackLate)
			waiting(r.RetryAt)
		case spent:
		case deadline.IsZero():
			return false, nil
		case errors.Is(err, ErrTokenRejected):
			// It changed while this waited (expired, revoked): that is
			// the answer now.
			return false, err
		}
		// Still spent, or the cluster out of reach for a moment.
		if now().After(deadline) {
			if !spent {
				return false, err
			}
			return false, fmt.Errorf("%w: this token is still spent by an earlier join of %s that stopped midway: the cluster did not give it back by %s (its dqlite leader releases it; `cloudctl cluster list` on a member shows %s as pending until then): run the same command again in a few minutes, or ask for a new token with `cloudctl cluster add %s`",
				ErrTokenRejected, name, deadline.UTC().Format("15:04:05 MST"), name, jt.Name)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// AwaitJoinOutcome waits, up to limit, while j's token is spent by another
// join of name that has not finished: two machines joining with one token,
// the other's redemption came first. That join usually ends in seconds:
// joined, the token is used for good and the answer is the sentence of a
// used token; given up, the token is back (true). waiting is called once
// when the wait begins. After limit, the answer is the token's state then.
func AwaitJoinOutcome(ctx context.Context, j Joiner, name string, now func() time.Time, limit time.Duration, waiting func()) (bool, error) {
	deadline := now().Add(limit)
	told := false
	for {
		r, err := CheckToken(ctx, j, name, now())
		if err == nil {
			return true, nil
		}
		spent := r.Reason == "used" && r.UsedBy == name && !r.RetryAt.IsZero()
		if !spent && errors.Is(err, ErrTokenRejected) || now().After(deadline) {
			return false, err
		}
		if spent && !told {
			told = true
			waiting()
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// RedeemToken spends j's token at the issuing cluster for a node called
// name and returns the single-use microcluster secret to join with, and
// whether it was this node's own redemption made anew (a join of this node
// cut off before it reached the cluster). The cluster checks the name, the
// expiry and that the token was never used in one transaction: of two
// joiners with one token, one gets the secret and the other the sentence
// of a used token.
func RedeemToken(ctx context.Context, j Joiner, name string) (string, bool, error) {
	jt := j.Token
	var unreachable []string
	for _, addr := range jt.Addresses {
		r, err := postAt(ctx, addr, "token-redeem", j, name)
		if errors.Is(err, ErrForeignCluster) {
			return "", false, fmt.Errorf("%w: the server at %s is not the cluster that issued this token (its certificate does not match the one the token pins)", ErrTokenRejected, addr)
		}
		if errors.Is(err, errTooManyAttempts) {
			return "", false, fmt.Errorf("%w: %v", ErrTokenRejected, err)
		}
		if err != nil {
			unreachable = append(unreachable, fmt.Sprintf("%s (%v)", addr, err))
			continue
		}
		if err := explainCheck(r, jt); err != nil {
			return "", false, err
		}
		if r.Secret == "" {
			return "", false, fmt.Errorf("the cluster at %s accepted the token but sent no join secret: is it running an older cloudd?", addr)
		}
		return r.Secret, r.Resumed, nil
	}
	return "", false, fmt.Errorf("could not reach the cluster that issued this token at %s: check the network between this node and the cluster", strings.Join(unreachable, ", "))
}

func checkAt(ctx context.Context, addr string, j Joiner, name string) (api.TokenCheckResult, error) {
	return postAt(ctx, addr, "token-check", j, name)
}

func postAt(ctx context.Context, addr, path string, j Joiner, name string) (api.TokenCheckResult, error) {
	jt := j.Token
	var res api.TokenCheckResult
	tr := &http.Transport{TLSClientConfig: j.tlsConfig()}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body, err := json.Marshal(api.TokenCheck{Name: name, Secret: jt.Secret})
	if err != nil {
		return res, fmt.Errorf("encode token check: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/1.0/"+path, bytes.NewReader(body))
	if err != nil {
		return res, fmt.Errorf("token check request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if errors.Is(err, ErrForeignCluster) {
		return res, ErrForeignCluster
	}
	if err != nil {
		return res, fmt.Errorf("unreachable: %w", err)
	}
	defer resp.Body.Close()
	var env struct {
		Type      string          `json:"type"`
		Error     string          `json:"error"`
		ErrorCode int             `json:"error_code"`
		Metadata  json.RawMessage `json:"metadata"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return res, fmt.Errorf("unreadable answer: %w", err)
	}
	if env.Type == "error" && (env.ErrorCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusTooManyRequests) {
		return res, fmt.Errorf("%w: %s", errTooManyAttempts, env.Error)
	}
	if env.Type == "error" {
		return res, fmt.Errorf("cluster error: %s", env.Error)
	}
	if err := json.Unmarshal(env.Metadata, &res); err != nil {
		return res, fmt.Errorf("unreadable answer: %w", err)
	}
	return res, nil
}

// PinnedTLS is a TLS client configuration that accepts only a server whose
// certificate has the given SHA-256 fingerprint (cluster certificates are
// self-signed: the fingerprint is the trust), presenting certs if any. A
// mismatch fails the handshake with ErrForeignCluster.
func PinnedTLS(fingerprint string, certs ...tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates:       certs,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return fmt.Errorf("no certificate")
			}
			cert, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return fmt.Errorf("parse certificate: %w", err)
			}
			if shared.CertFingerprint(cert) != fingerprint {
				return ErrForeignCluster
			}
			return nil
		},
	}
}
