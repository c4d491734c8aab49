package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/tests/harness"
)

// TestSlowClients: a client that opens sixty connections to port 7443
// and never finishes them (half send a request's headers a byte at a time
// after the TLS handshake, half send nothing, not even a TLS hello) is cut
// off by cloudd's header timeout, while a normal request from another
// machine is answered meanwhile; one that sends whole headers and then its
// body a byte at a time to an untrusted endpoint is cut by the body
// deadline. No timing is asserted: the helper waits up
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
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", slow.NS, loris, addr, "60", "2m")
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
	if !lines.Scan() || lines.Text() != "open 60" {
		t.Fatalf("slowloris did not open its connections: %q %s", lines.Text(), stderr.String())
	}

	// The daemon still answers others while the slow connections are open.
	out, err := other.Output(ctx, flood, "once", addr, "0")
	if err != nil || !strings.HasPrefix(string(out), "200 ") {
		t.Fatalf("a normal request while 60 slow connections are open: %v %s", err, out)
	}

	var last string
	for lines.Scan() {
		last = lines.Text()
	}
	err = cmd.Wait()
	if err != nil || last != "closed 60" {
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

	// Whole headers, then a body a byte every 200 ms (1000 bytes, 200 s), to
	// cloudd's untrusted endpoints that read one, to microcluster's join
	// endpoint, and to a members-only endpoint (refused before its body is
	// read; net/http then drains the body before it answers): all cut by
	// the body deadline (20 s) of a source that is not a member, with no
	// read timeout of the server's own to do it.
	out, err = slow.Output(ctx, loris, "body", addr, "3", "2m", "/1.0/token-check", "/1.0/preflight", "/cluster/1.0/cluster", "/1.0/tokens")
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "closed 12") {
		t.Fatalf("slow bodies: cloudd did not close them: %v %s\ncloudd: %s", err, out, n1.LogTail(20))
	}

	// And still answers after them (this is the source's second wrong
	// secret: the guard may answer 429 and a wait; either is an answer).
	if out, err := other.Output(ctx, flood, "once", addr, "0"); err != nil || !answered(out) {
		t.Fatalf("a normal request after the slow connections: %v %s", err, out)
	}

	// One source holding more connections than the cap: those over it are
	// cut at their handshake, its next request too; another source is
	// still served; once the holder lets go, the source is served again.
	holder := exec.CommandContext(ctx, "ip", "netns", "exec", slow.NS, loris, "hold", addr, "80")
	hin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	hout, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var herr bytes.Buffer
	holder.Stderr = &herr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			hin.Close()
			_ = holder.Wait()
		}
	}
	t.Cleanup(release)
	hl := bufio.NewScanner(hout)
	var held, refused int
	if !hl.Scan() {
		t.Fatalf("the holder printed nothing: %s", herr.String())
	}
	if _, err := fmt.Sscanf(hl.Text(), "held %d refused %d", &held, &refused); err != nil {
		t.Fatalf("the holder said %q: %v %s", hl.Text(), err, herr.String())
	}
	t.Logf("one source opened 80 connections: %d held, %d cut at their handshake", held, refused)
	if held > 64 || refused == 0 {
		t.Fatalf("one source held %d connections (cap 64), %d refused:\n%s", held, refused, n1.LogTail(20))
	}
	if out, err := slow.Output(ctx, flood, "once", addr, "0"); err == nil {
		t.Fatalf("a request from the source at its cap was served: %s", out)
	}
	if out, err := other.Output(ctx, flood, "once", addr, "0"); err != nil || !answered(out) {
		t.Fatalf("another source while one is at its cap: %v %s", err, out)
	}
	release()
	var last2 string
	served := false
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		out, err := slow.Output(ctx, flood, "once", addr, "0")
		if err == nil && answered(out) {
			served = true
			break
		}
		last2 = fmt.Sprintf("%v %s", err, out)
		time.Sleep(200 * time.Millisecond)
	}
	if !served {
		t.Fatalf("the source is not served again after closing its connections; last: %s\n%s", last2, n1.LogTail(20))
	}
	if b, err := os.ReadFile(n1.LogPath); err != nil || !strings.Contains(string(b), "refused a connection from "+slow.IP) {
		var api []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, `msg="cluster API`) {
				api = append(api, l)
			}
		}
		t.Fatalf("the refused connections are not in cloudd's log; its cluster API lines:\n%s", strings.Join(api, "\n"))
	}
}

// answered: tokenflood's "once" got an HTTP answer to its wrong secret (200
// with a refusal, or 429 once the source has tried too often).
func answered(out []byte) bool {
	return strings.HasPrefix(string(out), "200 ") || strings.HasPrefix(string(out), "429 ")
}
