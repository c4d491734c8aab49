package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/creack/pty"
	"github.com/hinshun/vt10x"
	"golang.org/x/sys/unix"

	"github.com/cloudctl/cloudctl/bootstrap"
)

var (
	buildBinOnce sync.Once
	buildBinPath string
	buildBinErr  error
)

// TestMain removes the binary cloudctlBinary built.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildBinPath != "" {
		_ = os.RemoveAll(filepath.Dir(buildBinPath))
	}
	os.Exit(code)
}

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

	fd int // the master, in blocking mode

	// mu guards the terminal's output: the reader reads the master and
	// feeds vt10x (which answers cursor queries) only while holding it, so
	// whoever holds mu sees no output that was read but not yet handled.
	mu      sync.Mutex
	raw     bytes.Buffer // everything the program wrote to the terminal
	pending []byte       // output vt10x has not consumed (a partial sequence)
	seen    int          // expect searches after this offset of the plain text
	// exited is closed once the program has exited AND everything it wrote
	// to the terminal has been read (the reader saw EOF/EIO), so output
	// checked after exited is complete.
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
	s := &terminalSession{t: t, ptmx: ptmx, fd: int(ptmx.Fd()), exited: make(chan struct{})}
	vt := vt10x.New(vt10x.WithWriter(ptmx), vt10x.WithSize(220, 60))
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdin, s.cmd.Stderr, s.cmd.Stdout = tty, tty, &s.stdout
	s.cmd.Env = append(os.Environ(), "TERM=xterm")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	// The reader runs until the terminal's other side is closed by every
	// process holding it: reading the master then fails (EIO) only after
	// the data buffered in the pty has been returned. It waits for output
	// without mu and reads and handles it with mu held.
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
				return
			}
			s.mu.Lock()
			n, err := syscall.Read(s.fd, buf)
			if n > 0 {
				s.raw.Write(buf[:n])
				s.pending = append(s.pending, buf[:n]...)
				w, _ := vt.Write(s.pending)
				s.pending = s.pending[w:]
			}
			s.mu.Unlock()
			if err == syscall.EINTR || err == syscall.EAGAIN {
				continue
			}
			if err != nil || n == 0 {
				return
			}
		}
	}()
	go func() {
		err := s.cmd.Wait()
		select {
		case <-readDone:
		case <-time.After(30 * time.Second):
			// A descendant still holds the terminal: do not wait for it forever.
			s.t.Logf("terminal still open 30s after cloudctl exited")
		}
		s.err = err
		close(s.exited)
	}()
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
	const wait = 3 * time.Minute
	deadline := time.Now().Add(wait)
	for {
		// Read whether the program is done before looking at the output:
		// once it is, the output is complete, so a miss then is final.
		var done bool
		select {
		case <-s.exited:
			done = true
		default:
		}
		p := s.plain()
		if i := strings.Index(p[min(s.seen, len(p)):], text); i >= 0 {
			s.seen += i + len(text)
			return
		}
		if done {
			s.t.Fatalf("cloudctl exited (%v) without showing %q; terminal:\n%s", s.err, text, p)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%q not shown in %s; terminal:\n%s", text, wait, p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitingForKeys reports whether a prompt is reading keys: the terminal is
// in the raw mode a prompt sets after drawing itself (no line editing, and
// Ctrl-C is a key, not a SIGINT the prompt never sees) and a thread of the
// program is blocked in read(0). Keys sent then may still arrive while the
// prompt asks the terminal for the cursor position: cloudctl's TypeAhead
// reader keeps them (survey alone dropped keys that came with the answer).
// On Linux TCGETS on the master returns the terminal's (the slave's) settings.
func (s *terminalSession) waitingForKeys() bool {
	var tio syscall.Termios
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(s.fd), syscall.TCGETS, uintptr(unsafe.Pointer(&tio))); errno != 0 ||
		tio.Lflag&(syscall.ICANON|syscall.ISIG) != 0 {
		return false
	}
	return blockedReadingStdin(s.cmd.Process.Pid)
}

// blockedReadingStdin reports whether a thread of pid is in read(0, ...)
// (/proc/PID/task/TID/syscall starts with the syscall number and its first
// argument).
func blockedReadingStdin(pid int) bool {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/syscall", pid, task.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) >= 2 && f[0] == strconv.Itoa(int(syscall.SYS_READ)) && f[1] == "0x0" {
			return true
		}
	}
	return false
}

// send types keys once a prompt is waiting for them.
func (s *terminalSession) send(keys string) {
	s.t.Helper()
	const wait = 3 * time.Minute
	deadline := time.Now().Add(wait)
	for !s.waitingForKeys() {
		select {
		case <-s.exited:
			s.t.Fatalf("cloudctl exited (%v) before reading %q; terminal:\n%s", s.err, keys, s.plain())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no prompt waited for keys within %s; terminal:\n%s", wait, s.plain())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := s.ptmx.Write([]byte(keys)); err != nil {
		s.t.Fatal(err)
	}
}

func (s *terminalSession) wait() error {
	s.t.Helper()
	select {
	case <-s.exited:
		return s.err
	case <-time.After(3 * time.Minute):
		s.t.Fatalf("cloudctl did not exit within 3m; terminal:\n%s", s.plain())
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
