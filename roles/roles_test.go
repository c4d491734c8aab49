package roles

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	groups := map[string][]Role{"converged": {Control, Compute, Storage}, "worker": {Compute, Storage}}
	cases := []struct {
		in, want, err string
	}{
		{in: "control", want: "control"},
		{in: "storage, Compute ,control", want: "control,compute,storage"},
		{in: "compute,compute", want: "compute"},
		{in: "worker,control", want: "control,compute,storage"},
		{in: "converged", want: "control,compute,storage"},
		{in: "", err: "no role given"},
		{in: " , ", err: "no role given"},
		{in: "database", err: `unknown role "database"`},
		{in: "control,db", err: "role group (converged, worker)"},
	}
	for _, c := range cases {
		got, err := Parse(c.in, groups)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Parse(%q) error = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || Join(got) != c.want {
			t.Errorf("Parse(%q) = %v, %v; want %s", c.in, got, err, c.want)
		}
	}
	if _, err := Parse("worker", nil); err == nil {
		t.Error("group accepted without groups")
	}
}

func TestHasAndNormalize(t *testing.T) {
	rs := Normalize([]Role{Storage, Control, Storage})
	if Join(rs) != "control,storage" || !Has(rs, Storage) || Has(rs, Compute) {
		t.Fatalf("got %v", rs)
	}
	if Valid("gpu") || !Valid(Compute) {
		t.Fatal("Valid")
	}
}
