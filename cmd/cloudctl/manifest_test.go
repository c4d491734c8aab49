package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/manifests"
)

// runManifest runs cloudctl with args and returns stdout, stderr and the error.
func runManifest(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	a := &app{out: &out, errOut: &errOut, in: strings.NewReader(""), getenv: func(string) string { return "" }}
	root := newRootCmd(a)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), errOut.String(), err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestManifestShowTable(t *testing.T) {
	out, _, err := runManifest(t, "manifest", "show")
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^KEY\s+VALUE\s+SOURCE$`,
		`(?m)^mysql\.multi_threshold_gib\s+32\s+default$`,
		`(?m)^storage\.min_osd_disk_bytes\s+10737418240\s+default$`,
		`(?m)^timeouts\.join_token_ttl\s+1h\s+default$`,
		`(?m)^role_groups\.converged\s+control,compute,storage\s+default$`,
		`(?m)^components\.galera\.files\.provider\s+/usr/lib/galera/libgalera_smm\.so\s+default$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output does not match %s:\n%s", re, out)
		}
	}
}

func TestManifestShowOverlay(t *testing.T) {
	site := writeFile(t, "site.yaml", "mysql:\n  multi_threshold_gib: 16\nrole_groups:\n  edge: [compute]\n")
	out, _, err := runManifest(t, "manifest", "show", "--manifest", site)
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^mysql\.multi_threshold_gib\s+16\s+` + regexp.QuoteMeta(site) + `$`,
		`(?m)^mysql\.max_connections\s+300\s+default$`,
		`(?m)^role_groups\.edge\s+compute\s+` + regexp.QuoteMeta(site) + `$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output does not match %s:\n%s", re, out)
		}
	}

	// JSON and YAML carry the same effective values, and YAML reads back as a manifest.
	js, _, err := runManifest(t, "manifest", "show", "--manifest", site, "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON manifests.Manifest
	if err := json.Unmarshal([]byte(js), &fromJSON); err != nil {
		t.Fatalf("json output does not decode: %v\n%s", err, js)
	}
	if fromJSON.MySQL.MultiThresholdGiB != 16 || fromJSON.Timeouts.JoinTokenTTL.String() != "1h" || fromJSON.Storage.MinOSDDiskBytes != 10<<30 {
		t.Errorf("json: %+v", fromJSON)
	}
	ym, _, err := runManifest(t, "manifest", "show", "--manifest", site, "--format", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	back, err := manifests.Parse("show.yaml", []byte(ym))
	if err != nil {
		t.Fatalf("yaml output does not parse as a manifest: %v\n%s", err, ym)
	}
	if err := back.Validate(); err != nil || back.MySQL.MultiThresholdGiB != 16 || back.RoleGroupDefs["edge"][0] != "compute" {
		t.Errorf("yaml round trip: %v %+v", err, back.MySQL)
	}
}

func TestManifestShowBadOverlay(t *testing.T) {
	site := writeFile(t, "site.yaml", "mysql:\n  multi_threshold_gib: many\n")
	out, errOut, err := runManifest(t, "manifest", "show", "--manifest", site)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 {
		t.Fatalf("want exit code 1, got %v", err)
	}
	if out != "" {
		t.Errorf("stdout should be empty, got %q", out)
	}
	if !strings.Contains(errOut, site+`:2:24: mysql.multi_threshold_gib: expected a whole number, got "many"`) {
		t.Errorf("stderr: %q", errOut)
	}
	if err.Error() != site+": 1 problem" {
		t.Errorf("error: %q", err)
	}
}

func TestManifestValidate(t *testing.T) {
	good := writeFile(t, "good.yaml", "timeouts:\n  join_token_ttl: 2h\n")
	out, _, err := runManifest(t, "manifest", "validate", good)
	if err != nil || out != good+": ok\n" {
		t.Errorf("validate good: %q, %v", out, err)
	}

	bad := writeFile(t, "bad.yaml", "ports:\n  lxd: 3306\n  cloudd: x\nrole_groups:\n  storage: [storage]\n")
	out, _, err = runManifest(t, "manifest", "validate", bad)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 1 || err.Error() != bad+": 1 problem" {
		t.Fatalf("want exit 1 with 1 problem (decode errors come first), got %v", err)
	}
	if want := bad + `:3:11: ports.cloudd: expected a whole number, got "x"; write digits only, without quotes, such as 32` + "\n"; out != want {
		t.Errorf("validate bad:\n%s\nwant\n%s", out, want)
	}

	sem := writeFile(t, "sem.yaml", "ports:\n  lxd: 3306\nrole_groups:\n  storage: [storage]\n")
	out, _, err = runManifest(t, "manifest", "validate", sem)
	if err == nil || err.Error() != sem+": 2 problems" {
		t.Fatalf("semantic errors: %v", err)
	}
	want := sem + ":2:8: ports.lxd: port 3306 clashes with ports.mysql_base (ports 3306-3313); choose a port nobody else uses\n" +
		sem + `:4:12: role_groups.storage: group "storage" has the name of a role, so --role storage would be ambiguous; rename the group` + "\n"
	if out != want {
		t.Errorf("validate sem:\n%s\nwant\n%s", out, want)
	}

	js, _, err := runManifest(t, "manifest", "validate", sem, "--format", "json")
	if err == nil {
		t.Fatal("json validate of a bad file succeeded")
	}
	var res struct {
		File   string `json:"file"`
		OK     bool   `json:"ok"`
		Errors []struct {
			Line, Column int
			Path         string
			Message      string
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(js), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, js)
	}
	if res.OK || res.File != sem || len(res.Errors) != 2 || res.Errors[0].Line != 2 || res.Errors[0].Column != 8 || res.Errors[1].Path != "role_groups.storage" {
		t.Errorf("json result: %+v", res)
	}

	if _, _, err := runManifest(t, "manifest", "validate", filepath.Join(t.TempDir(), "none.yaml")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
	if _, _, err := runManifest(t, "manifest", "validate"); err == nil {
		t.Error("validate without a file succeeded")
	}
}
