package daemon

import (
	"reflect"
	"strings"
	"testing"

	"github.com/canonical/microcluster/cluster"

	"github.com/cloudctl/cloudctl/client"
)

func TestWithTrusted(t *testing.T) {
	n1 := cluster.DqliteMember{DqliteID: 1, Name: "node1", Address: "10.1.0.1:7443", Role: "voter"}
	n2 := cluster.DqliteMember{DqliteID: 2, Name: "node2", Address: "10.1.0.2:7443", Role: "stand-by"}
	trusted := map[string]string{"node1": "10.1.0.1:7443", "node2": "10.1.0.2:7443", "node3": "10.1.0.3:7443"}
	for _, tc := range []struct {
		name    string
		stored  []cluster.DqliteMember
		trusted map[string]string
		want    []cluster.DqliteMember
	}{
		{"fresh store: nothing added", []cluster.DqliteMember{n1, n2}, map[string]string{"node1": n1.Address, "node2": n2.Address}, []cluster.DqliteMember{n1, n2}},
		{"stale store: the joined members added, role unknown", []cluster.DqliteMember{n1}, trusted, []cluster.DqliteMember{n1,
			{Name: "node2", Address: "10.1.0.2:7443", Role: roleUnknown},
			{Name: "node3", Address: "10.1.0.3:7443", Role: roleUnknown}}},
		{"stored roles kept", []cluster.DqliteMember{n1, n2}, trusted, []cluster.DqliteMember{n1, n2, {Name: "node3", Address: "10.1.0.3:7443", Role: roleUnknown}}},
		// A member renamed in the trust store but at a stored address is
		// the same member, not a new one.
		{"matched by address too", []cluster.DqliteMember{n1, n2}, map[string]string{"node1": n1.Address, "other": n2.Address}, []cluster.DqliteMember{n1, n2}},
		{"empty trust store", []cluster.DqliteMember{n1}, nil, []cluster.DqliteMember{n1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := withTrusted(tc.stored, tc.trusted)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("withTrusted = %+v, want %+v", got, tc.want)
			}
		})
	}
	// The caller's array is not written, even with room to spare.
	stored := make([]cluster.DqliteMember, 1, 4)
	stored[0] = n1
	_ = withTrusted(stored, trusted)
	if spare := stored[:2]; spare[1] != (cluster.DqliteMember{}) {
		t.Fatalf("withTrusted wrote into the caller's array: %+v", spare)
	}
}

func TestJudgeRecovery(t *testing.T) {
	m := func(name, role string) cluster.DqliteMember {
		return cluster.DqliteMember{Name: name, Address: name + ":7443", Role: role}
	}
	up := func(names ...string) map[string]bool {
		out := map[string]bool{}
		for _, n := range names {
			out[n+":7443"] = true
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		members []cluster.DqliteMember
		answers map[string]bool
		quorum  bool
		refusal string // "" when the recovery may go ahead
		dropped string
	}{
		{"all three answer", []cluster.DqliteMember{m("a", "voter"), m("b", "voter"), m("c", "voter")}, up("a", "b", "c"), true,
			"3 of 3 cluster database voters answer (a, b, c), a majority", ""},
		{"two of three answer", []cluster.DqliteMember{m("a", "voter"), m("b", "voter"), m("c", "voter")}, up("a", "b"), true,
			"2 of 3 cluster database voters answer (a, b), a majority", ""},
		{"two of three lost", []cluster.DqliteMember{m("a", "voter"), m("b", "voter"), m("c", "voter")}, up("a"), false,
			"", "b,c"},
		// The survivor's node store predates the joins: the others are
		// known from the trust store only.
		{"stale store, healthy", []cluster.DqliteMember{m("a", "voter"), m("b", roleUnknown), m("c", roleUnknown)}, up("a", "b", "c"), true,
			"3 of 3 cluster database voters answer", ""},
		{"stale store, two lost", []cluster.DqliteMember{m("a", "voter"), m("b", roleUnknown), m("c", roleUnknown)}, up("a"), false,
			"", "b,c"},
		// Two voters lost, two recent members (really spares) answer:
		// the counts say majority, the database says no quorum.
		{"recent members answer without a quorum", []cluster.DqliteMember{m("a", "voter"), m("b", "voter"), m("c", "voter"), m("d", roleUnknown), m("e", roleUnknown)}, up("a", "d", "e"), false,
			"d and e answer but joined too recently for this node to know whether they hold a copy", ""},
		{"one recent member answers", []cluster.DqliteMember{m("a", "voter"), m("b", "voter"), m("c", "voter"), m("d", roleUnknown)}, up("a", "d"), false,
			"d answers but joined too recently for this node to know whether it holds a copy", ""},
		{"spares hold a quorum", []cluster.DqliteMember{m("a", "voter"), m("b", "voter"), m("c", "voter"), m("d", "spare")}, up("a", "d"), true,
			"the cluster database still answers with a quorum", ""},
		{"two voters answer, no majority", []cluster.DqliteMember{m("a", "voter"), m("b", "voter"), m("c", "voter"), m("d", "voter"), m("e", "voter")}, up("a", "b"), false,
			"a and b answer but are no majority of the 5 voters", ""},
		{"a lost spare is dropped too", []cluster.DqliteMember{m("a", "voter"), m("b", "voter"), m("c", "voter"), m("d", "stand-by")}, up("a"), false,
			"", "b,c,d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rec client.Recovery
			err := judgeRecovery(&rec, tc.members, tc.answers, tc.quorum)
			switch {
			case tc.refusal == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.refusal != "" && (err == nil || !strings.Contains(err.Error(), tc.refusal)):
				t.Fatalf("got %v, want a refusal with %q", err, tc.refusal)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Fatalf("refusal on several lines: %q", err)
			}
			if tc.refusal == "" && strings.Join(rec.Dropped, ",") != tc.dropped {
				t.Fatalf("dropped %v, want %s", rec.Dropped, tc.dropped)
			}
		})
	}
}
