// Package supervisor supervises the child processes cloudd runs for a node's
// roles (mariadbd, the Ceph daemons, LXD, keepalived, HAProxy): it starts
// them, restarts them with backoff when they exit, stops them, reports their
// state and keeps their logs bounded.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Spec describes one supervised process. Configuration belongs in files the
// process reads (e.g. a defaults-file), never secrets on the command line.
type Spec struct {
	// Name is unique within a supervisor, e.g. "mariadb-identity".
	Name string
	Path string
	Args []string
	Env  []string
	// LogPath receives stdout and stderr (appended).
	LogPath string
	// Logs are further files the process writes itself, opened for
	// appending (a daemon's own log file): TrimLogs bounds them too.
	Logs []string
	// OneShot processes are not restarted: when one exits it leaves the
	// supervisor, and its owner decides what to start next (Galera members
	// must not blindly restart with the arguments that bootstrapped them).
	OneShot bool
}

// Process is a started child.
type Process interface {
	Pid() int
	Wait() error
	Signal(sig os.Signal) error
}

// Runner starts processes; ExecRunner is the real one. Tests of restart
// logic pass their own.
type Runner interface {
	Start(spec Spec) (Process, error)
}

// ExecRunner starts real processes, each as the leader of its own process
// group: stopping one signals the whole group, so the helpers it runs (an SST
// script, rsync) end with it, and when the leader exits whatever is left of
// its group is killed. Supervised programs must therefore stay in the
// foreground. Children get SIGTERM when cloudd dies, unless they drop
// privileges (mariadbd does, which clears that signal), and a SIGKILL of
// cloudd's own group no longer reaches them: owners must clear strays left by
// a killed cloudd before starting again (see StopStray).
type ExecRunner struct{}

// execProc is a started child that leads its own process group (pgid == pid).
type execProc struct {
	cmd *exec.Cmd

	mu sync.Mutex
	// reaped is set just before the leader is reaped. Until then its
	// zombie holds the process-group id, so signalling -pid cannot reach
	// an unrelated group that reused the number.
	reaped bool
}

func (p *execProc) Pid() int { return p.cmd.Process.Pid }

// Wait waits for the leader to exit, kills what is left of its group while
// the leader's zombie still holds the group id, then reaps the leader.
func (p *execProc) Wait() error {
	pid := p.cmd.Process.Pid
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	p.mu.Lock()
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	p.reaped = true
	p.mu.Unlock()
	return p.cmd.Wait()
}

// Signal sends sig to the child's whole process group.
func (p *execProc) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("signal %v: not a syscall.Signal", sig)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, s); err != nil {
		return fmt.Errorf("signal process group %d: %w", p.cmd.Process.Pid, err)
	}
	return nil
}

// Start implements Runner.
func (ExecRunner) Start(spec Spec) (Process, error) {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append(os.Environ(), spec.Env...)
	if spec.LogPath != "" {
		f, err := os.OpenFile(spec.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("open log of %s: %w", spec.Name, err)
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	return &execProc{cmd: cmd}, nil
}

// State is what the supervisor knows about one process.
type State struct {
	Name     string    `json:"name"`
	Running  bool      `json:"running"`
	Pid      int       `json:"pid,omitempty"`
	Restarts int       `json:"restarts"`
	LastExit string    `json:"last_exit,omitempty"`
	Since    time.Time `json:"since"`
}

type proc struct {
	spec   Spec
	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	// stopping is set by Stop; once it is, watch starts no new process, so
	// the process Stop signals is the last one.
	stopping bool
	// restarting is non-nil while watch starts a new process, and closed
	// when p.cur holds it: Stop waits for it before choosing what to signal.
	restarting chan struct{}
	cur        Process
	state      State
}

// Supervisor keeps a set of processes running.
type Supervisor struct {
	runner Runner
	log    *slog.Logger
	// MinBackoff and MaxBackoff bound the wait before a restart; the wait
	// doubles after each quick crash and resets once a process stays up for StableAfter.
	MinBackoff, MaxBackoff, StableAfter time.Duration

	mu    sync.Mutex
	procs map[string]*proc
}

// New returns a supervisor using runner (nil means ExecRunner).
func New(runner Runner, log *slog.Logger) *Supervisor {
	if runner == nil {
		runner = ExecRunner{}
	}
	if log == nil {
		log = slog.Default()
	}
	return &Supervisor{runner: runner, log: log, MinBackoff: 500 * time.Millisecond, MaxBackoff: 30 * time.Second, StableAfter: time.Minute, procs: map[string]*proc{}}
}

// ErrRunning means a process of that name is already supervised.
var ErrRunning = errors.New("already supervised")

// Start starts spec and keeps it running until Stop. The first start's error is returned.
func (s *Supervisor) Start(spec Spec) error {
	s.mu.Lock()
	if _, ok := s.procs[spec.Name]; ok {
		s.mu.Unlock()
		return fmt.Errorf("%s: %w", spec.Name, ErrRunning)
	}
	p0, err := s.runner.Start(spec)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{spec: spec, cancel: cancel, done: make(chan struct{}), cur: p0,
		state: State{Name: spec.Name, Running: true, Pid: p0.Pid(), Since: time.Now()}}
	s.procs[spec.Name] = p
	s.mu.Unlock()
	s.log.Info("started", "service", spec.Name, "pid", p0.Pid())
	go s.watch(ctx, p)
	return nil
}

func (s *Supervisor) watch(ctx context.Context, p *proc) {
	defer close(p.done)
	backoff := s.MinBackoff
	for {
		p.mu.Lock()
		cur := p.cur
		p.mu.Unlock()
		started := time.Now()
		err := cur.Wait()
		p.mu.Lock()
		p.state.Running, p.state.Pid = false, 0
		p.state.LastExit = exitText(err)
		p.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		if p.spec.OneShot {
			s.log.Warn("exited", "service", p.spec.Name, "exit", exitText(err))
			s.mu.Lock()
			if s.procs[p.spec.Name] == p {
				delete(s.procs, p.spec.Name)
			}
			s.mu.Unlock()
			return
		}
		if time.Since(started) > s.StableAfter {
			backoff = s.MinBackoff
		}
		s.log.Warn("exited; restarting", "service", p.spec.Name, "exit", exitText(err), "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff *= 2
		if backoff > s.MaxBackoff {
			backoff = s.MaxBackoff
		}
		// Restart only if Stop has not begun, and let a Stop that begins
		// meanwhile wait for p.cur: otherwise the new child would be one
		// nobody signals.
		p.mu.Lock()
		if p.stopping {
			p.mu.Unlock()
			return
		}
		restarting := make(chan struct{})
		p.restarting = restarting
		p.mu.Unlock()
		np, err := s.runner.Start(p.spec)
		if err != nil {
			s.log.Error("restart failed", "service", p.spec.Name, "error", err)
			// Try again after the next backoff through a process that exits at once.
			np = failedProc{err: err}
		}
		p.mu.Lock()
		p.cur, p.restarting = np, nil
		p.state.Restarts++
		if _, failed := np.(failedProc); !failed {
			p.state.Running, p.state.Pid, p.state.Since = true, np.Pid(), time.Now()
		}
		p.mu.Unlock()
		close(restarting)
	}
}

type failedProc struct{ err error }

func (f failedProc) Pid() int               { return 0 }
func (f failedProc) Wait() error            { return f.err }
func (f failedProc) Signal(os.Signal) error { return f.err }

func exitText(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// Stop sends SIGTERM to the process's group, waits up to timeout, then
// SIGKILLs the group. A restart that was pending is cancelled; one already
// under way finishes first and its process is the one stopped. Stopping an
// unknown name is a no-op.
func (s *Supervisor) Stop(name string, timeout time.Duration) error {
	s.mu.Lock()
	p, ok := s.procs[name]
	delete(s.procs, name)
	s.mu.Unlock()
	if !ok {
		return nil
	}
	p.mu.Lock()
	p.stopping = true
	restarting := p.restarting
	p.mu.Unlock()
	p.cancel()
	if restarting != nil {
		<-restarting
	}
	p.mu.Lock()
	cur := p.cur
	p.mu.Unlock()
	_ = cur.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = cur.Signal(syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("stop %s: pid %d still running 10s after SIGKILL", name, cur.Pid())
		}
	}
	s.log.Info("stopped", "service", name)
	return nil
}

// StopAll stops every process.
func (s *Supervisor) StopAll(timeout time.Duration) {
	s.mu.Lock()
	names := make([]string, 0, len(s.procs))
	for n := range s.procs {
		names = append(names, n)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func(n string) { defer wg.Done(); _ = s.Stop(n, timeout) }(n)
	}
	wg.Wait()
}

// Status returns the state of name, and whether it is supervised.
func (s *Supervisor) Status(name string) (State, bool) {
	s.mu.Lock()
	p, ok := s.procs[name]
	s.mu.Unlock()
	if !ok {
		return State{Name: name}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state, true
}

// Names lists supervised processes.
func (s *Supervisor) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.procs))
	for n := range s.procs {
		out = append(out, n)
	}
	return out
}

// StopStray stops a process left running by an earlier cloudd: the pid in
// pidFile, but only if its command line contains marker (so an unrelated
// process that reused the pid is never touched). The process is held through
// a pidfd, so a pid reused while it stops is never signalled, and a stray
// reparented to an init that reaps late counts as stopped once it has exited
// (it is then a zombie). If the stray leads its own process group (as
// ExecRunner's children do), the group is signalled too. It returns whether
// one was found.
func StopStray(pidFile, marker string, timeout time.Duration) (bool, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return false, nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return false, nil
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false, nil // no such process
	}
	defer unix.Close(pidfd)
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), marker) {
		return false, nil
	}
	// Still the same process (the pidfd's) after reading its command line:
	// then the command line was its own, not a reused pid's.
	if exitedPidfd(pidfd, 0) {
		return false, nil
	}
	group, _ := syscall.Getpgid(pid)
	signal := func(sig syscall.Signal) {
		if group == pid {
			_ = syscall.Kill(-pid, sig)
		}
		_ = unix.PidfdSendSignal(pidfd, sig, nil, 0)
	}
	signal(syscall.SIGTERM)
	if exitedPidfd(pidfd, timeout) {
		return true, nil
	}
	signal(syscall.SIGKILL)
	if exitedPidfd(pidfd, 10*time.Second) {
		return true, nil
	}
	return true, fmt.Errorf("stray process %d did not stop 10s after SIGKILL", pid)
}

// exitedPidfd waits up to timeout for the process behind pidfd to exit.
func exitedPidfd(pidfd int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		ms := int(time.Until(deadline) / time.Millisecond)
		if ms < 0 {
			ms = 0
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}

// TrimLogs bounds the logs of the supervised processes (LogPath and Logs):
// a log larger than max bytes is copied to <log>.1, replacing the copy
// made before, and emptied in place. The process keeps its open file:
// opened for appending, its next write lands at the new end (what
// logrotate calls copytruncate; lines written during the copy are lost).
// So a log takes at most about twice max, however long a process floods
// it. It returns the logs it trimmed; a log it could not trim is an error
// and the others are still trimmed.
func (s *Supervisor) TrimLogs(max int64) ([]string, error) {
	s.mu.Lock()
	var paths []string
	for _, p := range s.procs {
		if p.spec.LogPath != "" {
			paths = append(paths, p.spec.LogPath)
		}
		paths = append(paths, p.spec.Logs...)
	}
	s.mu.Unlock()
	sort.Strings(paths)
	var trimmed []string
	var errs []error
	for i, path := range paths {
		if i > 0 && paths[i-1] == path {
			continue
		}
		done, err := trimLog(path, max)
		if err != nil {
			errs = append(errs, err)
		}
		if done {
			trimmed = append(trimmed, path)
		}
	}
	return trimmed, errors.Join(errs...)
}

// trimLog copies path to path.1 and empties it when it is over max bytes.
func trimLog(path string, max int64) (bool, error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil || fi.Size() <= max {
		return false, err
	}
	src, err := os.Open(path)
	if err != nil {
		return false, fmt.Errorf("trim log %s: %w", path, err)
	}
	defer src.Close()
	old := path + ".1"
	tmp, err := os.OpenFile(old+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, fi.Mode().Perm())
	if err != nil {
		return false, fmt.Errorf("trim log %s: %w", path, err)
	}
	_, err = io.Copy(tmp, src)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(old+".tmp", old)
	}
	if err != nil {
		_ = os.Remove(old + ".tmp")
		return false, fmt.Errorf("trim log %s: keep a copy: %w", path, err)
	}
	if err := os.Truncate(path, 0); err != nil {
		return false, fmt.Errorf("trim log %s: %w", path, err)
	}
	return true, nil
}
