package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/supervisor"
)

// fakeCommands plays mariadb-install-db, cp and mariadbd --wsrep-recover.
type fakeCommands struct {
	mu      sync.Mutex
	calls   []string
	failOn  string
	recover string // what --wsrep-recover writes to its log
}

func (f *fakeCommands) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	f.calls = append(f.calls, filepath.Base(name))
	f.mu.Unlock()
	if f.failOn != "" && filepath.Base(name) == f.failOn {
		return []byte("boom"), errors.New(f.failOn + " failed")
	}
	switch filepath.Base(name) {
	case "mariadb-install-db":
		for _, a := range args {
			if strings.HasPrefix(a, "--defaults-file=") {
				b, err := os.ReadFile(strings.TrimPrefix(a, "--defaults-file="))
				if err != nil {
					return nil, err
				}
				for _, l := range strings.Split(string(b), "\n") {
					if dir, ok := strings.CutPrefix(l, "datadir="); ok {
						return nil, os.MkdirAll(filepath.Join(dir, "mysql"), 0o755)
					}
				}
			}
		}
		return nil, fmt.Errorf("no datadir in the installer's config")
	case "cp":
		return nil, os.MkdirAll(filepath.Join(args[len(args)-1], "mysql"), 0o755)
	case "mariadbd":
		for _, a := range args {
			if log, ok := strings.CutPrefix(a, "--log-error="); ok {
				return nil, os.WriteFile(log, []byte(f.recover), 0o600)
			}
		}
	}
	return nil, nil
}

func (f *fakeCommands) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == name {
			n++
		}
	}
	return n
}

func testEngine(t *testing.T, cmds *fakeCommands) *Engine {
	t.Helper()
	if _, err := user.Lookup("mysql"); err != nil {
		t.Skip("the mysql system user is missing (scripts/deps.sh installs mariadb-server)")
	}
	m, err := manifests.Default()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := NewEngine(filepath.Join(t.TempDir(), "control"), "node1", "10.0.0.1", m, supervisor.New(nil, log), log)
	e.Cmd = cmds
	return e
}

// The datadir template is made once per node and copied per instance.
func TestEnsureDataTemplateOnce(t *testing.T) {
	cmds := &fakeCommands{}
	e := testEngine(t, cmds)
	insts, err := Layout(Multi, e.Manifest, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range insts[:3] {
		fresh, err := e.ensureData(t.Context(), instancePaths(e.Dir, in))
		if err != nil || !fresh {
			t.Fatalf("%s: fresh=%v err=%v", in.Name, fresh, err)
		}
	}
	if n := cmds.count("mariadb-install-db"); n != 1 {
		t.Fatalf("mariadb-install-db ran %d times for 3 instances, want once", n)
	}
	if n := cmds.count("cp"); n != 3 {
		t.Fatalf("cp ran %d times, want 3", n)
	}
	// Converging again changes nothing: the data is there.
	fresh, err := e.ensureData(t.Context(), instancePaths(e.Dir, insts[0]))
	if err != nil || fresh {
		t.Fatalf("second round: fresh=%v err=%v", fresh, err)
	}
	if n := cmds.count("cp"); n != 3 {
		t.Fatalf("second round copied again")
	}
}

// A failed initialisation leaves no half-made datadir, so the next round
// starts over instead of running on it.
func TestEnsureDataFailureLeavesNothing(t *testing.T) {
	cmds := &fakeCommands{failOn: "cp"}
	e := testEngine(t, cmds)
	insts, err := Layout(Single, e.Manifest, 8)
	if err != nil {
		t.Fatal(err)
	}
	p := instancePaths(e.Dir, insts[0])
	if _, err := e.ensureData(t.Context(), p); err == nil {
		t.Fatal("a failed copy was reported as success")
	}
	if _, err := os.Stat(p.data); !os.IsNotExist(err) {
		t.Fatalf("half-made datadir left behind: %v", err)
	}
	cmds.failOn = ""
	if fresh, err := e.ensureData(t.Context(), p); err != nil || !fresh {
		t.Fatalf("retry: fresh=%v err=%v", fresh, err)
	}
}

// After a full outage a member reports its position: grastate.dat when the
// shutdown was clean, else mariadbd --wsrep-recover.
func TestRecoverPosition(t *testing.T) {
	cmds := &fakeCommands{recover: "... WSREP: Recovered position: 6c1b2f4e-0000-11ee-9a1b-0242ac120002:41\n... WSREP: Recovered position: 6c1b2f4e-0000-11ee-9a1b-0242ac120002:42\n"}
	e := testEngine(t, cmds)
	insts, err := Layout(Single, e.Manifest, 8)
	if err != nil {
		t.Fatal(err)
	}
	p := instancePaths(e.Dir, insts[0])
	if err := os.MkdirAll(p.data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeFile(p.grastate, "version: 2.1\nuuid: clean-uuid\nseqno: 17\nsafe_to_bootstrap: 0\n"); err != nil {
		t.Fatal(err)
	}
	pos, err := e.recoverPosition(t.Context(), insts[0], p)
	if err != nil || pos.UUID != "clean-uuid" || pos.Seqno != 17 || pos.Node != "node1" {
		t.Fatalf("clean shutdown: %+v %v", pos, err)
	}
	if cmds.count("mariadbd") != 0 {
		t.Fatal("--wsrep-recover ran although grastate.dat had the position")
	}
	if err := writeFile(p.grastate, "version: 2.1\nuuid: clean-uuid\nseqno: -1\nsafe_to_bootstrap: 0\n"); err != nil {
		t.Fatal(err)
	}
	pos, err = e.recoverPosition(t.Context(), insts[0], p)
	if err != nil || pos.UUID != "6c1b2f4e-0000-11ee-9a1b-0242ac120002" || pos.Seqno != 42 {
		t.Fatalf("after a crash: %+v %v", pos, err)
	}
	cmds.recover = "nothing useful\n"
	if _, err := e.recoverPosition(t.Context(), insts[0], p); err == nil {
		t.Fatal("a recovery that printed no position was accepted")
	}
}

// A node that hosts no database copy stops whatever it ran.
func TestConvergeNotHostStopsEverything(t *testing.T) {
	e := testEngine(t, &fakeCommands{})
	if sts := e.Converge(t.Context(), Desired{Host: false}); sts != nil {
		t.Fatalf("statuses %+v", sts)
	}
}
