package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
	"github.com/hinshun/vt10x"

	"github.com/cloudctl/cloudctl/bootstrap"
)

var (
	buildBinOnce sync.Once
	buildBinPath string
	buildBinErr  error
)

// cloudctlBinary builds the real cloudctl once for the terminal tests.
func cloudctlBinary(t *testing.T) string {
	t.Helper()
	buildBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cloudctl-pty-")
		if err != nil {
			buildBinErr = err
			return
		}
		buildBinPath = filepath.Join(dir, "cloudctl")
		cmd := exec.Command("go", "build", "-tags", "pacific libsqlite3", "-o", buildBinPath, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildBinErr = err
			t.Logf("%s", out)
		}
	})
	if buildBinErr != nil {
		t.Fatalf("build cloudctl: %v", buildBinErr)
	}
	return buildBinPath
}

// terminalSession runs a command with stdin and stderr on a pseudo-terminal
// emulated by vt10x (which answers survey's cursor-position queries), and
// stdout on a pipe.
type terminalSession struct {
	t      *testing.T
	ptmx   *os.File
	cmd    *exec.Cmd
	stdout bytes.Buffer

	mu     sync.Mutex
	raw    bytes.Buffer // everything the program wrote to the terminal
	seen   int          // expect searches after this offset of the plain text
	exited chan struct{}
	err    error
}

var ansiRE = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]`)

func startTerminal(t *testing.T, bin string, args ...string) *terminalSession {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 60, Cols: 220}); err != nil {
		t.Fatal(err)
	}
	s := &terminalSession{t: t, ptmx: ptmx, exited: make(chan struct{})}
	vt := vt10x.New(vt10x.WithWriter(ptmx), vt10x.WithSize(220, 60))
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdin, s.cmd.Stderr, s.cmd.Stdout = tty, tty, &s.stdout
	s.cmd.Env = append(os.Environ(), "TERM=xterm")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	go func() {
		buf := make([]byte, 4096)
		var pending []byte
		for {
			n, err := ptmx.Read(buf)
			s.mu.Lock()
			s.raw.Write(buf[:n])
			pending = append(pending, buf[:n]...)
			w, _ := vt.Write(pending)
			pending = pending[w:]
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { s.err = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		ptmx.Close()
	})
	return s
}

func (s *terminalSession) plain() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return ansiRE.ReplaceAllString(s.raw.String(), "")
}

// expect waits until text appears after the previous match.
func (s *terminalSession) expect(text string) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p := s.plain()
		if i := strings.Index(p[min(s.seen, len(p)):], text); i >= 0 {
			s.seen += i + len(text)
			time.Sleep(80 * time.Millisecond) // let the prompt start reading
			return
		}
		select {
		case <-s.exited:
			s.t.Fatalf("cloudctl exited (%v) before showing %q; terminal:\n%s", s.err, text, p)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%q not shown in 20s; terminal:\n%s", text, p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *terminalSession) send(keys string) {
	s.t.Helper()
	if _, err := s.ptmx.Write([]byte(keys)); err != nil {
		s.t.Fatal(err)
	}
}

func (s *terminalSession) wait() error {
	s.t.Helper()
	select {
	case <-s.exited:
		return s.err
	case <-time.After(30 * time.Second):
		s.t.Fatalf("cloudctl did not exit; terminal:\n%s", s.plain())
		return nil
	}
}

const (
	keyDown  = "\x1b[B"
	keyUp    = "\x1b[A"
	keyEnter = "\r"
	keyCtrlC = "\x03"
)

// TestGuidedDryRunInTerminal drives `cloudctl bootstrap --guided --dry-run`
// on a real (pseudo-)terminal against a ghw snapshot of a 66 GiB server,
// answers every prompt, and checks the preseed printed on stdout: it parses,
// holds the answers, and replays to the same plan.
func TestGuidedDryRunInTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cloudctl")
	}
	addrs, err := bootstrap.LocalAddresses()
	if err != nil || len(addrs) == 0 {
		t.Skip("this machine has no network address to offer")
	}
	defAddr, _ := bootstrap.DefaultAddress()
	bin := cloudctlBinary(t)
	snap := snapshotFile(t, "linux-amd64-8581cf3a529e5d8b97ea876eade2f60d")
	state := t.TempDir() // no daemon: a dry run needs none

	s := startTerminal(t, bin, "--state-dir", state, "bootstrap", "--guided", "--dry-run", "--snapshot", snap)
	s.expect("Hardware of snapshot linux-amd64-8581cf3a529e5d8b97ea876eade2f60d.tar.gz")
	s.expect("66 GiB installed")
	s.expect("Node name")
	s.send("edge1" + keyEnter)
	s.expect("Address for cluster traffic")
	s.send(keyEnter) // the address on the default route
	s.expect("Roles for this node")
	s.send(keyDown + keyDown + " " + keyEnter) // all three preselected: unselect storage
	s.expect("MySQL topology (66 GiB installed, at least 32 GiB → one MySQL per service)")
	s.send(keyUp + keyEnter) // the default is multi; choose single
	s.expect("Keep the compute role?")
	s.send("y" + keyEnter)
	s.expect("Floating address for the HA control endpoint")
	s.send("10.77.0.100" + keyEnter)
	s.expect("Region label")
	s.send("eu-west" + keyEnter)
	s.expect("Availability-zone label")
	s.send(keyEnter)
	s.expect("Plan: edge1 bootstraps the new cluster \"cloud\"")
	s.expect("Print this plan as a preseed?")
	s.send(keyEnter)
	if err := s.wait(); err != nil {
		t.Fatalf("exit: %v; terminal:\n%s", err, s.plain())
	}

	out := s.stdout.String()
	if strings.Contains(out, "Node name") || strings.Contains(out, "\x1b[") {
		t.Fatalf("prompts leaked into stdout:\n%q", out)
	}
	ps, err := bootstrap.ParsePreseed("stdout", []byte(out), nil)
	if err != nil {
		t.Fatalf("the printed preseed does not parse: %v\n%s", err, out)
	}
	n := ps.Nodes[0]
	if len(ps.Nodes) != 1 || n.Name != "edge1" || strings.Join(n.Roles, ",") != "control,compute" || n.Region != "eu-west" || n.Zone != "" || n.Disks != nil {
		t.Fatalf("node entry does not hold the answers: %+v\n%s", n, out)
	}
	if defAddr != "" && n.Address != defAddr+":7443" {
		t.Fatalf("address %q, want the default %s", n.Address, defAddr)
	}
	if ps.Cluster.MySQLTopology != bootstrap.TopologySingle || ps.Cluster.FloatingAddress != "10.77.0.100" || ps.Cluster.Name != "cloud" {
		t.Fatalf("site settings do not hold the answers: %+v\n%s", ps.Cluster, out)
	}
	if !strings.Contains(out, "# set to single (one MariaDB instance for all services), overriding the hardware's choice of multi: 66 GiB installed RAM") {
		t.Fatalf("the topology decision is not explained:\n%s", out)
	}

	// The same answers from the file give the same plan, printed the same way.
	file := filepath.Join(t.TempDir(), "site.yaml")
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	replay := exec.Command(bin, "--state-dir", state, "bootstrap", "--dry-run", "--preseed", file, "--snapshot", snap)
	again, err := replay.Output()
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	if body(string(again)) != body(out) {
		t.Fatalf("replayed preseed differs:\n%s\n---\n%s", again, out)
	}
	if entries, _ := os.ReadDir(state); len(entries) != 0 {
		t.Fatalf("a dry run wrote into the state directory: %v", entries)
	}
}

// body drops the leading comment lines (they name how the file was made).
func body(s string) string {
	lines := strings.Split(s, "\n")
	for len(lines) > 0 && strings.HasPrefix(lines[0], "#") {
		lines = lines[1:]
	}
	return strings.Join(lines, "\n")
}

// TestGuidedCtrlCInTerminal: Ctrl-C at a prompt stops the wizard, prints
// one sentence and nothing on stdout, and exits non-zero.
func TestGuidedCtrlCInTerminal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cloudctl")
	}
	if addrs, err := bootstrap.LocalAddresses(); err != nil || len(addrs) == 0 {
		t.Skip("this machine has no network address to offer")
	}
	bin := cloudctlBinary(t)
	state := t.TempDir()
	s := startTerminal(t, bin, "--state-dir", state, "bootstrap", "--guided", "--snapshot", snapshotFile(t, "linux-amd64-8581cf3a529e5d8b97ea876eade2f60d"), "--dry-run")
	s.expect("Node name")
	s.send(keyEnter)
	s.expect("Address for cluster traffic")
	s.send(keyCtrlC)
	err := s.wait()
	if err == nil {
		t.Fatal("Ctrl-C: exit 0")
	}
	s.expect("Error: cancelled: nothing was changed")
	if s.stdout.Len() != 0 {
		t.Fatalf("Ctrl-C printed on stdout: %q", s.stdout.String())
	}
}

// snapshotFile returns a ghw snapshot shipped in ghw's module.
func snapshotFile(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/jaypipes/ghw").Output()
	if err != nil {
		t.Fatalf("go list -m github.com/jaypipes/ghw: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "testdata", "snapshots", name+".tar.gz")
}
