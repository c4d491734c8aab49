package control

import "testing"

// A member dropped from the Galera membership must not count in a
// full-outage recovery: the survivor alone wins once it reported.
func TestRecoveryIgnoresReportsOfFormerMembers(t *testing.T) {
	reports := map[string][]Position{"mysql": {
		{Node: "node1", Seqno: 10},
		{Node: "node2", Seqno: 99}, // lost for good, removed
		{Node: "node3", Seqno: 98}, // lost for good, removed
	}}
	peers := []Peer{{Name: "node1"}}
	got := peerReports(reports, peers)
	w, ok := RecoveryWinner(got["mysql"], len(peers))
	if !ok || w.Node != "node1" {
		t.Fatalf("winner = %+v, %v; want node1", w, ok)
	}
	// With all three still members, the highest seqno wins and nobody
	// bootstraps before everyone reported.
	all := []Peer{{Name: "node1"}, {Name: "node2"}, {Name: "node3"}}
	if w, ok := RecoveryWinner(peerReports(reports, all)["mysql"], 3); !ok || w.Node != "node2" {
		t.Fatalf("winner = %+v, %v; want node2", w, ok)
	}
	if _, ok := RecoveryWinner(peerReports(reports, all)["mysql"][:2], 3); ok {
		t.Fatal("a winner before every member reported")
	}
}
