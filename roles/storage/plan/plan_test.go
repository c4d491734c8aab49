package plan

import "testing"

func TestParseFileDisk(t *testing.T) {
	for in, want := range map[string]int64{"loop:8GiB": 8 << 30, "loop:1GiB": 1 << 30, "loop:2048MiB": 2 << 30, "loop:1TiB": 1 << 40, "loop:10G": 10 << 30} {
		got, ok, err := ParseFileDisk(in)
		if !ok || err != nil || got != want {
			t.Errorf("%s: %d %v %v, want %d", in, got, ok, err, want)
		}
	}
	for _, in := range []string{"loop:", "loop:8", "loop:0GiB", "loop:-1GiB", "loop:512MiB", "loop:eightGiB", "loop:99999999999999TiB"} {
		if _, ok, err := ParseFileDisk(in); !ok || err == nil {
			t.Errorf("%s: ok %v err %v, want a refusal", in, ok, err)
		}
	}
	for _, in := range []string{"/dev/sdb", "/dev/loop3", ""} {
		if _, ok, _ := ParseFileDisk(in); ok || IsFileDisk(in) {
			t.Errorf("%s taken for a file disk", in)
		}
	}
}
