package tests

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/tests/harness"
)

// TestJoinNameBinding: a hand-written joiner redeems node2's token (as
// node2, the only name the redemption accepts) and presents the
// microcluster secret it got to microcluster's own join endpoint under
// another name: the join is refused, nothing joins, and the secret still
// lets node2 join under its own name.
func TestJoinNameBinding(t *testing.T) {
	c := harness.New(t, 3)
	n1, a, rogue := c.Node(1), c.Node(2), c.Node(3)
	bootstrap(t, n1, "compute")
	tok := token(t, n1, a.Name)
	bin := buildHelper(t, "joinas")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	out, err := rogue.Output(ctx, bin, n1.IP+":7443", tokenFile(t, rogue, tok), a.Name, rogue.Name, rogue.IP+":7443")
	if err != nil {
		t.Fatalf("joinas: %v\n%s\ncloudd: %s", err, out, n1.LogTail(30))
	}
	var secret, join string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if s, ok := strings.CutPrefix(l, "secret "); ok {
			secret = s
		}
		if s, ok := strings.CutPrefix(l, "join "); ok {
			join = s
		}
	}
	if secret == "" || strings.HasPrefix(join, "200 ") || !strings.Contains(join, "issued for another node name") {
		t.Fatalf("joining as %s with a secret redeemed for %s: want a refusal naming the binding, got %q", rogue.Name, a.Name, out)
	}
	st := mustStatus(t, n1)
	if len(st.Members) != 1 || member(st, rogue.Name) != nil {
		t.Fatalf("the refused join left members behind: %+v", st.Members)
	}

	// node2 joins with the same secret through its own cloudd.
	jt, err := api.DecodeJoinToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	jt.Secret = secret
	cl, err := client.New(a.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Join(ctx, a.Name, a.IP+":7443", jt, api.NodeInit{Roles: []string{"compute"}}); err != nil {
		t.Fatalf("%s joining with its own redeemed secret: %v\ncloudd: %s", a.Name, err, a.LogTail(30))
	}
	harness.Eventually(t, time.Minute, a.Name+" a member", func() error {
		st, err := status(t, n1)
		if err != nil {
			return err
		}
		if len(st.Members) != 2 || member(st, a.Name) == nil || member(st, rogue.Name) != nil {
			return fmt.Errorf("members %+v", st.Members)
		}
		return nil
	})
	if b, err := os.ReadFile(n1.LogPath); err == nil && strings.Contains(string(b), "panic") {
		t.Fatalf("cloudd panicked: %s", n1.LogTail(20))
	}
}
