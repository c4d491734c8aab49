package client

import (
	"context"

	"github.com/cloudctl/cloudctl/api"
)

// IssueComputeAccess asks this node's LXD for a trust token named name
// (empty: a generated name).
func (c *Client) IssueComputeAccess(ctx context.Context, name string) (api.ComputeAccess, error) {
	var a api.ComputeAccess
	err := c.query(ctx, "POST", "compute/access", api.ComputeAccessRequest{Name: name}, &a)
	return a, err
}

// ComputeAccessTokens lists the trust tokens issued on this node and not used yet.
func (c *Client) ComputeAccessTokens(ctx context.Context) ([]api.ComputeAccess, error) {
	var out []api.ComputeAccess
	err := c.query(ctx, "GET", "compute/access", nil, &out)
	return out, err
}

// RevokeComputeAccess revokes an unused trust token by name.
func (c *Client) RevokeComputeAccess(ctx context.Context, name string) error {
	return c.query(ctx, "DELETE", "compute/access/"+name, nil, nil)
}
