package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRestartsCrashedProcess(t *testing.T) {
	dir := t.TempDir()
	s := New(nil, nil)
	s.MinBackoff = 10 * time.Millisecond
	// Each run appends a line and exits: the supervisor must start it again.
	spec := Spec{Name: "crashy", Path: "/bin/sh", Args: []string{"-c", "echo run >> " + filepath.Join(dir, "runs") + "; exit 3"}, LogPath: filepath.Join(dir, "log")}
	if err := s.Start(spec); err != nil {
		t.Fatal(err)
	}
	defer s.StopAll(time.Second)
	waitFor(t, "three runs", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "runs"))
		return strings.Count(string(b), "run") >= 3
	})
	st, ok := s.Status("crashy")
	if !ok || st.Restarts < 2 || !strings.Contains(st.LastExit, "exit status 3") {
		t.Fatalf("state: %+v", st)
	}
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
	if err := s.Stop("sleeper", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := syscallKill0(st.Pid); err == nil {
		t.Fatalf("pid %d still alive after Stop", st.Pid)
	}
	if _, ok := s.Status("sleeper"); ok {
		t.Fatal("still supervised")
	}
	if len(s.Names()) != 0 {
		t.Fatal("names not empty")
	}
}

func TestStopKillsStubbornProcess(t *testing.T) {
	s := New(nil, nil)
	if err := s.Start(Spec{Name: "stubborn", Path: "/bin/sh", Args: []string{"-c", "trap '' TERM; sleep 60 & wait; sleep 60"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	if err := s.Stop("stubborn", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 300*time.Millisecond {
		t.Fatal("returned before the TERM timeout: the trap was not exercised")
	}
}

func TestOneShotLeavesSupervisor(t *testing.T) {
	s := New(nil, nil)
	if err := s.Start(Spec{Name: "once", Path: "/bin/sh", Args: []string{"-c", "exit 0"}, OneShot: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one-shot to leave", func() bool { _, ok := s.Status("once"); return !ok })
	// It can be started again under the same name.
	if err := s.Start(Spec{Name: "once", Path: "/bin/sleep", Args: []string{"5"}, OneShot: true}); err != nil {
		t.Fatal(err)
	}
	s.StopAll(time.Second)
}

func TestStopStrayChecksCommandLine(t *testing.T) {
	dir := t.TempDir()
	s := New(nil, nil)
	if err := s.Start(Spec{Name: "stray", Path: "/bin/sleep", Args: []string{"61"}}); err != nil {
		t.Fatal(err)
	}
	defer s.StopAll(time.Second)
	st, _ := s.Status("stray")
	pidFile := filepath.Join(dir, "pid")
	if err := os.WriteFile(pidFile, []byte(fmt.Sprint(st.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A marker that is not on its command line: the process is left alone.
	if found, err := StopStray(pidFile, "--defaults-file=/other", time.Second); found || err != nil {
		t.Fatalf("unrelated process touched: %v %v", found, err)
	}
	if syscallKill0(st.Pid) != nil {
		t.Fatal("process died")
	}
	if found, err := StopStray(pidFile, "61", 2*time.Second); !found || err != nil {
		t.Fatalf("stray not stopped: %v %v", found, err)
	}
	if found, _ := StopStray(filepath.Join(dir, "missing"), "x", time.Second); found {
		t.Fatal("missing pid file found something")
	}
}
