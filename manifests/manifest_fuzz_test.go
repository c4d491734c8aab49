package manifests

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cloudctl/cloudctl/internal/strictyaml"
)

// FuzzParse: any bytes either parse to a manifest (which then validates or
// says why not, and marshals) or give positioned errors; never a panic.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	for _, in := range files {
		if data, err := os.ReadFile(in); err == nil {
			f.Add(data)
		}
	}
	if m, err := Default(); err == nil {
		if b, err := m.Marshal(); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("mysql:\n  multi_threshold_gib: 1\n"))
	f.Add([]byte("ports: {mysql_base: -1}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse("fuzz.yaml", data)
		if err != nil {
			var es strictyaml.Errors
			if errors.As(err, &es) {
				for _, e := range es {
					if e.Message == "" {
						t.Fatalf("an error without a message: %#v", e)
					}
				}
			}
			return
		}
		if m == nil {
			t.Fatal("no manifest and no error")
		}
		base, err := Default()
		if err != nil {
			t.Fatal(err)
		}
		if o, err := Overlay(base, m); err == nil {
			_ = o.Validate()
			if _, err := o.Marshal(); err != nil {
				t.Fatalf("an overlaid manifest does not marshal: %v", err)
			}
		}
	})
}
