package golden

import (
	"path/filepath"
	"testing"
)

type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Helper()               {}

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.golden")
	Check(t, path, "hello\n", true)
	Check(t, path, "hello\n", false)
	r := &recorder{TB: t}
	Check(r, path, "bye\n", false)
	if !r.failed {
		t.Fatal("a difference was not reported")
	}
}
