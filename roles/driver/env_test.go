package driver

import (
	"context"
	"errors"
	"testing"
)

// TestDeparted: a node missing from the round's snapshot is departed only
// when the membership, read again, does not have it either.
func TestDeparted(t *testing.T) {
	ctx := context.Background()
	env := &Env{Nodes: []Node{{Name: "node1"}}}
	if gone, err := env.Departed(ctx, "node1"); gone || err != nil {
		t.Fatalf("a member in the snapshot: departed %v, %v", gone, err)
	}
	if gone, err := env.Departed(ctx, "node2"); !gone || err != nil {
		t.Fatalf("no membership to ask, not in the snapshot: departed %v, %v", gone, err)
	}
	env.IsMember = func(_ context.Context, name string) (bool, error) {
		switch name {
		case "node2":
			return true, nil // joined after the snapshot
		case "node3":
			return false, nil
		}
		return false, errors.New("no quorum")
	}
	for name, want := range map[string]bool{"node2": false, "node3": true} {
		if gone, err := env.Departed(ctx, name); gone != want || err != nil {
			t.Errorf("%s: departed %v, %v; want %v", name, gone, err, want)
		}
	}
	if gone, err := env.Departed(ctx, "node4"); gone || err == nil {
		t.Errorf("membership unreadable: departed %v, %v; want not departed and an error", gone, err)
	}
}
