package snap

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func env(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func TestResolve(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Paths
	}{
		{"outside a snap", nil, Paths{Snap: "/", Data: "/var/lib/cloudctl", Common: "/var/lib/cloudctl",
			StateDir: "/var/lib/cloudctl", ConfigFile: "/etc/cloudctl/cloudd.env"}},
		{"in a snap", map[string]string{"SNAP": "/snap/cloudctl/12", "SNAP_DATA": "/var/snap/cloudctl/12", "SNAP_COMMON": "/var/snap/cloudctl/common"},
			Paths{InSnap: true, Snap: "/snap/cloudctl/12", Data: "/var/snap/cloudctl/12", Common: "/var/snap/cloudctl/common",
				StateDir: "/var/snap/cloudctl/common/state", ConfigFile: "/var/snap/cloudctl/common/cloudd.env"}},
		{"in a snap without SNAP_DATA and SNAP_COMMON", map[string]string{"SNAP": "/snap/cloudctl/12"},
			Paths{InSnap: true, Snap: "/snap/cloudctl/12", Data: "/var/snap/12/current", Common: "/var/snap/12/common",
				StateDir: "/var/snap/12/common/state", ConfigFile: "/var/snap/12/common/cloudd.env"}},
		{"SNAP_COMMON alone does not make a snap", map[string]string{"SNAP_COMMON": "/x"},
			Paths{Snap: "/", Data: "/var/lib/cloudctl", Common: "/var/lib/cloudctl", StateDir: "/var/lib/cloudctl", ConfigFile: "/etc/cloudctl/cloudd.env"}},
	}
	for _, tt := range tests {
		if got := Resolve(env(tt.env)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Resolve = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestStateDir(t *testing.T) {
	snapEnv := map[string]string{"SNAP": "/snap/cloudctl/1", "SNAP_COMMON": "/var/snap/cloudctl/common"}
	tests := []struct {
		flag string
		env  map[string]string
		want string
	}{
		{"", nil, "/var/lib/cloudctl"},
		{"", snapEnv, "/var/snap/cloudctl/common/state"},
		{"", map[string]string{"SNAP": "/snap/cloudctl/1", "SNAP_COMMON": "/c", "CLOUDCTL_STATE_DIR": "/srv/c"}, "/srv/c"},
		{"/flag", map[string]string{"CLOUDCTL_STATE_DIR": "/srv/c"}, "/flag"},
	}
	for _, tt := range tests {
		if got := StateDir(tt.flag, env(tt.env)); got != tt.want {
			t.Errorf("StateDir(%q, %v) = %q, want %q", tt.flag, tt.env, got, tt.want)
		}
	}
}

func TestStaged(t *testing.T) {
	in := Resolve(env(map[string]string{"SNAP": "/snap/cloudctl/7"}))
	out := Resolve(env(nil))
	if got := in.Staged("/usr/sbin/mariadbd"); got != "/snap/cloudctl/7/usr/sbin/mariadbd" {
		t.Errorf("in a snap: %q", got)
	}
	if got := out.Staged("/usr/sbin/mariadbd"); got != "/usr/sbin/mariadbd" {
		t.Errorf("outside a snap: %q", got)
	}
	if got := in.Staged("mariadbd"); got != "mariadbd" {
		t.Errorf("relative path: %q", got)
	}
}

func TestReadEnvFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cloudd.env")
	content := "# comment\n\nCLOUDCTL_STATE_DIR=/srv/state\nCLOUDD_FLAGS=--verbose --debug\nQUOTED=\"a b\"\nSINGLE='x'\nEMPTY=\n  SPACED = v \n"
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadEnvFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"CLOUDCTL_STATE_DIR": "/srv/state", "CLOUDD_FLAGS": "--verbose --debug", "QUOTED": "a b", "SINGLE": "x", "EMPTY": "", "SPACED": "v"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}

	if got, err := ReadEnvFile(filepath.Join(dir, "missing")); err != nil || len(got) != 0 {
		t.Errorf("missing file: %v, %v", got, err)
	}
	bad := filepath.Join(dir, "bad.env")
	if err := os.WriteFile(bad, []byte("OK=1\nnot a setting\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadEnvFile(bad); err == nil || !strings.Contains(err.Error(), bad+":2:") {
		t.Errorf("bad line: %v", err)
	}
}

func TestWithConfig(t *testing.T) {
	common := t.TempDir()
	if err := os.WriteFile(filepath.Join(common, ConfigName), []byte("CLOUDCTL_STATE_DIR=/srv/from-file\nCLOUDD_LOG_LEVEL=debug\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := map[string]string{"SNAP": "/snap/cloudctl/1", "SNAP_COMMON": common}
	g, err := WithConfig(env(base))
	if err != nil {
		t.Fatal(err)
	}
	if got := StateDir("", g); got != "/srv/from-file" {
		t.Errorf("state dir from the settings file: %q", got)
	}
	if g("CLOUDD_LOG_LEVEL") != "debug" || g("SNAP") != "/snap/cloudctl/1" {
		t.Errorf("lookups: %q %q", g("CLOUDD_LOG_LEVEL"), g("SNAP"))
	}
	base["CLOUDCTL_STATE_DIR"] = "/srv/from-env"
	g, err = WithConfig(env(base))
	if err != nil {
		t.Fatal(err)
	}
	if got := StateDir("", g); got != "/srv/from-env" {
		t.Errorf("the environment must win over the file: %q", got)
	}
	// No file: the plain environment.
	g, err = WithConfig(env(map[string]string{"SNAP": "/snap/x/1", "SNAP_COMMON": t.TempDir()}))
	if err != nil || g("CLOUDCTL_STATE_DIR") != "" {
		t.Errorf("no settings file: %v %q", err, g("CLOUDCTL_STATE_DIR"))
	}
}
