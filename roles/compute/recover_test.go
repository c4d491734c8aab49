package compute

import (
	"strings"
	"testing"
)

func TestPlanQuorum(t *testing.T) {
	three := []raftNode{{"node1", "10.0.0.1:8443", raftVoter}, {"node2", "10.0.0.2:8443", raftVoter}, {"node3", "10.0.0.3:8443", raftVoter}}
	lost := func(ns ...string) map[string]bool {
		m := map[string]bool{}
		for _, n := range ns {
			m[n] = true
		}
		return m
	}
	for _, c := range []struct {
		what     string
		self     string
		selfName string
		nodes    []raftNode
		lost     map[string]bool
		rebuild  bool
		refused  string
	}{
		{"one voter of three lost: the database answers", "10.0.0.1:8443", "", three, lost("node3"), false, ""},
		{"two voters of three lost: rebuilt from this voter", "10.0.0.1:8443", "", three, lost("node2", "node3"), true, ""},
		{"lost nodes that held no vote", "10.0.0.1:8443", "", append(three[:3:3], raftNode{"node4", "10.0.0.4:8443", 2}), lost("node4"), false, ""},
		{"the only voter of two is this node", "10.0.0.1:8443", "", []raftNode{{"node1", "10.0.0.1:8443", raftVoter}, {"node2", "10.0.0.2:8443", 2}}, lost("node2"), false, ""},
		{"the only voter of two is lost; this node is a spare", "10.0.0.2:8443", "", []raftNode{{"node1", "10.0.0.1:8443", raftVoter}, {"node2", "10.0.0.2:8443", 2}}, lost("node1"), false, "held by node1, all lost"},
		{"a stand-by holds a copy", "10.0.0.4:8443", "", append(three[:3:3], raftNode{"node4", "10.0.0.4:8443", raftStandBy}), lost("node1", "node2", "node3"), true, ""},
		{"this node is not in raft_nodes", "10.0.0.9:8443", "", three, lost("node1", "node2"), false, "LXD on node3, which is not among the lost"},
		{"this node is not in raft_nodes, all others lost", "10.0.0.9:8443", "", three, lost("node1", "node2", "node3"), false, "is not among its members"},
		{"a voter survives elsewhere", "10.0.0.4:8443", "", append(three[:3:3], raftNode{"node4", "10.0.0.4:8443", raftStandBy}), lost("node1", "node2"), false, "LXD on node3, which is not among the lost"},
		{"a stand-by survives elsewhere", "10.0.0.1:8443", "", append(three[:3:3], raftNode{"node4", "10.0.0.4:8443", raftStandBy}), lost("node2", "node3"), false, "LXD on node4, which is not among the lost"},
		{"a spare survives elsewhere", "10.0.0.1:8443", "", append(three[:3:3], raftNode{"node4", "10.0.0.4:8443", 2}), lost("node2", "node3"), true, ""},
		{"lost members matched by address only", "10.0.0.1:8443", "", []raftNode{{"node1", "10.0.0.1:8443", raftVoter}, {"", "10.0.0.2:8443", raftVoter}, {"", "10.0.0.3:8443", raftVoter}}, lost("10.0.0.2:8443", "10.0.0.3:8443"), true, ""},
		{"this node found by name (another address)", "10.9.9.9:8443", "node1", three, lost("node2", "node3"), true, ""},
		{"a spare here and a voter survives elsewhere", "10.0.0.4:8443", "", append(three[:3:3], raftNode{"node4", "10.0.0.4:8443", 2}), lost("node1", "node2"), false, "LXD on node3, which is not among the lost"},
		{"no raft nodes (never clustered)", "", "", nil, lost("node2"), false, ""},
	} {
		got := planQuorum(c.self, c.selfName, c.nodes, func(n raftNode) bool { return c.lost[n.Name] || c.lost[n.Address] })
		if got.Rebuild != c.rebuild {
			t.Errorf("%s: rebuild %v, want %v", c.what, got.Rebuild, c.rebuild)
		}
		if got.Rebuild {
			// Every lost member that held a copy is checked before the rebuild.
			want := 0
			for _, n := range c.nodes {
				if (c.lost[n.Name] || c.lost[n.Address]) && n.Role != 2 && n.Address != c.self && (c.selfName == "" || n.Name != c.selfName) {
					want++
				}
			}
			if len(got.Lost) != want {
				t.Errorf("%s: lost members to check %v, want %d", c.what, got.Lost, want)
			}
		}
		switch {
		case c.refused == "" && got.Refused != nil:
			t.Errorf("%s: refused: %v", c.what, got.Refused)
		case c.refused != "" && (got.Refused == nil || !strings.Contains(got.Refused.Error(), c.refused)):
			t.Errorf("%s: refused %v, want it to say %q", c.what, got.Refused, c.refused)
		}
	}
}
