package snap

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// buildBinaries builds cloudctl and cloudd into $SNAP/bin of e, as the
// snap's Go part does.
func buildBinaries(t *testing.T, e *snapEnv) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binaries; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	for _, cmd := range []string{"cloudctl", "cloudd"} {
		out := filepath.Join(e.snap, "bin", cmd)
		b := exec.Command(goBin, "build", "-tags", "pacific libsqlite3", "-o", out, "../cmd/"+cmd)
		b.Env = append(os.Environ(), "CGO_ENABLED=1")
		if msg, err := b.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", cmd, err, msg)
		}
	}
	chain, err := os.ReadFile("local/cloudctl-env")
	if err != nil {
		t.Fatal(err)
	}
	e.write(filepath.Join(e.snap, "bin", "cloudctl-env"), string(chain), 0o755)
}

// syncBuffer is a bytes.Buffer safe for a child's output and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCloudd runs $SNAP/bin/cloudd through the command-chain, as snapd
// runs the cloudd app, waits for its control socket in stateDir, and stops
// it (by its pid) when the test ends.
func startCloudd(t *testing.T, e *snapEnv, stateDir string) *syncBuffer {
	t.Helper()
	cmd := exec.Command(filepath.Join(e.snap, "bin", "cloudctl-env"), filepath.Join(e.snap, "bin", "cloudd"))
	cmd.Env = e.environ()
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// done is closed (not sent on) when cloudd has exited, so both the wait
	// below and the cleanup can see it.
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	sock := filepath.Join(stateDir, "control.socket")
	const wait = 2 * time.Minute // bounds a hung test; not a speed expectation
	deadline := time.Now().Add(wait)
	for {
		if _, err := os.Stat(sock); err == nil {
			return log
		}
		select {
		case <-done:
			t.Fatalf("cloudd exited before creating %s: %v\n%s", sock, waitErr, log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s; cloudd log:\n%s", sock, wait, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cloudctl runs $SNAP/bin/cloudctl through the command-chain.
func cloudctl(t *testing.T, e *snapEnv, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(e.snap, "bin", "cloudctl-env"), append([]string{filepath.Join(e.snap, "bin", "cloudctl")}, args...)...)
	cmd.Env = e.environ()
	out, _ := cmd.CombinedOutput() // status fails before bootstrap; the message is what counts
	return string(out)
}

// TestBinariesHonourSnapPaths runs the real binaries in a simulated snap:
// cloudd keeps its state in $SNAP_COMMON/state, cloudctl looks for it there,
// and `snap set cloudctl state-dir=... log-level=debug` (the configure hook)
// moves both and raises cloudd's log detail.
func TestBinariesHonourSnapPaths(t *testing.T) {
	e := newSnapEnv(t)
	buildBinaries(t, e)
	for _, h := range []string{"hooks/install", "hooks/configure"} {
		if stderr, err := e.run(h); err != nil {
			t.Fatalf("%s: %v\n%s", h, err, stderr)
		}
	}
	state := filepath.Join(e.common, "state")

	// Without a daemon, cloudctl names the state directory it looked in.
	down := cloudctl(t, e, "status")
	if !strings.Contains(down, state) {
		t.Errorf("cloudctl status without cloudd does not mention %s:\n%s", state, down)
	}
	log := startCloudd(t, e, state)
	if strings.Contains(log.String(), "binding control socket") {
		t.Errorf("log-level=info, but cloudd logs verbosely:\n%s", log.String())
	}
	// With the daemon up, cloudctl reaches it: its answer is no longer about
	// a missing socket in that directory.
	if up := cloudctl(t, e, "status"); up == down {
		t.Errorf("cloudctl status is the same with cloudd running:\n%s", up)
	}
}

func TestBinariesHonourConfiguredStateDir(t *testing.T) {
	e := newSnapEnv(t)
	buildBinaries(t, e)
	custom := filepath.Join(e.dir, "srv", "cloud")
	e.option("state-dir", custom)
	e.option("log-level", "debug")
	for _, h := range []string{"hooks/install", "hooks/configure"} {
		if stderr, err := e.run(h); err != nil {
			t.Fatalf("%s: %v\n%s", h, err, stderr)
		}
	}
	if down := cloudctl(t, e, "status"); !strings.Contains(down, custom) {
		t.Errorf("cloudctl status does not look in the configured state dir %s:\n%s", custom, down)
	}
	log := startCloudd(t, e, custom)
	if _, err := os.Stat(filepath.Join(e.common, "state", "control.socket")); err == nil {
		t.Error("cloudd also used the default state dir")
	}
	// --verbose (from log-level=debug) makes microcluster log its socket.
	if !strings.Contains(log.String(), "binding control socket") {
		t.Errorf("log-level=debug did not reach cloudd:\n%s", log.String())
	}
}
