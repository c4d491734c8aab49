// Package drivertest holds fakes of the driver interface's edges for the
// role drivers' unit tests. Nothing outside tests imports it.
package drivertest

import (
	"context"
	"encoding/json"
	"fmt"
)

// Peers answers other members' cluster API by node and path, as
// driver.Peers does (the answer goes through JSON); it takes no POST.
type Peers func(node, path string) (any, error)

// Get implements driver.Peers.
func (p Peers) Get(ctx context.Context, node, path string, out any) error {
	r, err := p(node, path)
	if err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// Post implements driver.Peers: no test using Peers expects one.
func (p Peers) Post(ctx context.Context, node, path string, in, out any) error {
	return fmt.Errorf("no POST %s on %s in this test", path, node)
}
