package daemon

import (
	"strings"
	"testing"

	"github.com/cloudctl/cloudctl/api"
)

func node(name, roles, status, db string) api.Node {
	return api.Node{Name: name, Roles: strings.Split(roles, ","), Status: status, DqliteRole: db}
}

func TestHASummary(t *testing.T) {
	three := func(c string) []api.Node {
		return []api.Node{node("a", "control", "online", "voter"), node("b", "control", c, "voter"), node("c", "control", "online", "voter")}
	}
	control := func(ha, reason string) api.Layer {
		return api.Layer{Name: api.LayerControl, Title: "control databases", Built: true, HA: ha, Reason: reason}
	}
	unbuilt := api.Layer{Name: "storage", Title: "storage", Built: false, HA: api.HANo, Reason: "no driver"}
	cases := []struct {
		members []api.Node
		layers  []api.Layer
		want    string
		enabled bool
	}{
		{[]api.Node{node("a", "control,compute", "online", "voter")}, nil, "HA: no — 1 of 3 control nodes", false},
		{[]api.Node{node("a", "control", "online", "voter"), node("b", "compute", "online", "voter"), node("c", "control", "online", "voter")}, nil, "HA: no — 2 of 3 control nodes", false},
		{[]api.Node{node("a", "control", "online", "voter"), node("b", "control", "online", "voter"), node("c", "control", "online", "spare")}, nil, "HA: not yet — cluster database: 2 of 3 dqlite voters", false},
		{three("online"), []api.Layer{control(api.HAYes, "")}, "HA: yes", true},
		{three("online"), []api.Layer{control(api.HAYes, ""), unbuilt}, "HA: yes", true},
		{three("online"), []api.Layer{control(api.HANo, "mysql: not replicated")}, "HA: not yet — control databases: mysql: not replicated", false},
		{three("online"), []api.Layer{control(api.HADegraded, "mysql: 2 of 3 members")}, "HA: yes, degraded — control databases: mysql: 2 of 3 members", true},
		{three("offline"), []api.Layer{control(api.HAYes, "")}, "HA: yes, degraded — 1 of 3 control nodes offline", true},
	}
	for _, c := range cases {
		layers := append([]api.Layer{clusterDBLayer(c.members, nil)}, c.layers...)
		ha := haSummary(c.members, layers)
		if ha.Summary != c.want || ha.Enabled != c.enabled {
			t.Errorf("got %q (enabled %v), want %q (%v)", ha.Summary, ha.Enabled, c.want, c.enabled)
		}
	}
}
