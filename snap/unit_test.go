package snap

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// unitFile reads the [Service]-style "Key=Value" lines of a systemd unit.
func unitFile(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "[") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: bad line %q", path, line)
		}
		out[k] = append(out[k], v)
	}
	return out
}

// installedPaths reads the Makefile's install recipe: source → installed
// path (without $(DESTDIR)).
func installedPaths(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^\tinstall\s+.*?(\S+)\s+\$\(DESTDIR\)(\S+)\s*$`)
	out := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(string(data), -1) {
		out[m[1]] = m[2]
	}
	return out
}

func TestClouddUnit(t *testing.T) {
	u := unitFile(t, filepath.Join("local", "cloudd.service"))
	exec := u["ExecStart"]
	if len(exec) != 1 {
		t.Fatalf("want one ExecStart, got %v", exec)
	}
	bin := strings.Fields(exec[0])[0]

	installed := installedPaths(t)
	want, ok := installed["bin/cloudd"]
	if !ok {
		t.Fatalf("the Makefile's install recipe does not install bin/cloudd (found %v)", installed)
	}
	if bin != want {
		t.Errorf("ExecStart runs %s, but make install puts cloudd at %s", bin, want)
	}
	// When the Makefile installs the unit, it installs this file.
	for src, dst := range installed {
		if strings.HasSuffix(dst, "/cloudd.service") && src != "snap/local/cloudd.service" {
			t.Errorf("make install installs %s as the unit, want snap/local/cloudd.service", src)
		}
	}

	// The unit reads the same settings file and uses the same state directory
	// as the code outside a snap.
	if got := strings.TrimPrefix(strings.Join(u["EnvironmentFile"], ""), "-"); got != ConfigOutsideSnap {
		t.Errorf("EnvironmentFile %q, want %q", got, ConfigOutsideSnap)
	}
	if got := "/var/lib/" + strings.Join(u["StateDirectory"], ""); got != DefaultOutsideSnap {
		t.Errorf("StateDirectory gives %q, want %q", got, DefaultOutsideSnap)
	}
	if !strings.Contains(exec[0], "$CLOUDD_FLAGS") {
		t.Errorf("ExecStart must pass $CLOUDD_FLAGS (the log level from the settings file): %q", exec[0])
	}
	if got := strings.Join(u["WantedBy"], ""); got != "multi-user.target" {
		t.Errorf("WantedBy %q", got)
	}
}
