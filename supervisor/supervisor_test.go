package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitFor polls f until it holds; on timeout it fails with what last() says
// it saw, so a failure explains itself.
func waitFor(t *testing.T, what string, f func() bool, last func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			seen := ""
			if last != nil {
				seen = "; last seen: " + last()
			}
			t.Fatalf("timed out after 20s waiting for %s%s", what, seen)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procID names one process incarnation: a pid and its start time (field 22
// of /proc/PID/stat), so a reused pid is not mistaken for it.
type procID struct {
	pid   int
	start string
}

// statFields returns the fields of /proc/PID/stat after the command name.
func statFields(pid int) ([]string, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(s[i+1:]), true
}

func identify(t *testing.T, pid int) procID {
	t.Helper()
	f, ok := statFields(pid)
	if !ok || len(f) < 20 {
		t.Fatalf("pid %d: no /proc/%d/stat", pid, pid)
	}
	return procID{pid: pid, start: f[19]}
}

// alive reports whether the process still runs. A zombie has exited: here
// PID 1 reaps orphans late, so orphaned grandchildren linger as zombies.
func (p procID) alive() bool {
	f, ok := statFields(p.pid)
	if !ok || len(f) < 20 || f[19] != p.start {
		return false
	}
	return f[0] != "Z" && f[0] != "X"
}

// cmdline returns a process's command line with spaces for NULs.
func cmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// execd waits until pid runs program (its exec is done; until then
// /proc/PID/cmdline shows the parent's command line).
func execd(t *testing.T, pid int, program string) procID {
	t.Helper()
	waitFor(t, fmt.Sprintf("pid %d to exec %s", pid, program), func() bool {
		return strings.HasPrefix(cmdline(pid), program)
	}, func() string { return fmt.Sprintf("cmdline %q", cmdline(pid)) })
	return identify(t, pid)
}

// pidFromFile waits for a shell script to write a pid into file.
func pidFromFile(t *testing.T, file string) int {
	t.Helper()
	var pid int
	waitFor(t, "a pid in "+file, func() bool {
		b, err := os.ReadFile(file)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return false
		}
		_, err = fmt.Sscan(string(b), &pid)
		return err == nil && pid > 0
	}, nil)
	return pid
}

// recordingRunner is ExecRunner that remembers each process and how its Wait ended.
type recordingRunner struct {
	mu    sync.Mutex
	procs []*recordedProc
}

type recordedProc struct {
	Process
	mu      sync.Mutex
	waited  bool
	waitErr error
}

func (r *recordedProc) Wait() error {
	err := r.Process.Wait()
	r.mu.Lock()
	r.waited, r.waitErr = true, err
	r.mu.Unlock()
	return err
}

func (r *recordedProc) result() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.waited, r.waitErr
}

func (rr *recordingRunner) Start(spec Spec) (Process, error) {
	p, err := ExecRunner{}.Start(spec)
	if err != nil {
		return nil, err
	}
	rp := &recordedProc{Process: p}
	rr.mu.Lock()
	rr.procs = append(rr.procs, rp)
	rr.mu.Unlock()
	return rp, nil
}

func (rr *recordingRunner) all() []*recordedProc {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return append([]*recordedProc(nil), rr.procs...)
}

func TestRestartsCrashedProcess(t *testing.T) {
	dir := t.TempDir()
	s := New(nil, nil)
	s.MinBackoff = 10 * time.Millisecond
	// Each run appends a line and exits: the supervisor must start it again.
	runs := filepath.Join(dir, "runs")
	spec := Spec{Name: "crashy", Path: "/bin/sh", Args: []string{"-c", "echo run >> " + runs + "; exit 3"}, LogPath: filepath.Join(dir, "log")}
	if err := s.Start(spec); err != nil {
		t.Fatal(err)
	}
	defer s.StopAll(time.Second)
	// The state is read in the condition: a run can write its line before
	// the supervisor has counted its restart.
	var st State
	waitFor(t, "three runs, counted", func() bool {
		b, _ := os.ReadFile(runs)
		st, _ = s.Status("crashy")
		return strings.Count(string(b), "run") >= 3 && st.Restarts >= 2 && strings.Contains(st.LastExit, "exit status 3")
	}, func() string { b, _ := os.ReadFile(runs); return fmt.Sprintf("runs %q, state %+v", b, st) })
	if err := s.Start(spec); err == nil {
		t.Fatal("duplicate name accepted")
	}
}

func TestStopTerminatesAndDoesNotRestart(t *testing.T) {
	s := New(nil, nil)
	if err := s.Start(Spec{Name: "sleeper", Path: "/bin/sleep", Args: []string{"60"}}); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Status("sleeper")
	if !st.Running || st.Pid == 0 {
		t.Fatalf("not running: %+v", st)
	}
	id := execd(t, st.Pid, "/bin/sleep")
	if err := s.Stop("sleeper", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if id.alive() {
		t.Fatalf("pid %d still alive after Stop", st.Pid)
	}
	if _, ok := s.Status("sleeper"); ok {
		t.Fatal("still supervised")
	}
	if len(s.Names()) != 0 {
		t.Fatal("names not empty")
	}
}

// A process that ignores SIGTERM is killed once the timeout passes.
func TestStopKillsStubbornProcess(t *testing.T) {
	dir := t.TempDir()
	ready := filepath.Join(dir, "ready")
	r := &recordingRunner{}
	s := New(r, nil)
	// The trap is in place before it says it is ready; the sleeps inherit
	// the ignored TERM.
	script := "trap '' TERM; echo $$ > " + ready + "; sleep 60 & wait; sleep 60"
	if err := s.Start(Spec{Name: "stubborn", Path: "/bin/sh", Args: []string{"-c", script}}); err != nil {
		t.Fatal(err)
	}
	pidFromFile(t, ready)
	if err := s.Stop("stubborn", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	procs := r.all()
	if len(procs) != 1 {
		t.Fatalf("%d processes started, want 1", len(procs))
	}
	if waited, err := procs[0].result(); !waited || err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("stubborn process ended with %v (waited %v), want SIGKILL", err, waited)
	}
}

func TestOneShotLeavesSupervisor(t *testing.T) {
	s := New(nil, nil)
	if err := s.Start(Spec{Name: "once", Path: "/bin/sh", Args: []string{"-c", "exit 0"}, OneShot: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one-shot to leave", func() bool { _, ok := s.Status("once"); return !ok }, nil)
	// It can be started again under the same name.
	if err := s.Start(Spec{Name: "once", Path: "/bin/sleep", Args: []string{"5"}, OneShot: true}); err != nil {
		t.Fatal(err)
	}
	s.StopAll(time.Second)
}

// Stop reaches the helpers a process started (an SST script, rsync): the
// whole process group gets the signal.
func TestStopSignalsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	gcFile := filepath.Join(dir, "grandchild")
	s := New(nil, nil)
	script := "sleep 60 & echo $! > " + gcFile + "; wait"
	if err := s.Start(Spec{Name: "parent", Path: "/bin/sh", Args: []string{"-c", script}}); err != nil {
		t.Fatal(err)
	}
	defer s.StopAll(time.Second)
	st, _ := s.Status("parent")
	parent := identify(t, st.Pid)
	gc := execd(t, pidFromFile(t, gcFile), "sleep")
	if err := s.Stop("parent", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if parent.alive() {
		t.Fatalf("parent %d alive after Stop", parent.pid)
	}
	waitFor(t, "grandchild to die", func() bool { return !gc.alive() }, func() string { return cmdline(gc.pid) })
}

// When a supervised process exits on its own, what is left of its group
// (here a background sleep) is killed with it.
func TestExitKillsLeftoverGroup(t *testing.T) {
	dir := t.TempDir()
	gcFile := filepath.Join(dir, "grandchild")
	gcReady := filepath.Join(dir, "go")
	s := New(nil, nil)
	// The shell waits until the test has identified the grandchild, then exits.
	script := "sleep 60 & echo $! > " + gcFile + "; while [ ! -e " + gcReady + " ]; do sleep 0.01; done; exit 0"
	if err := s.Start(Spec{Name: "leaver", Path: "/bin/sh", Args: []string{"-c", script}, OneShot: true}); err != nil {
		t.Fatal(err)
	}
	defer s.StopAll(time.Second)
	gc := execd(t, pidFromFile(t, gcFile), "sleep 60")
	if err := os.WriteFile(gcReady, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one-shot to leave", func() bool { _, ok := s.Status("leaver"); return !ok }, nil)
	// The SIGKILL is sent before the leader is reaped; the grandchild dies
	// when the kernel delivers it.
	waitFor(t, "the grandchild to die with its group leader", func() bool { return !gc.alive() }, func() string { return cmdline(gc.pid) })
}

// fakeProc exits when signalled, or when exit is closed.
type fakeProc struct {
	pid     int
	once    sync.Once
	exit    chan struct{}
	mu      sync.Mutex
	signals []os.Signal
}

func newFakeProc(pid int) *fakeProc { return &fakeProc{pid: pid, exit: make(chan struct{})} }

func (f *fakeProc) Pid() int { return f.pid }
func (f *fakeProc) Wait() error {
	<-f.exit
	return errors.New("exit status 1")
}
func (f *fakeProc) Signal(sig os.Signal) error {
	f.mu.Lock()
	f.signals = append(f.signals, sig)
	f.mu.Unlock()
	f.once.Do(func() { close(f.exit) })
	return nil
}
func (f *fakeProc) signalled() []os.Signal {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]os.Signal(nil), f.signals...)
}

// gatedRunner's first process exits at once; its second Start blocks until
// release is closed, so Stop can run while a restart is under way.
type gatedRunner struct {
	mu       sync.Mutex
	started  []*fakeProc
	entered  chan struct{} // closed when the second Start begins
	release  chan struct{}
	enterOne sync.Once
}

func (g *gatedRunner) Start(Spec) (Process, error) {
	g.mu.Lock()
	n := len(g.started)
	g.mu.Unlock()
	if n == 1 {
		g.enterOne.Do(func() { close(g.entered) })
		<-g.release
	}
	p := newFakeProc(100 + n)
	if n == 0 {
		p.once.Do(func() { close(p.exit) }) // the first run crashes at once
	}
	g.mu.Lock()
	g.started = append(g.started, p)
	g.mu.Unlock()
	return p, nil
}

// Stop while a restart is under way stops the restarted child: it is the
// one signalled, Stop returns without error, and nothing starts after it.
func TestStopDuringRestart(t *testing.T) {
	g := &gatedRunner{entered: make(chan struct{}), release: make(chan struct{})}
	s := New(g, nil)
	s.MinBackoff = time.Millisecond
	if err := s.Start(Spec{Name: "flappy"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.entered:
	case <-time.After(20 * time.Second):
		t.Fatal("no restart attempted")
	}
	stopped := make(chan error, 1)
	go func() { stopped <- s.Stop("flappy", 200*time.Millisecond) }()
	// Stop has begun once the name has left the supervisor; then let the
	// restart finish.
	waitFor(t, "Stop to begin", func() bool { _, ok := s.Status("flappy"); return !ok }, nil)
	close(g.release)
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Stop: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Stop did not return")
	}
	g.mu.Lock()
	started := append([]*fakeProc(nil), g.started...)
	g.mu.Unlock()
	if len(started) != 2 {
		t.Fatalf("%d processes started, want 2", len(started))
	}
	if sigs := started[1].signalled(); len(sigs) == 0 || sigs[0] != syscall.SIGTERM {
		t.Fatalf("the restarted child got %v, want SIGTERM", sigs)
	}
}

// Stop while the restart is still waiting out its backoff cancels it.
func TestStopDuringBackoff(t *testing.T) {
	dir := t.TempDir()
	runs := filepath.Join(dir, "runs")
	r := &recordingRunner{}
	s := New(r, nil)
	s.MinBackoff = time.Hour
	if err := s.Start(Spec{Name: "crashy", Path: "/bin/sh", Args: []string{"-c", "echo run >> " + runs + "; exit 3"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first run to exit", func() bool {
		st, _ := s.Status("crashy")
		return st.LastExit != ""
	}, nil)
	if err := s.Stop("crashy", time.Second); err != nil {
		t.Fatal(err)
	}
	if n := len(r.all()); n != 1 {
		t.Fatalf("%d processes started, want 1", n)
	}
}

// A stray is a process an earlier cloudd left running: not a child of
// this supervisor. StopStray stops it, and its group, only when the marker
// is on its command line.
func TestStopStrayChecksCommandLine(t *testing.T) {
	dir := t.TempDir()
	gcFile := filepath.Join(dir, "grandchild")
	cmd := exec.Command("/bin/sh", "-c", "sleep 61 & echo $! > "+gcFile+"; wait", "stray-marker-61")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})
	// Only once the child has exec'd does /proc/PID/cmdline hold its own
	// command line.
	stray := execd(t, cmd.Process.Pid, "/bin/sh -c")
	gc := execd(t, pidFromFile(t, gcFile), "sleep 61")

	pidFile := filepath.Join(dir, "pid")
	if err := os.WriteFile(pidFile, []byte(fmt.Sprint(stray.pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A marker that is not on its command line: the process is left alone.
	if found, err := StopStray(pidFile, "--defaults-file=/other", time.Second); found || err != nil {
		t.Fatalf("unrelated process touched: %v %v", found, err)
	}
	if !stray.alive() || !gc.alive() {
		t.Fatal("a process died")
	}
	if found, err := StopStray(pidFile, "stray-marker-61", 10*time.Second); !found || err != nil {
		t.Fatalf("stray not stopped: %v %v", found, err)
	}
	select {
	case <-exited:
		if waitErr == nil || !strings.Contains(waitErr.Error(), "terminated") {
			t.Fatalf("stray ended with %v, want SIGTERM", waitErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("stray still running")
	}
	waitFor(t, "the stray's group to stop", func() bool { return !gc.alive() }, func() string { return cmdline(gc.pid) })
	if found, _ := StopStray(filepath.Join(dir, "missing"), "x", time.Second); found {
		t.Fatal("missing pid file found something")
	}
	// The pid file now names a gone process.
	if found, err := StopStray(pidFile, "stray-marker-61", time.Second); found || err != nil {
		t.Fatalf("gone process found: %v %v", found, err)
	}
}

// TestTrimLogs: a process flooding its output and a log file of its own
// (both open for appending) has both bounded while it runs: each is
// copied to .1 and emptied, and its next lines land at the start of the
// emptied file, not after a hole where the old content was.
func TestTrimLogs(t *testing.T) {
	dir := t.TempDir()
	out, own := filepath.Join(dir, "flood.out"), filepath.Join(dir, "flood.log")
	script := `exec 3>>"$1"; i=0; while :; do j=0; while [ $j -lt 50 ]; do echo "out line $i"; echo "own line $i" >&3; i=$((i+1)); j=$((j+1)); done; sleep 0.02; done`
	s := New(nil, nil)
	if err := s.Start(Spec{Name: "flood", Path: "/bin/sh", Args: []string{"-c", script, "sh", own}, LogPath: out, Logs: []string{own, filepath.Join(dir, "never-written.log")}}); err != nil {
		t.Fatal(err)
	}
	defer s.StopAll(5 * time.Second)
	const max = 4096
	size := func(p string) int64 {
		fi, err := os.Stat(p)
		if err != nil {
			return -1
		}
		return fi.Size()
	}
	waitFor(t, "both logs over the limit", func() bool { return size(out) > max && size(own) > max },
		func() string { return fmt.Sprintf("sizes %d, %d", size(out), size(own)) })
	trimmed, err := s.TrimLogs(max)
	if err != nil || len(trimmed) != 2 {
		t.Fatalf("trimmed %v, %v; want both logs", trimmed, err)
	}
	for _, p := range []string{out, own} {
		if size(p+".1") <= max {
			t.Errorf("%s.1: %d bytes; want the old content, over %d", p, size(p+".1"), max)
		}
		prefix := "out line "
		if p == own {
			prefix = "own line "
		}
		// The process goes on writing into the emptied file, from its start.
		waitFor(t, "new lines in "+p, func() bool {
			b, _ := os.ReadFile(p)
			return bytes.Count(b, []byte("\n")) >= 10
		}, func() string { return fmt.Sprintf("size %d", size(p)) })
		b, _ := os.ReadFile(p)
		if bytes.IndexByte(b, 0) >= 0 || !bytes.HasPrefix(b, []byte(prefix)) {
			t.Errorf("%s after the trim does not start with a line (%d bytes, a hole where the old content was?): %q", p, len(b), b[:min(len(b), 40)])
		}
		if bytes.HasPrefix(b, []byte(prefix+"0\n")) {
			t.Errorf("%s still starts with the first line: not emptied", p)
		}
	}
	// Under the limit: nothing is touched.
	if trimmed, err := s.TrimLogs(1 << 40); err != nil || len(trimmed) != 0 {
		t.Fatalf("under the limit: trimmed %v, %v", trimmed, err)
	}
}
