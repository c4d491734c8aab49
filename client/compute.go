package client

import (
	"context"
	"time"
)

// ComputeAccess is a trust token for `lxc remote add` from the compute role
// (LXD's certificate add token: single use, with an expiry, revocable).
type ComputeAccess struct {
	// Name is the client name the token was issued for; revoke by it.
	Name  string `json:"name"`
	Token string `json:"token,omitempty"`
	// Address is where lxc connects: the floating address when the cluster
	// has one, else the issuing node's cluster address.
	Address   string    `json:"address,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// IssueComputeAccess asks this node's LXD for a trust token named name
// (empty: a generated name).
func (c *Client) IssueComputeAccess(ctx context.Context, name string) (ComputeAccess, error) {
	var a ComputeAccess
	err := c.query(ctx, "POST", "compute/access", map[string]string{"name": name}, &a)
	return a, err
}

// ComputeAccessTokens lists the trust tokens issued on this node and not used yet.
func (c *Client) ComputeAccessTokens(ctx context.Context) ([]ComputeAccess, error) {
	var out []ComputeAccess
	err := c.query(ctx, "GET", "compute/access", nil, &out)
	return out, err
}

// RevokeComputeAccess revokes an unused trust token by name.
func (c *Client) RevokeComputeAccess(ctx context.Context, name string) error {
	return c.query(ctx, "DELETE", "compute/access/"+name, nil, nil)
}
