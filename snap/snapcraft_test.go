package snap

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/cloudctl/cloudctl/manifests"
)

type snapcraft struct {
	Name         string `yaml:"name"`
	Base         string `yaml:"base"`
	Confinement  string `yaml:"confinement"`
	AdoptInfo    string `yaml:"adopt-info"`
	Grade        string `yaml:"grade"`
	Repositories []struct {
		Type     string `yaml:"type"`
		URL      string `yaml:"url"`
		KeyID    string `yaml:"key-id"`
		Priority string `yaml:"priority"`
	} `yaml:"package-repositories"`
	Apps map[string]struct {
		Command      string            `yaml:"command"`
		CommandChain []string          `yaml:"command-chain"`
		Daemon       string            `yaml:"daemon"`
		Environment  map[string]string `yaml:"environment"`
	} `yaml:"apps"`
	Hooks map[string]any `yaml:"hooks"`
	Parts map[string]struct {
		Plugin           string              `yaml:"plugin"`
		Source           string              `yaml:"source"`
		StagePackages    []string            `yaml:"stage-packages"`
		BuildPackages    []string            `yaml:"build-packages"`
		BuildEnvironment []map[string]string `yaml:"build-environment"`
		OverrideBuild    string              `yaml:"override-build"`
		Organize         map[string]string   `yaml:"organize"`
		Stage            []string            `yaml:"stage"`
	} `yaml:"parts"`
}

func loadSnapcraft(t *testing.T) (snapcraft, *yaml.Node) {
	t.Helper()
	data, err := os.ReadFile("snapcraft.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var sc snapcraft
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(false)
	if err := dec.Decode(&sc); err != nil {
		t.Fatalf("snapcraft.yaml does not parse: %v", err)
	}
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		t.Fatal(err)
	}
	return sc, &n
}

// staged returns what a part puts at a path in the snap, as the path of the
// file in this repository it comes from ("" if no part provides it).
func (sc snapcraft) provider(t *testing.T, snapPath string) string {
	t.Helper()
	for name, p := range sc.Parts {
		switch p.Plugin {
		case "dump":
			for from, to := range p.Organize {
				if to == snapPath {
					return filepath.Join("..", p.Source, from)
				}
			}
		case "nil":
			// The Go part builds bin/<cmd> from ./cmd/<cmd>.
			if m := regexp.MustCompile(`^bin/([a-z0-9-]+)$`).FindStringSubmatch(snapPath); m != nil &&
				strings.Contains(p.OverrideBuild, `"$CRAFT_PART_INSTALL/bin/$cmd" "./cmd/$cmd"`) &&
				regexp.MustCompile(`for cmd in [^;]*\b`+m[1]+`\b`).MatchString(p.OverrideBuild) {
				return filepath.Join("..", "cmd", m[1])
			}
		}
		_ = name
	}
	return ""
}

func TestSnapcraftYAML(t *testing.T) {
	sc, root := loadSnapcraft(t)
	if sc.Name != "cloudctl" {
		t.Errorf("name %q", sc.Name)
	}
	if sc.Base != "core22" && sc.Base != "core24" {
		t.Errorf("base %q: use core22 or core24", sc.Base)
	}
	if sc.Confinement != "classic" && sc.Confinement != "strict" {
		t.Errorf("confinement %q", sc.Confinement)
	}
	// The choice of confinement is explained right above it.
	for i := 0; i+1 < len(root.Content[0].Content); i += 2 {
		k := root.Content[0].Content[i]
		if k.Value == "confinement" && len(strings.Split(k.HeadComment, "\n")) < 5 {
			t.Errorf("confinement needs the comment that explains the choice, got %q", k.HeadComment)
		}
	}
	if _, ok := sc.Parts[sc.AdoptInfo]; !ok {
		t.Errorf("adopt-info names part %q, which does not exist", sc.AdoptInfo)
	}

	for _, name := range []string{"cloudctl", "cloudd"} {
		if _, ok := sc.Apps[name]; !ok {
			t.Errorf("app %s is missing", name)
		}
	}
	if d := sc.Apps["cloudd"].Daemon; d != "simple" {
		t.Errorf("cloudd daemon = %q, want simple", d)
	}
	for name, app := range sc.Apps {
		for _, p := range append([]string{app.Command}, app.CommandChain...) {
			src := sc.provider(t, p)
			if src == "" {
				t.Errorf("app %s: no part provides %s", name, p)
				continue
			}
			st, err := os.Stat(src)
			if err != nil {
				t.Errorf("app %s: %s comes from %s: %v", name, p, src, err)
				continue
			}
			if st.IsDir() {
				// A Go command: the directory holds package main.
				out, err := exec.Command("go", "list", "-tags", "pacific libsqlite3", "-f", "{{.Name}}", "./"+src).Output()
				if err != nil || strings.TrimSpace(string(out)) != "main" {
					t.Errorf("app %s: %s is not a main package (%s, %v)", name, src, out, err)
				}
			} else if st.Mode()&0o111 == 0 {
				t.Errorf("app %s: %s is not executable", name, src)
			}
		}
	}

	goPart := sc.Parts["cloudctl"]
	if !strings.Contains(goPart.OverrideBuild, `-tags "pacific libsqlite3"`) {
		t.Errorf("the Go part must build with -tags \"pacific libsqlite3\":\n%s", goPart.OverrideBuild)
	}
	cgo := false
	for _, e := range goPart.BuildEnvironment {
		if e["CGO_ENABLED"] == "1" {
			cgo = true
		}
	}
	if !cgo {
		t.Error("the Go part must build with CGO_ENABLED=1")
	}
	for _, pkg := range []string{"libdqlite-dev", "libsqlite3-dev", "librados-dev", "librbd-dev"} {
		if !contains(goPart.BuildPackages, pkg) {
			t.Errorf("the Go part needs build package %s", pkg)
		}
	}

	// Hooks: snapcraft takes them from snap/hooks; any hook named in
	// snapcraft.yaml must exist there, and the three this snap needs must.
	for name := range sc.Hooks {
		if _, err := os.Stat(filepath.Join("hooks", name)); err != nil {
			t.Errorf("hooks.%s in snapcraft.yaml: %v", name, err)
		}
	}
	for _, h := range []string{"install", "configure", "remove"} {
		checkScript(t, filepath.Join("hooks", h))
	}
	checkScript(t, filepath.Join("local", "cloudctl-env"))

	// A package repository's key ships in snap/keys/<last 8 of key-id>.asc.
	for _, r := range sc.Repositories {
		if len(r.KeyID) != 40 {
			t.Errorf("key-id %q is not a 40-digit fingerprint", r.KeyID)
			continue
		}
		key := filepath.Join("keys", r.KeyID[32:]+".asc")
		if _, err := os.Stat(key); err != nil {
			t.Errorf("key for %s: %v", r.URL, err)
			continue
		}
		if gpg, err := exec.LookPath("gpg"); err == nil {
			out, err := exec.Command(gpg, "--show-keys", "--with-colons", key).Output()
			if err != nil || !strings.Contains(string(out), "fpr:::::::::"+r.KeyID+":") {
				t.Errorf("%s is not the key %s (%v)", key, r.KeyID, err)
			}
		}
	}
}

// TestStagePackagesMatchManifest keeps snapcraft.yaml in step with the
// manifest's components: every package a component needs is staged.
func TestStagePackagesMatchManifest(t *testing.T) {
	sc, _ := loadSnapcraft(t)
	var staged []string
	for _, p := range sc.Parts {
		staged = append(staged, p.StagePackages...)
	}
	m, err := manifests.Default()
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for name, c := range m.Components {
		for _, pkg := range c.Packages {
			if !contains(staged, pkg) {
				missing = append(missing, name+": "+pkg)
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("packages of manifest components not staged in snapcraft.yaml: %s", strings.Join(missing, ", "))
	}
}

func checkScript(t *testing.T, path string) {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if st.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable", path)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() || sc.Text() != "#!/bin/sh" {
		t.Errorf("%s must start with #!/bin/sh", path)
	}
	if out, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
		t.Errorf("%s: syntax: %v\n%s", path, err, out)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
