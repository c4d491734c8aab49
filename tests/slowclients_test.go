package tests

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/tests/harness"
)

// TestSlowClients: a client that opens a hundred connections to port 7443
// and never finishes them (half send a request's headers a byte at a time
// after the TLS handshake, half send nothing, not even a TLS hello) is cut
// off by cloudd's header timeout, while a normal request from another
// machine is answered meanwhile. No timing is asserted: the helper waits up
// to two minutes for every connection to be closed by the server (the
// timeout is 10 s per phase).
func TestSlowClients(t *testing.T) {
	c := harness.New(t, 3)
	n1, slow, other := c.Node(1), c.Node(2), c.Node(3)
	bootstrap(t, n1, "compute")
	if !strings.Contains(n1.Log(), "cluster API limits set") {
		t.Fatalf("cloudd did not set its API limits:\n%s", n1.LogTail(30))
	}
	loris := buildHelper(t, "slowloris")
	flood := buildHelper(t, "tokenflood")
	addr := n1.IP + ":7443"
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", slow.NS, loris, addr, "100", "2m")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "open 100" {
		t.Fatalf("slowloris did not open its connections: %q %s", lines.Text(), stderr.String())
	}

	// The daemon still answers others while the slow connections are open.
	out, err := other.Output(ctx, flood, "once", addr, "0")
	if err != nil || !strings.HasPrefix(string(out), "200 ") {
		t.Fatalf("a normal request while 100 slow connections are open: %v %s", err, out)
	}

	var last string
	for lines.Scan() {
		last = lines.Text()
	}
	err = cmd.Wait()
	if err != nil || last != "closed 100" {
		t.Fatalf("cloudd did not close the slow connections: %v, last line %q, %s\ncloudd: %s", err, last, stderr.String(), n1.LogTail(20))
	}
	// net/http's line for each cut connection goes through cloudd's log,
	// rate-limited, never straight to its standard error.
	b, err := os.ReadFile(n1.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	routed := 0
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.Contains(l, "TLS handshake error") {
			continue
		}
		if !strings.Contains(l, `msg="cluster API"`) {
			t.Fatalf("a net/http error line bypassed cloudd's log: %q", l)
		}
		routed++
	}
	if routed == 0 {
		t.Fatalf("no handshake error of the cut connections in cloudd's log:\n%s", n1.LogTail(20))
	}
	t.Logf("%d of the cut connections' handshake errors logged (at most %d a second)", routed, 10)

	// And still answers after them (this is the source's second wrong
	// secret: the guard may answer 429 and a wait; either is an answer).
	if out, err := other.Output(ctx, flood, "once", addr, "0"); err != nil || !(strings.HasPrefix(string(out), "200 ") || strings.HasPrefix(string(out), "429 ")) {
		t.Fatalf("a normal request after the slow connections: %v %s", err, out)
	}
}
