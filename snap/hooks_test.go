package snap

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSnapctl records every call in $FAKE_SNAPCTL_LOG (one line each) and
// keeps options as files in $FAKE_SNAPCTL_DIR. `services` reports the state
// in $FAKE_SNAPCTL_DIR/.service-state (default inactive).
const fakeSnapctl = `#!/bin/sh
echo "$*" >>"$FAKE_SNAPCTL_LOG"
cfg="$FAKE_SNAPCTL_DIR"
case "$1" in
get)
	[ ! -f "$cfg/$2" ] || cat "$cfg/$2"
	;;
set)
	shift
	for kv in "$@"; do printf '%s' "${kv#*=}" >"$cfg/${kv%%=*}"; done
	;;
services)
	echo "Service  Startup  Current  Notes"
	echo "$2  enabled  $(cat "$cfg/.service-state" 2>/dev/null || echo inactive)  -"
	;;
restart | start | stop) ;;
*)
	echo "fake snapctl: unsupported call: $*" >&2
	exit 1
	;;
esac
`

// fakeSysctl records its calls; it fails when $FAKE_SYSCTL_FAIL is set.
const fakeSysctl = `#!/bin/sh
echo "$*" >>"$FAKE_SYSCTL_LOG"
[ -z "${FAKE_SYSCTL_FAIL:-}" ]
`

// snapEnv is a simulated snap environment: temporary SNAP, SNAP_DATA,
// SNAP_COMMON, a host root for files hooks write outside the snap, and fake
// snapctl and sysctl first on a PATH that holds no real sysctl.
type snapEnv struct {
	t                       *testing.T
	dir, snap, data, common string
	root, bin, options      string
	snapctlLog, sysctlLog   string
	extra                   []string
}

func newSnapEnv(t *testing.T) *snapEnv {
	t.Helper()
	d := t.TempDir()
	e := &snapEnv{t: t, dir: d,
		snap: filepath.Join(d, "snap"), data: filepath.Join(d, "data"), common: filepath.Join(d, "common"),
		root: filepath.Join(d, "root"), bin: filepath.Join(d, "fakebin"), options: filepath.Join(d, "options"),
		snapctlLog: filepath.Join(d, "snapctl.log"), sysctlLog: filepath.Join(d, "sysctl.log")}
	for _, p := range []string{e.snap, e.data, e.common, e.root, e.bin, e.options} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e.write(filepath.Join(e.bin, "snapctl"), fakeSnapctl, 0o755)
	e.write(filepath.Join(e.bin, "sysctl"), fakeSysctl, 0o755)
	return e
}

func (e *snapEnv) write(path, content string, mode os.FileMode) {
	e.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		e.t.Fatal(err)
	}
}

func (e *snapEnv) environ() []string {
	return append([]string{
		"PATH=" + e.bin + ":/usr/bin:/bin",
		"HOME=" + e.dir,
		"SNAP=" + e.snap, "SNAP_DATA=" + e.data, "SNAP_COMMON=" + e.common,
		"SNAP_NAME=cloudctl", "SNAP_INSTANCE_NAME=cloudctl", "SNAP_REVISION=x1",
		"CLOUDCTL_HOOK_ROOT=" + e.root,
		"FAKE_SNAPCTL_LOG=" + e.snapctlLog, "FAKE_SNAPCTL_DIR=" + e.options,
		"FAKE_SYSCTL_LOG=" + e.sysctlLog,
	}, e.extra...)
}

// option sets a snap option as `snap set` would before running configure.
func (e *snapEnv) option(key, value string) {
	e.write(filepath.Join(e.options, key), value, 0o644)
}

// run executes a hook (or other script) of this package and returns its
// stderr and exit error.
func (e *snapEnv) run(script string, args ...string) (string, error) {
	e.t.Helper()
	abs, err := filepath.Abs(script)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd := exec.Command(abs, args...)
	cmd.Env = e.environ()
	cmd.Dir = e.dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	return stderr.String(), err
}

func (e *snapEnv) calls(log string) []string {
	data, err := os.ReadFile(log)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func (e *snapEnv) resetCalls() {
	_ = os.Remove(e.snapctlLog)
	_ = os.Remove(e.sysctlLog)
}

func (e *snapEnv) read(path string) string {
	e.t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	return string(data)
}

func TestInstallHook(t *testing.T) {
	e := newSnapEnv(t)
	if stderr, err := e.run("hooks/install"); err != nil {
		t.Fatalf("install: %v\n%s", err, stderr)
	}
	st, err := os.Stat(filepath.Join(e.common, "state"))
	if err != nil || !st.IsDir() || st.Mode().Perm() != 0o700 {
		t.Errorf("state directory: %v %v", st, err)
	}
	if got := e.calls(e.snapctlLog); strings.Join(got, "|") != "get log-level|set log-level=info" {
		t.Errorf("snapctl calls %q", got)
	}
	sysctlFile := filepath.Join(e.root, "etc/sysctl.d/60-cloudctl.conf")
	if conf := e.read(sysctlFile); !strings.Contains(conf, "fs.inotify.max_user_instances = 1048576") {
		t.Errorf("sysctl file:\n%s", conf)
	}
	if got := e.calls(e.sysctlLog); len(got) != 1 || got[0] != "-q -p "+sysctlFile {
		t.Errorf("sysctl calls %q", got)
	}

	// An option already given (gadget, snap install --config) is kept; a
	// failure to apply the kernel settings is a warning, not a failed install.
	e = newSnapEnv(t)
	e.option("log-level", "debug")
	e.extra = []string{"FAKE_SYSCTL_FAIL=1"}
	stderr, err := e.run("hooks/install")
	if err != nil {
		t.Fatalf("install: %v\n%s", err, stderr)
	}
	if got := e.calls(e.snapctlLog); strings.Join(got, "|") != "get log-level" {
		t.Errorf("snapctl calls %q", got)
	}
	if !strings.Contains(stderr, "applies at the next boot") {
		t.Errorf("stderr %q", stderr)
	}

	// Outside snapd it refuses to run.
	e = newSnapEnv(t)
	e.extra = []string{"SNAP_COMMON="}
	if _, err := e.run("hooks/install"); err == nil {
		t.Error("install without SNAP_COMMON succeeded")
	}
}

func TestConfigureHook(t *testing.T) {
	e := newSnapEnv(t)
	conf := filepath.Join(e.common, "cloudd.env")

	// First run (during install): defaults, service not running, no restart.
	if stderr, err := e.run("hooks/configure"); err != nil {
		t.Fatalf("configure: %v\n%s", err, stderr)
	}
	settings, err := ReadEnvFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if settings["CLOUDD_LOG_LEVEL"] != "info" || settings["CLOUDD_FLAGS"] != "" || settings["CLOUDCTL_STATE_DIR"] != "" {
		t.Errorf("defaults: %v", settings)
	}
	if got := e.calls(e.snapctlLog); strings.Join(got, "|") != "get log-level|get state-dir|services cloudctl.cloudd" {
		t.Errorf("snapctl calls %q", got)
	}

	// snap set log-level=debug while cloudd runs: rewritten, restarted.
	e.resetCalls()
	e.option("log-level", "debug")
	e.write(filepath.Join(e.options, ".service-state"), "active", 0o644)
	if stderr, err := e.run("hooks/configure"); err != nil {
		t.Fatalf("configure: %v\n%s", err, stderr)
	}
	settings, _ = ReadEnvFile(conf)
	if settings["CLOUDD_LOG_LEVEL"] != "debug" || settings["CLOUDD_FLAGS"] != "--verbose --debug" {
		t.Errorf("debug: %v", settings)
	}
	if got := e.calls(e.snapctlLog); got[len(got)-1] != "restart cloudctl.cloudd" {
		t.Errorf("no restart: %q", got)
	}

	// The same settings again: nothing to do, no restart.
	e.resetCalls()
	if stderr, err := e.run("hooks/configure"); err != nil {
		t.Fatalf("configure: %v\n%s", err, stderr)
	}
	for _, c := range e.calls(e.snapctlLog) {
		if strings.HasPrefix(c, "restart") {
			t.Errorf("restarted although nothing changed: %q", e.calls(e.snapctlLog))
		}
	}

	// A change while cloudd is stopped: rewritten, not restarted.
	e.resetCalls()
	e.option("log-level", "verbose")
	e.write(filepath.Join(e.options, ".service-state"), "inactive", 0o644)
	if _, err := e.run("hooks/configure"); err != nil {
		t.Fatal(err)
	}
	settings, _ = ReadEnvFile(conf)
	if settings["CLOUDD_FLAGS"] != "--verbose" {
		t.Errorf("verbose: %v", settings)
	}
	for _, c := range e.calls(e.snapctlLog) {
		if strings.HasPrefix(c, "restart") {
			t.Errorf("restarted a stopped service: %q", e.calls(e.snapctlLog))
		}
	}
}

func TestConfigureHookRejectsBadOptions(t *testing.T) {
	tests := []struct {
		key, value, want string
	}{
		{"log-level", "loud", `log-level "loud" is not valid; use info, verbose or debug`},
		{"state-dir", "relative/dir", `state-dir "relative/dir" is not an absolute path`},
		{"state-dir", "/srv/my state", `has characters other than letters`},
		{"state-dir", "/srv/$(reboot)", `has characters other than letters`},
		{"state-dir", "/srv/../etc", `contains . or .. parts`},
		{"state-dir", "/", `state-dir "/" is not usable`},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			e := newSnapEnv(t)
			conf := filepath.Join(e.common, "cloudd.env")
			e.write(conf, "# previous\nCLOUDD_LOG_LEVEL=info\nCLOUDD_FLAGS=\n", 0o644)
			e.option(tt.key, tt.value)
			stderr, err := e.run("hooks/configure")
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("want exit 1, got %v", err)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q, want %q", stderr, tt.want)
			}
			if got := e.read(conf); got != "# previous\nCLOUDD_LOG_LEVEL=info\nCLOUDD_FLAGS=\n" {
				t.Errorf("settings changed on a rejected option:\n%s", got)
			}
		})
	}
}

func TestConfigureHookStateDir(t *testing.T) {
	e := newSnapEnv(t)
	custom := filepath.Join(e.dir, "srv", "cloud")
	e.option("state-dir", custom+"//")
	if stderr, err := e.run("hooks/configure"); err != nil {
		t.Fatalf("configure: %v\n%s", err, stderr)
	}
	settings, _ := ReadEnvFile(filepath.Join(e.common, "cloudd.env"))
	if settings["CLOUDCTL_STATE_DIR"] != custom {
		t.Errorf("state dir setting %q, want %q", settings["CLOUDCTL_STATE_DIR"], custom)
	}
	st, err := os.Stat(custom)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("custom state dir: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(custom, ".created-by-cloudctl-snap")); err != nil {
		t.Errorf("marker: %v", err)
	}
	// The code resolves the same directory from the settings file.
	g, err := WithConfig(func(k string) string {
		return map[string]string{"SNAP": e.snap, "SNAP_COMMON": e.common}[k]
	})
	if err != nil || StateDir("", g) != custom {
		t.Errorf("snap.StateDir with the settings = %q, %v", StateDir("", g), err)
	}

	// Once the node is a cluster member, the state dir cannot move.
	e.write(filepath.Join(custom, "database", "info.yaml"), "address: x\n", 0o600)
	other := filepath.Join(e.dir, "elsewhere")
	e.option("state-dir", other)
	stderr, err := e.run("hooks/configure")
	if err == nil || !strings.Contains(stderr, "state-dir cannot change: this node is already a cluster member with its state in "+custom) {
		t.Fatalf("moving a member's state dir: %v %q", err, stderr)
	}
	if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a rejected state-dir was created: %v", err)
	}
	// Setting it to the same directory again is fine.
	e.option("state-dir", custom)
	if stderr, err := e.run("hooks/configure"); err != nil {
		t.Errorf("same state dir: %v %s", err, stderr)
	}

	// Before the node joins a cluster the default state dir may move.
	e2 := newSnapEnv(t)
	if _, err := e2.run("hooks/configure"); err != nil {
		t.Fatal(err)
	}
	e2.option("state-dir", filepath.Join(e2.dir, "fresh"))
	if stderr, err := e2.run("hooks/configure"); err != nil {
		t.Errorf("moving an unused state dir: %v %s", err, stderr)
	}
}

func TestRemoveHook(t *testing.T) {
	// Everything installed and configured with a custom, still empty state dir.
	e := newSnapEnv(t)
	custom := filepath.Join(e.dir, "srv", "cloud")
	e.option("state-dir", custom)
	for _, h := range []string{"hooks/install", "hooks/configure"} {
		if stderr, err := e.run(h); err != nil {
			t.Fatalf("%s: %v\n%s", h, err, stderr)
		}
	}
	sysctlFile := filepath.Join(e.root, "etc/sysctl.d/60-cloudctl.conf")
	if stderr, err := e.run("hooks/remove"); err != nil {
		t.Fatalf("remove: %v\n%s", err, stderr)
	}
	for _, p := range []string{sysctlFile, filepath.Join(e.common, "cloudd.env"), custom} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there after remove (%v)", p, err)
		}
	}
	if _, err := os.Stat(filepath.Dir(custom)); err != nil {
		t.Errorf("remove deleted the parent of the state dir: %v", err)
	}

	// A custom state dir holding cluster data is left in place, and said so.
	e = newSnapEnv(t)
	e.option("state-dir", custom)
	if _, err := e.run("hooks/configure"); err != nil {
		t.Fatal(err)
	}
	e.write(filepath.Join(custom, "database", "info.yaml"), "x", 0o600)
	stderr, err := e.run("hooks/remove")
	if err != nil {
		t.Fatalf("remove: %v\n%s", err, stderr)
	}
	if _, err := os.Stat(filepath.Join(custom, "database", "info.yaml")); err != nil {
		t.Errorf("remove deleted cluster data: %v", err)
	}
	if !strings.Contains(stderr, "leaving "+custom+" in place") {
		t.Errorf("stderr %q", stderr)
	}

	// A state dir the snap did not create is never touched.
	e = newSnapEnv(t)
	mine := filepath.Join(e.dir, "admin-made")
	if err := os.Mkdir(mine, 0o700); err != nil {
		t.Fatal(err)
	}
	e.option("state-dir", mine)
	if _, err := e.run("hooks/configure"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.run("hooks/remove"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("remove deleted a directory it did not create: %v", err)
	}

	// Removing a snap that was never configured works too.
	e = newSnapEnv(t)
	if stderr, err := e.run("hooks/remove"); err != nil {
		t.Errorf("remove of a bare snap: %v %s", err, stderr)
	}
}

func TestCommandChain(t *testing.T) {
	e := newSnapEnv(t)
	e.write(filepath.Join(e.common, "cloudd.env"),
		"# comment\nCLOUDD_LOG_LEVEL=debug\nCLOUDD_FLAGS=--verbose --debug\nCLOUDCTL_STATE_DIR=/srv/state\n", 0o644)
	// A stand-in cloudd that prints its arguments and environment.
	fake := filepath.Join(e.snap, "bin", "cloudd")
	e.write(fake, "#!/bin/sh\necho \"args:$*\"\necho \"state:$CLOUDCTL_STATE_DIR\"\necho \"level:$CLOUDD_LOG_LEVEL\"\n", 0o755)

	out := func(extra []string, args ...string) string {
		t.Helper()
		cmd := exec.Command(mustAbs(t, "local/cloudctl-env"), args...)
		cmd.Env = append(e.environ(), extra...)
		b, err := cmd.Output()
		if err != nil {
			t.Fatalf("cloudctl-env %v: %v", args, err)
		}
		return string(b)
	}
	if got := out(nil, fake, "--x"); got != "args:--verbose --debug --x\nstate:/srv/state\nlevel:debug\n" {
		t.Errorf("cloudd through the chain:\n%s", got)
	}
	// The environment wins over the file.
	if got := out([]string{"CLOUDCTL_STATE_DIR=/override"}, fake); !strings.Contains(got, "state:/override\n") {
		t.Errorf("override:\n%s", got)
	}
	// Other programs get the settings but not cloudd's flags.
	if got := out(nil, "/bin/sh", "-c", `echo "$CLOUDCTL_STATE_DIR $*"`, "x", "a"); got != "/srv/state a\n" {
		t.Errorf("cloudctl through the chain: %q", got)
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
