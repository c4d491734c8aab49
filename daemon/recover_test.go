package daemon

import (
	"reflect"
	"testing"

	"github.com/canonical/microcluster/cluster"
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
