package driver

import (
	"context"
	"errors"
	"testing"

	"github.com/cloudctl/cloudctl/roles"
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

// TestLeftRole: a member without the role in the round's snapshot has left
// it only when its roles, read again, do not have it either.
func TestLeftRole(t *testing.T) {
	ctx := context.Background()
	env := &Env{Nodes: []Node{{Name: "node1", Roles: []roles.Role{roles.Storage}}, {Name: "node2", Roles: []roles.Role{roles.Control}}}}
	for _, tc := range []struct {
		node string
		now  func(context.Context, string, roles.Role) (bool, error)
		want bool
		err  bool
	}{
		{"node1", nil, false, false}, // has it in the snapshot
		{"node9", nil, false, false}, // not a member: Departed's business
		{"node2", nil, true, false},  // nothing to read again
		{"node2", func(context.Context, string, roles.Role) (bool, error) { return false, nil }, true, false},
		{"node2", func(context.Context, string, roles.Role) (bool, error) { return true, nil }, false, false}, // given back since
		{"node2", func(context.Context, string, roles.Role) (bool, error) { return false, errors.New("no leader") }, false, true},
	} {
		env.HasRoleNow = tc.now
		got, err := env.LeftRole(ctx, tc.node, roles.Storage)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("LeftRole(%s) with HasRoleNow %v: %v, %v; want %v (error %v)", tc.node, tc.now != nil, got, err, tc.want, tc.err)
		}
	}
}
