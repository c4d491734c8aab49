package hwprobe

import (
	"strings"
	"testing"
)

func TestDecideMySQL(t *testing.T) {
	p := DefaultPolicy()
	cases := map[int]string{8: MySQLSingle, 31: MySQLSingle, 32: MySQLMulti, 64: MySQLMulti}
	for gib, want := range cases {
		got, why := DecideMySQL(Memory{InstalledGiB: gib}, p)
		if got != want || !strings.Contains(why, "GiB installed RAM") {
			t.Errorf("%d GiB: %s (%s), want %s", gib, got, why, want)
		}
	}
	p.MySQLMultiMinGiB = 16
	if got, why := DecideMySQL(Memory{InstalledGiB: 24}, p); got != MySQLMulti || !strings.Contains(why, ">= 16 GiB") {
		t.Errorf("threshold from the policy ignored: %s (%s)", got, why)
	}
}
