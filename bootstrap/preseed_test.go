package bootstrap

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/internal/golden"
	"github.com/cloudctl/cloudctl/internal/strictyaml"
	"github.com/cloudctl/cloudctl/manifests"
	"github.com/cloudctl/cloudctl/roles"
)

var update = flag.Bool("update", false, "rewrite the golden files of TestPreseedGolden")

func manifestGroups(t testing.TB) map[string][]roles.Role {
	m, err := manifests.Default()
	if err != nil {
		t.Fatal(err)
	}
	return m.RoleGroups()
}

// goldenRun parses and resolves one preseed as the golden tests do. The
// first line may hold "# test: facts=NAME name=NODE join token=NODE
// cluster=NAME" to pick the facts fixture and the selection.
func goldenRun(t testing.TB, file string, data []byte) string {
	sel := Selection{}
	factsName := ""
	if first, _, _ := strings.Cut(string(data), "\n"); strings.HasPrefix(first, "# test:") {
		for _, kv := range strings.Fields(strings.TrimPrefix(first, "# test:")) {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "facts":
				factsName = v
			case "name":
				sel.Name = v
			case "join":
				sel.Join = true
			case "token":
				sel.TokenName = v
			case "cluster":
				sel.TokenCluster = v
			default:
				t.Fatalf("%s: unknown test directive %q", file, kv)
			}
		}
	}
	var b strings.Builder
	ps, err := ParsePreseed(file, data, manifestGroups(t))
	var plan Plan
	var warnings Problems
	if err == nil {
		plan, warnings, err = ps.Plan(factsNamed(factsName), sel)
	}
	if err != nil {
		var es strictyaml.Errors
		if !errors.As(err, &es) {
			t.Fatalf("%s: error is not positioned: %v", file, err)
		}
		b.WriteString("errors:\n")
		for _, e := range es {
			b.WriteString("  " + e.Error() + "\n")
		}
	}
	if len(warnings) > 0 {
		b.WriteString("warnings:\n")
		for _, w := range warnings {
			b.WriteString("  " + w.Message + "\n")
		}
	}
	if err == nil {
		js, _ := json.MarshalIndent(plan, "", "  ")
		b.WriteString("plan: " + string(js) + "\n")
	}
	return b.String()
}

// TestPreseedGolden checks every validation message: one file per message
// under testdata/preseed, its expected output beside it (-update rewrites).
func TestPreseedGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/preseed/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range files {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			got := goldenRun(t, filepath.Base(in), data)
			golden.Check(t, strings.TrimSuffix(in, ".yaml")+".golden", got, *update)
			// A file named bad_* or no_* must fail; ok_* and warn_* must not.
			isErr := strings.HasPrefix(got, "errors:")
			if strings.HasPrefix(name, "ok_") || strings.HasPrefix(name, "warn_") {
				if isErr {
					t.Errorf("%s must be valid", name)
				}
				if strings.HasPrefix(name, "warn_") != strings.Contains(got, "warnings:") {
					t.Errorf("%s: warnings only in warn_ files", name)
				}
			} else if !isErr {
				t.Errorf("%s must be refused", name)
			} else if errs, _, _ := strings.Cut(got, "warnings:"); strings.Count(errs, "\n  ") != 1 {
				t.Errorf("%s: one message per golden file, got:\n%s", name, got)
			}
		})
	}
}

func TestExamplePreseed(t *testing.T) {
	ex := ExampleYAML()
	ps, err := ParsePreseed("example.yaml", []byte(ex), manifestGroups(t))
	if err != nil {
		t.Fatalf("the example does not parse: %v", err)
	}
	if len(ps.Nodes) != 3 || ps.Cluster.MySQLTopology != TopologyAuto || ps.Nodes[1].Disks[0].MinSize != 500<<30 || !ps.Nodes[0].Disks[1].Wipe {
		t.Fatalf("example values: %+v", ps)
	}
	// Against a machine holding node1's address and disks, it resolves.
	f := testFacts()
	p, _, err := ps.Plan(f, Selection{})
	if err != nil {
		t.Fatalf("example on node1: %v", err)
	}
	if p.Name != "node1" || p.Region != "eu-west" || p.Zone != "a" || len(p.Disks) != 2 || !p.Disks[1].Wipe || p.FloatingAddress != "10.0.0.100" {
		t.Fatalf("node1's plan: %+v", p)
	}
	doc, err := os.ReadFile("../docs/preseed.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "```yaml\n"+ex+"```") {
		t.Error("docs/preseed.md does not hold the example of `cloudctl preseed example` verbatim")
	}
}

// TestPreseedSelection: each machine picks its own entry.
func TestPreseedSelection(t *testing.T) {
	src := `version: 1
nodes:
  - name: node1
    address: 10.0.0.1
    roles: [control]
  - name: node2
    address: 10.0.0.2
    roles: [compute]
  - name: node3
    roles: [storage]
    disks: []
`
	ps, err := ParsePreseed("site.yaml", []byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	f := testFacts() // holds 10.0.0.1, hostname node1
	cases := []struct {
		sel  Selection
		mod  func(*Facts)
		want string
	}{
		{sel: Selection{}, want: "node1"},                               // by address
		{sel: Selection{Name: "node3"}, want: "node3"},                  // by --name
		{sel: Selection{Join: true, TokenName: "node3"}, want: "node1"}, // the address wins over the token
		{sel: Selection{Join: true, TokenName: "node3"}, mod: func(f *Facts) { f.Addresses = f.Addresses[1:]; f.DefaultAddress = "192.168.5.10" }, want: "node3"},
		{sel: Selection{}, mod: func(f *Facts) { f.Addresses = f.Addresses[1:]; f.Hostname = "node2" }, want: ""}, // node2's address is not here
		{sel: Selection{}, mod: func(f *Facts) { f.Addresses = f.Addresses[1:]; f.Hostname = "node3"; f.DefaultAddress = "192.168.5.10" }, want: "node3"},
	}
	for i, c := range cases {
		ff := f
		ff.Addresses = append([]HostAddress(nil), f.Addresses...)
		if c.mod != nil {
			c.mod(&ff)
		}
		p, _, err := ps.Plan(ff, c.sel)
		switch {
		case c.want == "" && err == nil:
			t.Errorf("case %d: picked %s, want an error", i, p.Name)
		case c.want != "" && (err != nil || p.Name != c.want):
			t.Errorf("case %d: picked %q (%v), want %s", i, p.Name, err, c.want)
		}
	}
	// node3 has no address: it takes the default one.
	p, _, err := ps.Plan(f, Selection{Name: "node3", DefaultAddress: "192.168.5.10"})
	if err != nil || p.Address != "192.168.5.10:7443" {
		t.Fatalf("default address: %+v %v", p, err)
	}
}

// TestMarshalRoundTrip: what Marshal writes, ParsePreseed reads back equal.
func TestMarshalRoundTrip(t *testing.T) {
	ps, err := ParsePreseed("example.yaml", []byte(ExampleYAML()), manifestGroups(t))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, ps, manifestGroups(t))
}

func roundTrip(t testing.TB, ps *Preseed, groups map[string][]roles.Role) {
	data, err := ps.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePreseed("again.yaml", data, groups)
	if err != nil {
		t.Fatalf("marshalled preseed does not parse: %v\n%s", err, data)
	}
	if !reflect.DeepEqual(values(ps), values(back)) {
		t.Fatalf("round trip changed the preseed:\n%+v\n%+v\n%s", values(ps), values(back), data)
	}
}

// values strips what is not a value (positions, comments).
func values(p *Preseed) Preseed {
	out := Preseed{Version: p.Version, Cluster: p.Cluster}
	out.Cluster.topologyNote = ""
	for _, n := range p.Nodes {
		n.notes = nil
		var ds []DiskSpec
		if n.Disks != nil {
			ds = []DiskSpec{}
		}
		for _, d := range n.Disks {
			d.note = ""
			ds = append(ds, d)
		}
		n.Disks = ds
		out.Nodes = append(out.Nodes, n)
	}
	return out
}

func TestSize(t *testing.T) {
	good := map[string]Size{"100GiB": 100 << 30, "500GB": 500e9, "1.5TiB": 3 << 39, "1073741824": 1 << 30, " 2 TiB": 2 << 40, "0": 0, "10KB": 10000}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
		if back, err := ParseSize(got.String()); err != nil || back != got {
			t.Errorf("%q: String %q reads back as %d, %v", in, got.String(), back, err)
		}
	}
	for _, in := range []string{"", "GiB", "100 gigs", "-1GiB", "1e3GB", "0x10", "NaN", "Inf", "99999999999PiB"} {
		if _, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) accepted", in)
		}
	}
}

// FuzzParsePreseed: the parser never panics, every error is positioned in
// the file, and what parses is written back by Marshal to the same values
// and resolves against the facts without panicking. Seeds: the golden
// inputs, the example, and testdata/fuzz/FuzzParsePreseed.
func FuzzParsePreseed(f *testing.F) {
	files, _ := filepath.Glob("testdata/preseed/*.yaml")
	for _, in := range files {
		if data, err := os.ReadFile(in); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte(ExampleYAML()))
	groups := manifestGroups(f)
	facts := testFacts()
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := ParsePreseed("fuzz.yaml", data, groups)
		if err != nil {
			var es strictyaml.Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error is not a list of positioned errors: %T %v", err, err)
			}
			for _, e := range es {
				if e.File != "fuzz.yaml" || e.Line < 1 || e.Column < 1 || e.Message == "" {
					t.Fatalf("error without a position: %#v", e)
				}
			}
			return
		}
		roundTrip(t, ps, groups)
		if _, _, err := ps.Plan(facts, Selection{}); err != nil {
			var es strictyaml.Errors
			if !errors.As(err, &es) {
				t.Fatalf("resolve error is not positioned: %v", err)
			}
		}
	})
}
