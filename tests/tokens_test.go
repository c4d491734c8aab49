package tests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/tests/harness"
)

// unchanged checks that a failed join left both sides as they were.
func unchanged(t *testing.T, boot *harness.Node, members int, joiner *harness.Node) {
	t.Helper()
	st := mustStatus(t, boot)
	if len(st.Members) != members {
		t.Fatalf("cluster changed: %d members, want %d", len(st.Members), members)
	}
	r := joiner.Run("status")
	if r.Code == 0 || !strings.Contains(r.Stderr, "not part of a cluster yet") {
		t.Fatalf("joiner changed: status exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
}

func TestBadTokens(t *testing.T) {
	// node1's clock can be moved (its cloudd reads the offset from a file):
	// the sweep that gives back the token of an unfinished join runs there.
	clock := filepath.Join(t.TempDir(), "node1-clock-offset")
	c := harness.NewWithOptions(t, 3, harness.Options{NodeArgs: map[int][]string{1: {"--clock-offset-for-tests", "@" + clock}}})
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	bootstrap(t, n1, "control,compute,storage")
	joinArgs := func(tok string, extra ...string) []string {
		return append([]string{"cluster", "join", "--token-file", tokenFile(t, n2, tok), "--role", "compute", "--address", n2.IP}, extra...)
	}

	t.Run("invalid", func(t *testing.T) {
		oneSentence(t, n2.Run(joinArgs("hello-world")...), "not a valid join token")
		unchanged(t, n1, 1, n2)
	})
	t.Run("truncated", func(t *testing.T) {
		tok := token(t, n1, "node2")
		defer n1.MustRun(t, "cluster", "tokens", "revoke", "node2")
		for _, cut := range []int{len(tok) - 1, len(tok) - 9, len(tok) / 2, 12} {
			oneSentence(t, n2.Run(joinArgs(tok[:cut])...), "not a valid join token")
		}
		unchanged(t, n1, 1, n2)
	})
	t.Run("wrong name", func(t *testing.T) {
		tok := token(t, n1, "node2")
		defer n1.MustRun(t, "cluster", "tokens", "revoke", "node2")
		oneSentence(t, n2.Run(joinArgs(tok, "--name", "node7")...), `issued for a node named "node2"`)
		unchanged(t, n1, 1, n2)
	})
	t.Run("expired", func(t *testing.T) {
		tok := token(t, n1, "node2", "--ttl", "1s")
		// Wait for the expiry itself (the daemon's background sweep revokes
		// the token and lists it as expired), not for a guessed time; then
		// the join is refused as expired (expired tokens are remembered).
		harness.Eventually(t, time.Minute, "token listed as expired", func() error {
			out := n1.MustRun(t, "cluster", "tokens", "list")
			if !strings.Contains(out, "expired") {
				return errorf("listing: %s", out)
			}
			return nil
		})
		oneSentence(t, n2.Run(joinArgs(tok)...), "expired")
		unchanged(t, n1, 1, n2)
	})
	t.Run("wrong name and expiry judged at the redemption itself", func(t *testing.T) {
		// A client of its own skips cloudctl's checks (the name, the
		// expiry it reads from the token): the cluster judges the
		// redemption, where the secret is handed out.
		flood := buildHelper(t, "tokenflood")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		tok := token(t, n1, "node2", "--ttl", "1h")
		jt, err := api.DecodeJoinToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		jt.Name = "node7"
		forged, err := jt.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if out, err := n2.Output(ctx, flood, "redeem", n1.IP+":7443", tokenFile(t, n2, forged)); err != nil || strings.TrimSpace(string(out)) != "200 wrong-name" {
			t.Fatalf("node2's secret redeemed as node7: want 200 wrong-name, got %v: %s", err, out)
		}
		n1.MustRun(t, "cluster", "tokens", "revoke", "node2")
		// An expired token redeemed before the sweep marks it: node1's
		// clock two hours on, the token an hour past its expiry, redeemed
		// at once. The sweep (every 2 s, and kicked when a token is
		// issued) may mark it first; then the redemption proved nothing,
		// and a fresh token is tried.
		t.Cleanup(func() { _ = os.WriteFile(clock, []byte("0"), 0o600) })
		judged, tries := false, 0
		for ; tries < 20 && !judged; tries++ {
			tok := token(t, n1, "node2", "--ttl", "1h")
			// A read of the tokens through node1 gives the sweep that the
			// issue kicked the time to run with the true clock.
			tokensOf(t, n1)
			if err := os.WriteFile(clock, []byte("2h"), 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := n2.Output(ctx, flood, "redeem", n1.IP+":7443", tokenFile(t, n2, tok))
			if werr := os.WriteFile(clock, []byte("0"), 0o600); werr != nil {
				t.Fatal(werr)
			}
			if err != nil || strings.TrimSpace(string(out)) != "200 expired" {
				t.Fatalf("an expired token redeemed: want 200 expired, got %v: %s", err, out)
			}
			judged = true
			for _, tk := range tokensOf(t, n1) {
				switch {
				case tk.Name != "node2" || tk.State == api.TokenRevoked:
				case tk.UsedBy != "":
					t.Fatalf("a refused redemption spent the token: %+v", tk)
				case tk.State == api.TokenExpired:
					judged = false // the sweep came first
				default:
					n1.MustRun(t, "cluster", "tokens", "revoke", "node2")
				}
			}
		}
		if !judged {
			t.Fatal("the sweep marked the token expired before each of 20 redemptions")
		}
		t.Logf("an expired token refused at its redemption before the sweep: %d tries", tries)
		unchanged(t, n1, 1, n2)
	})
	t.Run("revoked", func(t *testing.T) {
		tok := token(t, n1, "node2")
		n1.MustRun(t, "cluster", "tokens", "revoke", "node2")
		oneSentence(t, n2.Run(joinArgs(tok)...), "revoked")
		unchanged(t, n1, 1, n2)
		oneSentence(t, n1.Run("cluster", "tokens", "revoke", "node2"), "already revoked")
	})
	t.Run("superseded", func(t *testing.T) {
		old := token(t, n1, "node2")
		n1.MustRun(t, "cluster", "tokens", "revoke", "node2")
		token(t, n1, "node2")
		defer n1.MustRun(t, "cluster", "tokens", "revoke", "node2")
		oneSentence(t, n2.Run(joinArgs(old)...), "does not know this token")
		unchanged(t, n1, 1, n2)
	})
	t.Run("pending twice", func(t *testing.T) {
		token(t, n1, "node2")
		defer n1.MustRun(t, "cluster", "tokens", "revoke", "node2")
		oneSentence(t, n1.Run("cluster", "add", "node2"), "already pending")
	})
	t.Run("other cluster", func(t *testing.T) {
		// n3 bootstraps a second, separate cluster. Its token, pointed at the
		// first cluster's address, must be refused by certificate pinning.
		bootstrap(t, n3, "control")
		tok := token(t, n3, "node2")
		jt, err := api.DecodeJoinToken(tok)
		if err != nil {
			t.Fatal(err)
		}
		jt.Addresses = []string{n1.IP + ":7443"}
		forged, err := jt.Encode()
		if err != nil {
			t.Fatal(err)
		}
		oneSentence(t, n2.Run(joinArgs(forged)...), "not the cluster that issued this token")
		unchanged(t, n1, 1, n2)
		// A token for one cluster presented by a member of another.
		tok1 := token(t, n1, "node3")
		defer n1.MustRun(t, "cluster", "tokens", "revoke", "node3")
		oneSentence(t, n3.Run("cluster", "join", "--token-file", tokenFile(t, n3, tok1), "--role", "compute", "--address", n3.IP), "already a member")
		if st := mustStatus(t, n3); len(st.Members) != 1 || st.Members[0].Name != "node3" {
			t.Fatalf("second cluster changed: %+v", st.Members)
		}
	})
	var joined string // the token node2 joined with
	t.Run("join interrupted after the redeem", func(t *testing.T) {
		tok := token(t, n1, "node2")
		// A joiner redeems its token, then dies before it joins: the
		// helper does the first half and nothing else.
		flood := buildHelper(t, "tokenflood")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := n2.Output(ctx, flood, "redeem", n1.IP+":7443", tokenFile(t, n2, tok))
		if err != nil || strings.TrimSpace(string(out)) != "200 ok" {
			t.Fatalf("redeem: %v: %s", err, out)
		}
		// Run again at once: the cluster cannot tell a dead join from one
		// still under way, and says when it gives the token back.
		oneSentence(t, n2.Run(joinArgs(tok)...), "already used by node2, and that join has not finished: if it was interrupted, the cluster gives the token back at ")
		unchanged(t, n1, 1, n2)
		// Revoking such a token withdraws it for good: node9's, redeemed
		// the same way, is revoked and never comes back.
		tok9 := token(t, n1, "node9")
		if out, err := n2.Output(ctx, flood, "redeem", n1.IP+":7443", tokenFile(t, n2, tok9)); err != nil || strings.TrimSpace(string(out)) != "200 ok" {
			t.Fatalf("redeem node9's token: %v: %s", err, out)
		}
		n1.MustRun(t, "cluster", "tokens", "revoke", "node9")
		// The redeemed secret is withdrawn 2 minutes after the redemption
		// and the token comes back: move node1's clock past that.
		if err := os.WriteFile(clock, []byte("3m"), 0o600); err != nil {
			t.Fatal(err)
		}
		harness.Eventually(t, time.Minute, "node2's token pending again", func() error {
			for _, tk := range tokensOf(t, n1) {
				if tk.Name == "node2" && tk.State == api.TokenPending && tk.UsedBy == "" {
					return nil
				}
			}
			return errorf("tokens: %+v", tokensOf(t, n1))
		})
		for _, tk := range tokensOf(t, n1) {
			if tk.Name == "node9" && tk.State != api.TokenRevoked {
				t.Fatalf("node9's revoked token came back: %+v", tk)
			}
		}
		// A different length: the daemon rereads the file when its size or
		// time changes.
		if err := os.WriteFile(clock, []byte("0"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The same command now joins, with the same token.
		n2.MustRun(t, joinArgs(tok)...)
		if st := mustStatus(t, n1); len(st.Members) != 2 {
			t.Fatalf("join failed: %+v", st.Members)
		}
		joined = tok
	})
	t.Run("reused", func(t *testing.T) {
		tok := joined
		if tok == "" {
			t.Fatal("node2 did not join in the subtest before, which this one reuses the token of")
		}
		// The same token again, from a fresh machine that calls itself node2.
		n4 := c.AddNode(t)
		r := n4.Run("cluster", "join", "--token-file", tokenFile(t, n4, tok), "--role", "compute", "--address", n4.IP)
		oneSentence(t, r, "already used by node2; tokens are single-use")
		unchanged(t, n1, 2, n4)
		out := n1.MustRun(t, "cluster", "tokens", "list", "--format", "json")
		if !strings.Contains(out, `"state": "used"`) {
			t.Fatalf("token not listed as used: %s", out)
		}
	})
	t.Run("join interrupted after the redeem, run again on the same node", func(t *testing.T) {
		// cloudctl join presents the node's cloudd certificate: the node
		// that redeemed a token may redeem it again while its join has not
		// reached the cluster, and the same command joins at once.
		n5 := c.AddNode(t)
		tok := token(t, n1, n5.Name)
		flood := buildHelper(t, "tokenflood")
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		file := tokenFile(t, n5, tok)
		if out, err := n5.Output(ctx, flood, "redeem", n1.IP+":7443", file, n5.StateDir); err != nil || strings.TrimSpace(string(out)) != "200 ok" {
			t.Fatalf("redeem as %s: %v: %s", n5.Name, err, out)
		}
		// Anyone else holding the token, with another certificate or none,
		// is refused as before.
		if out, err := n2.Output(ctx, flood, "redeem", n1.IP+":7443", file, n2.StateDir); err != nil || strings.TrimSpace(string(out)) != "200 used" {
			t.Fatalf("redeem of %s's token with node2's certificate: %v: %s", n5.Name, err, out)
		}
		if out, err := n5.Output(ctx, flood, "redeem", n1.IP+":7443", file); err != nil || strings.TrimSpace(string(out)) != "200 used" {
			t.Fatalf("redeem of %s's token with no certificate: %v: %s", n5.Name, err, out)
		}
		out := n5.MustRun(t, "cluster", "join", "--token-file", file, "--role", "compute", "--address", n5.IP)
		if !strings.Contains(out, "redeemed it again") {
			t.Fatalf("join output does not say the redemption was made again:\n%s", out)
		}
		members := 0
		for _, m := range mustStatus(t, n1).Members {
			if m.Name == n5.Name {
				members++
			}
		}
		if members != 1 {
			t.Fatalf("%s is not a member after the join run again: %+v", n5.Name, mustStatus(t, n1).Members)
		}
		// Once joined, the token is spent for good, for the same node too.
		if out, err := n5.Output(ctx, flood, "redeem", n1.IP+":7443", file, n5.StateDir); err != nil || strings.TrimSpace(string(out)) != "200 used" {
			t.Fatalf("redeem after the join: %v: %s", err, out)
		}
	})
	t.Run("member name", func(t *testing.T) {
		oneSentence(t, n1.Run("cluster", "add", "node2"), "already a member")
		oneSentence(t, n1.Run("cluster", "add", "Bad_Name"), "invalid node name")
	})
}

func errorf(format string, args ...any) error { return &strErr{s: sprintf(format, args...)} }

type strErr struct{ s string }

func (e *strErr) Error() string { return e.s }
