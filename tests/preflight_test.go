package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/preflight"
	"github.com/cloudctl/cloudctl/tests/harness"
)

// TestPreflight: the checks before a join and `cloudctl cluster check`, on
// one cluster shared by the subtests. node3's clock can be moved (its cloudd
// reads the offset from a file); node4 is the joiner the checks refuse.
func TestPreflight(t *testing.T) {
	clock := filepath.Join(t.TempDir(), "node3-clock-offset")
	c := harness.NewWithOptions(t, 4, harness.Options{NodeArgs: map[int][]string{3: {"--clock-offset-for-tests", "@" + clock}}})
	n1, n2, n3, n4 := c.Node(1), c.Node(2), c.Node(3), c.Node(4)

	t.Run("bootstrap port taken", func(t *testing.T) {
		stop := listenIn(t, n4, 3306)
		r := n4.Run("bootstrap", "--name", "node4", "--address", n4.IP, "--role", "control")
		stop()
		refused(t, r, "port 3306/tcp", "node4", "already in use")
		if r := n4.Run("status"); r.Code == 0 || !strings.Contains(r.Stderr, "not part of a cluster yet") {
			t.Fatalf("node4 changed: %s%s", r.Stdout, r.Stderr)
		}
	})

	bootstrap(t, n1, "control")
	waitInstances(t, n1, 90*time.Second, standaloneUp)
	join(t, n1, n2, "control")
	join(t, n1, n3, "control")
	for _, nd := range []*harness.Node{n1, n2, n3} {
		waitInstances(t, nd, 5*time.Minute, galeraSize(3))
	}

	t.Run("healthy cluster all green", func(t *testing.T) {
		rep := clusterCheck(t, n2, 0)
		if rep.Worst != preflight.OK || len(rep.Members) != 3 {
			t.Fatalf("worst %s, %d members:\n%s", rep.Worst, len(rep.Members), findingsText(rep.Findings))
		}
		// Every ordered pair: cloudd's port, the MTU, the clock, Galera replication.
		for _, from := range []string{"node1", "node2", "node3"} {
			for _, to := range []string{"node1", "node2", "node3"} {
				if from == to {
					continue
				}
				for _, want := range []string{"reach 7443", "mtu 0", "clock 0", "reach 4567"} {
					if !hasFinding(rep.Findings, from, to, want) {
						t.Fatalf("no %s finding from %s to %s:\n%s", want, from, to, findingsText(rep.Findings))
					}
				}
			}
		}
		out := n1.MustRun(t, "cluster", "check")
		if !strings.Contains(out, "checks between 3 members passed") {
			t.Fatalf("table:\n%s", out)
		}
		if y := n3.MustRun(t, "cluster", "check", "--format", "yaml", "--problems"); !strings.Contains(y, "worst: ok") {
			t.Fatalf("yaml:\n%s", y)
		}
	})

	tok := token(t, n1, "node4")
	joinArgs := []string{"cluster", "join", "--token-file", tokenFile(t, n4, tok), "--role", "control", "--address", n4.IP}

	t.Run("blocked port", func(t *testing.T) {
		// The joiner's firewall drops Galera replication.
		nft(t, n4, "add table inet preflighttest",
			"add chain inet preflighttest input { type filter hook input priority 0 ; }",
			"add rule inet preflighttest input tcp dport 4567 drop")
		defer nft(t, n4, "delete table inet preflighttest")
		r := n4.Run(joinArgs...)
		refused(t, r, "cannot reach node4 on port 4567/tcp", "Galera replication")
		for _, m := range []string{"node1", "node2", "node3"} {
			if !strings.Contains(r.Stderr, m+" cannot reach node4 on port 4567/tcp") {
				t.Fatalf("%s not named:\n%s", m, r.Stderr)
			}
		}
		unchangedJoin(t, n1, 3, n4)
	})

	t.Run("port taken on the joiner", func(t *testing.T) {
		stop := listenIn(t, n4, 4568)
		defer stop()
		refused(t, n4.Run(joinArgs...), "port 4568/tcp", "needed on node4", "already in use")
		unchangedJoin(t, n1, 3, n4)
	})

	t.Run("path drops large packets", func(t *testing.T) {
		// Packets above 1200 bytes are dropped between the joiner and the
		// others, both ways (a tunnel with a smaller MTU that sends no
		// "fragmentation needed"); node4's interface still says 1500. (An
		// nft rule on the packets' length would see the unsegmented
		// offload packets of a veth, and drop small segments too.)
		if err := n4.SetPathMTU(1200); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := n4.SetPathMTU(0); err != nil {
				t.Error(err)
			}
		}()
		start := time.Now()
		r := n4.Run(joinArgs...)
		refused(t, r, "packets larger than about", "dropped between node4 and", "the interface MTU is 1500")
		// The search is good to 64 bytes; the path carries IP packets of up
		// to 1218 bytes (the MTU plus the Ethernet and VLAN headers the
		// kernel allows a veth frame).
		m := regexp.MustCompile(`larger than about (\d+) bytes`).FindStringSubmatch(r.Stderr)
		if got, _ := strconv.Atoi(m[1]); got < 1200-64 || got > 1218 {
			t.Fatalf("the largest packet found is %d bytes; the path carries about 1200", got)
		}
		t.Logf("refused after %s", time.Since(start).Round(time.Second))
		unchangedJoin(t, n1, 3, n4)
	})

	t.Run("clock refused", func(t *testing.T) {
		setOffset(t, clock, "30s")
		r := n4.Run(joinArgs...)
		refused(t, r, "the clock of node3 is ", "ahead of node4's", "NTP")
		// The offset is measured over a round trip: 29.999 s is as right
		// as 30.001 s.
		m := regexp.MustCompile(`the clock of node3 is ([0-9.]+) s ahead`).FindStringSubmatch(r.Stderr)
		if m == nil {
			t.Fatalf("no offset in the refusal: %s", r.Stderr)
		}
		if got, err := strconv.ParseFloat(m[1], 64); err != nil || got < 29 || got > 31 {
			t.Fatalf("the clock of node3 is said to be %q s ahead; it is 30 s ahead", m[1])
		}
		unchangedJoin(t, n1, 3, n4)
	})

	t.Run("clock warned", func(t *testing.T) {
		setOffset(t, clock, "1s")
		rep := clusterCheck(t, n1, 0)
		if rep.Worst != preflight.Warn || !hasFinding(rep.Findings, "node1", "node3", "clock 0") {
			t.Fatalf("worst %s:\n%s", rep.Worst, findingsText(rep.Findings))
		}
		for _, f := range rep.Findings.Of(preflight.Warn) {
			if f.Check != preflight.CheckClock || (f.From != "node3" && f.To != "node3") {
				t.Fatalf("unexpected warning: %+v", f)
			}
		}
		r := n4.Run(joinArgs...)
		if r.Code != 0 {
			t.Fatalf("join with a 1 s offset: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		if !strings.Contains(r.Stderr, "Warning: the clock of node3 is 1.0") {
			t.Fatalf("no clock warning:\n%s", r.Stderr)
		}
		saved, err := os.ReadFile(filepath.Join(n4.StateDir, "preseed.yaml"))
		if err != nil || !strings.Contains(string(saved), "the clock of node3 is 1.0") {
			t.Fatalf("warning not recorded in the saved preseed (%v):\n%s", err, saved)
		}
		setOffset(t, clock, "0s")
	})
}

// refused checks that a command failed with the preflight refusal and that
// its error names everything in want.
func refused(t testing.TB, r harness.Result, want ...string) {
	t.Helper()
	if r.Code == 0 {
		t.Fatalf("expected a refusal, got success:\n%s%s", r.Stdout, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "Error: the preflight checks refused") || !strings.Contains(r.Stderr, "nothing was changed") {
		t.Fatalf("not a preflight refusal:\n%s", r.Stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Fatalf("refusal does not say %q:\n%s", w, r.Stderr)
		}
	}
	t.Logf("refused:\n%s", r.Stderr)
}

// unchangedJoin checks that a refused join changed nothing: the members,
// the joiner, and the token still pending.
func unchangedJoin(t *testing.T, boot *harness.Node, members int, joiner *harness.Node) {
	t.Helper()
	unchanged(t, boot, members, joiner)
	var ts []api.Token
	if err := json.Unmarshal([]byte(boot.MustRun(t, "cluster", "tokens", "list", "--format", "json")), &ts); err != nil {
		t.Fatal(err)
	}
	for _, tk := range ts {
		if tk.Name == joiner.Name && tk.State == api.TokenPending {
			return
		}
	}
	t.Fatalf("the token for %s is no longer pending: %+v", joiner.Name, ts)
}

// clusterCheck runs `cloudctl cluster check --format json` on nd.
func clusterCheck(t testing.TB, nd *harness.Node, wantCode int) preflight.Report {
	t.Helper()
	r := nd.Run("cluster", "check", "--format", "json")
	var rep preflight.Report
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("cluster check json (exit %d): %v\n%s%s", r.Code, err, r.Stdout, r.Stderr)
	}
	if r.Code != wantCode {
		t.Fatalf("cluster check: exit %d, want %d\n%s%s", r.Code, wantCode, findingsText(rep.Findings), r.Stderr)
	}
	return rep
}

// hasFinding: a finding from → to of "CHECK PORT" that passed (port 0: any).
func hasFinding(fs preflight.Findings, from, to, what string) bool {
	var check string
	var port int
	fmt.Sscanf(what, "%s %d", &check, &port)
	for _, f := range fs {
		if f.From == from && f.To == to && f.Check == check && (port == 0 || f.Port == port) && f.Severity != preflight.Fail {
			return true
		}
	}
	return false
}

func findingsText(fs preflight.Findings) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "%s %s->%s %s %d %s: %s\n", f.Severity, f.From, f.To, f.Check, f.Port, f.Figure, f.Text())
	}
	return b.String()
}

func setOffset(t testing.TB, file, d string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(d+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// nft runs nft commands inside nd's namespace.
func nft(t testing.TB, nd *harness.Node, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		if out, err := nd.Exec(context.Background(), "nft", strings.Fields(c)...); err != nil {
			t.Fatalf("nft %s on %s: %v: %s", c, nd.Name, err, out)
		}
	}
}

// listenIn holds a TCP port open inside nd's namespace (another program
// taking it) until stop is called, or the test ends.
func listenIn(t testing.TB, nd *harness.Node, port int) (stop func()) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", nd.NS, "socat", fmt.Sprintf("TCP-LISTEN:%d,reuseaddr,fork", port), "SYSTEM:echo busy")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a listener on %s:%d: %v", nd.Name, port, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	t.Cleanup(stop)
	harness.Eventually(t, 10*time.Second, fmt.Sprintf("port %d taken on %s", port, nd.Name), func() error {
		select {
		case <-done:
			return fmt.Errorf("socat exited")
		default:
		}
		out, err := nd.Exec(context.Background(), "ss", "-Hltn", fmt.Sprintf("sport = :%d", port))
		if err != nil || !strings.Contains(string(out), fmt.Sprintf(":%d", port)) {
			return fmt.Errorf("not listening yet: %v %s", err, out)
		}
		return nil
	})
	return stop
}
