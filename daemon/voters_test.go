package daemon

import (
	"reflect"
	"testing"

	dqlite "github.com/canonical/go-dqlite/client"
)

func TestPromotions(t *testing.T) {
	v := func(addr string, r dqlite.NodeRole) dqlite.NodeInfo {
		return dqlite.NodeInfo{ID: uint64(len(addr)), Address: addr, Role: r}
	}
	all := func(addrs ...string) map[string]bool {
		m := map[string]bool{}
		for _, a := range addrs {
			m[a] = true
		}
		return m
	}
	addrs := func(ns []dqlite.NodeInfo) []string {
		var out []string
		for _, n := range ns {
			out = append(out, n.Address)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		infos  []dqlite.NodeInfo
		online map[string]bool
		want   []string
	}{
		{"three voters: nothing", []dqlite.NodeInfo{v("a", dqlite.Voter), v("b", dqlite.Voter), v("c", dqlite.Voter), v("d", dqlite.StandBy)}, all("a", "b", "c", "d"), nil},
		{"a voter removed: the stand-by", []dqlite.NodeInfo{v("a", dqlite.Voter), v("c", dqlite.Voter), v("b", dqlite.StandBy)}, all("a", "b", "c"), []string{"b"}},
		{"stand-by before spare", []dqlite.NodeInfo{v("a", dqlite.Voter), v("c", dqlite.Voter), v("b", dqlite.Spare), v("d", dqlite.StandBy)}, all("a", "b", "c", "d"), []string{"d"}},
		{"an unanswering stand-by is passed over", []dqlite.NodeInfo{v("a", dqlite.Voter), v("c", dqlite.Voter), v("b", dqlite.StandBy), v("d", dqlite.Spare)}, all("a", "c", "d"), []string{"d"}},
		{"none answers: nothing", []dqlite.NodeInfo{v("a", dqlite.Voter), v("c", dqlite.Voter), v("b", dqlite.StandBy)}, all("a", "c"), nil},
		{"two members: both voters", []dqlite.NodeInfo{v("a", dqlite.Voter), v("b", dqlite.Spare)}, all("a", "b"), []string{"b"}},
		{"one voter left of five: two", []dqlite.NodeInfo{v("a", dqlite.Voter), v("e", dqlite.StandBy), v("b", dqlite.StandBy), v("c", dqlite.Spare), v("d", dqlite.StandBy)}, all("a", "b", "c", "d", "e"), []string{"b", "d"}},
	} {
		if got := addrs(promotions(tc.infos, tc.online)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: promotions = %v, want %v", tc.name, got, tc.want)
		}
	}
}
