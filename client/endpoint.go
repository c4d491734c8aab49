package client

import (
	"context"

	"github.com/cloudctl/cloudctl/api"
)

// FloatingAddressNone is what SetFloatingAddress takes to remove the address.
const FloatingAddressNone = ""

// SetFloatingAddress sets (or, with FloatingAddressNone, removes) the
// cluster's floating address after bootstrap: PUT /1.0/plan/floating-address
// with api.FloatingAddress ({"floating_address": ADDR}), where ADDR is "10.0.0.100",
// "10.0.0.100/24" or "" for none. cloudd answers with the updated plan; the
// floating endpoint converges on every control node without restarting
// anything else.
func (c *Client) SetFloatingAddress(ctx context.Context, addr string) (api.Plan, error) {
	var p api.Plan
	err := c.query(ctx, "PUT", "plan/floating-address", api.FloatingAddress{Address: addr}, &p)
	return p, err
}
