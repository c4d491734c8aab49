package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/tests/harness"
)

// tokenFile writes a join token to a 0600 file beside nd's state directory,
// for `cluster join --token-file`: tokens never go on a command line.
func tokenFile(t testing.TB, nd *harness.Node, tok string) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(filepath.Dir(nd.StateDir), nd.Name+"-token-"+hex.EncodeToString(b))
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestJoinTokenSources: `cluster add` says to pass the token on standard
// input; `cluster join -` reads it there; a token on the command line still
// joins but warns; no token at all is one sentence.
func TestJoinTokenSources(t *testing.T) {
	c := harness.New(t, 3)
	n1, n2, n3 := c.Node(1), c.Node(2), c.Node(3)
	bootstrap(t, n1, "compute")
	out := n1.MustRun(t, "cluster", "add", "node2")
	if !strings.Contains(out, "cluster join - ") || strings.Count(out, "cluster join") != 1 {
		t.Fatalf("cluster add should show `cluster join -` without the token on the command line:\n%s", out)
	}
	tok := ""
	for _, l := range strings.Split(out, "\n") {
		if len(strings.TrimSpace(l)) > 40 && !strings.Contains(l, " ") {
			tok = strings.TrimSpace(l)
		}
	}
	if tok == "" {
		t.Fatalf("no token in:\n%s", out)
	}
	oneSentence(t, n2.Run("cluster", "join", "--role", "compute", "--address", n2.IP), "no join token")

	cmd := n2.Command(context.Background(), "cluster", "join", "-", "--role", "compute", "--address", n2.IP)
	cmd.Stdin = strings.NewReader(tok + "\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("join with the token on standard input: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if strings.Contains(stderr.String(), "visible to other users") {
		t.Fatalf("a warning for a token on standard input: %s", stderr.String())
	}

	tok3 := token(t, n1, "node3")
	r := n3.Run("cluster", "join", tok3, "--role", "compute", "--address", n3.IP)
	if r.Code != 0 || !strings.Contains(r.Stderr, "visible to other users") {
		t.Fatalf("a token on the command line should still join, with a warning: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if st := mustStatus(t, n1); len(st.Members) != 3 {
		t.Fatalf("members: %+v", st.Members)
	}
}

// TestJoinTokenRace: two machines join with one token at the same moment:
// exactly one becomes a member, the other gets the sentence of a used token,
// and `tokens list` says which node used it.
func TestJoinTokenRace(t *testing.T) {
	c := harness.New(t, 3)
	n1, a, b := c.Node(1), c.Node(2), c.Node(3)
	bootstrap(t, n1, "compute")
	tok := token(t, n1, "node2")
	results := make(chan harness.Result, 2)
	for _, nd := range []*harness.Node{a, b} {
		f := tokenFile(t, nd, tok)
		go func(nd *harness.Node) {
			results <- nd.Run("cluster", "join", "--token-file", f, "--name", "node2", "--role", "compute", "--address", nd.IP)
		}(nd)
	}
	r1, r2 := <-results, <-results
	ok, refused := r1, r2
	if r1.Code != 0 {
		ok, refused = r2, r1
	}
	if ok.Code != 0 || refused.Code == 0 {
		t.Fatalf("want exactly one join to succeed:\n1: exit %d %s%s\n2: exit %d %s%s", r1.Code, r1.Stdout, r1.Stderr, r2.Code, r2.Stdout, r2.Stderr)
	}
	// A loser refused at the redemption waits for the winner's outcome and
	// ends with the sentence of a reused token, not with "come back when it
	// is given back". One so late that the winner had redeemed before its
	// preflight is refused there, and is told the join under way may be
	// given back (the cluster cannot tell it from a join cut off).
	switch all := refused.Stdout + refused.Stderr; {
	case strings.Contains(all, "waiting up to") && !strings.Contains(all, "single-use"):
		// The winner took longer than the wait (a loaded machine).
		t.Logf("the winner's join outlasted the loser's wait")
		oneSentence(t, refused, "already used by node2, and that join has not finished")
	case strings.Contains(all, "==> Joining cluster"):
		oneSentence(t, refused, "already used by node2; tokens are single-use")
	default:
		t.Logf("the other joiner was refused at its preflight")
		oneSentence(t, refused, "already used by node2")
	}
	st := mustStatus(t, n1)
	if len(st.Members) != 2 {
		t.Fatalf("members after the race: %+v", st.Members)
	}
	out := n1.MustRun(t, "cluster", "tokens", "list")
	if !strings.Contains(out, "used by node2") {
		t.Fatalf("tokens list should say who used the token:\n%s", out)
	}
}
