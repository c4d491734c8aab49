package client

import (
	"context"
	"net/url"

	"github.com/cloudctl/cloudctl/api"
)

// StorageDisks lists the cluster's OSDs with the node and plan entry each
// was made from.
func (c *Client) StorageDisks(ctx context.Context) ([]api.StorageOSD, error) {
	var out []api.StorageOSD
	err := c.query(ctx, "GET", "storage/disks", nil, &out)
	return out, err
}

// AddStorageDisk gives a disk (or a file-backed "loop:SIZE" entry) of a
// storage node to Ceph; the node makes the OSD in its next round.
func (c *Client) AddStorageDisk(ctx context.Context, in api.StorageDiskAdd) error {
	return c.query(ctx, "POST", "storage/disks", in, nil)
}

// RemoveStorageDisk takes away the OSD made from a disk entry of node: it
// is marked out and purged once its data moved. force skips the check that
// no pool drops below its size.
func (c *Client) RemoveStorageDisk(ctx context.Context, node, path string, force bool) (api.StorageOSD, error) {
	q := url.Values{"node": {node}, "path": {path}}
	if force {
		q.Set("force", "1")
	}
	var out api.StorageOSD
	err := c.query(ctx, "DELETE", "storage/disks?"+q.Encode(), nil, &out)
	return out, err
}
