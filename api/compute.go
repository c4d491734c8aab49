package api

import "time"

// ComputeAccess is a trust token for `lxc remote add` issued by the compute
// role (POST /1.0/compute/access): LXD's certificate add token, single use,
// with an expiry, revocable by its name.
type ComputeAccess struct {
	// Name is the client name the token was issued for; revoke by it.
	Name  string `json:"name"`
	Token string `json:"token,omitempty"`
	// Address is where lxc connects: the floating address when the cluster
	// has one, else the issuing node's cluster address.
	Address   string    `json:"address"`
	ExpiresAt time.Time `json:"expires_at"`
}

// ComputeAccessRequest asks for a trust token (POST /1.0/compute/access);
// an empty name gets a generated one.
type ComputeAccessRequest struct {
	Name string `json:"name"`
}
