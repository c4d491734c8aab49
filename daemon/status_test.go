package daemon

import (
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/api"
)

func node(name, roles, status, db string) api.Node {
	return api.Node{Name: name, Roles: strings.Split(roles, ","), Status: status, Database: db}
}

func TestHASummary(t *testing.T) {
	cases := []struct {
		members []api.Node
		want    string
		enabled bool
	}{
		{[]api.Node{node("a", "control,compute", "online", "voter")}, "HA: no — 1 of 3 control nodes", false},
		{[]api.Node{node("a", "control", "online", "voter"), node("b", "compute", "online", "voter"), node("c", "control", "online", "voter")}, "HA: no — 2 of 3 control nodes", false},
		{[]api.Node{node("a", "control", "online", "voter"), node("b", "control", "online", "voter"), node("c", "control", "online", "spare")}, "HA: not yet — 3 control nodes, 2 of 3 database voters", false},
		{[]api.Node{node("a", "control", "online", "voter"), node("b", "control", "online", "voter"), node("c", "control", "online", "voter")}, "HA: yes", true},
		{[]api.Node{node("a", "control", "online", "voter"), node("b", "control", "offline", "voter"), node("c", "control", "online", "voter")}, "HA: yes, degraded — 1 of 3 control nodes offline", true},
	}
	for _, c := range cases {
		ha := haSummary(c.members)
		if ha.Summary != c.want || ha.Enabled != c.enabled {
			t.Errorf("got %q (enabled %v), want %q (%v)", ha.Summary, ha.Enabled, c.want, c.enabled)
		}
	}
}
