package hwprobe

import (
	controlplan "github.com/cloudctl/cloudctl/roles/control/plan"
	"strings"
	"testing"
)

func TestDecideMySQL(t *testing.T) {
	p := DefaultPolicy()
	cases := map[int]string{8: controlplan.Single, 31: controlplan.Single, 32: controlplan.Multi, 64: controlplan.Multi}
	for gib, want := range cases {
		got, why := DecideMySQL(Memory{InstalledGiB: gib}, p)
		if got != want || !strings.Contains(why, "GiB installed RAM") {
			t.Errorf("%d GiB: %s (%s), want %s", gib, got, why, want)
		}
	}
	p.MySQLMultiMinGiB = 16
	if got, why := DecideMySQL(Memory{InstalledGiB: 24}, p); got != controlplan.Multi || !strings.Contains(why, ">= 16 GiB") {
		t.Errorf("threshold from the policy ignored: %s (%s)", got, why)
	}
}
