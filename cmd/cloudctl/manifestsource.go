package main

import (
	"context"
	"time"

	"github.com/cloudctl/cloudctl/manifests"
)

// effectiveManifest is the manifest a command should decide with: the
// default with --manifest FILE overlaid when one is given; otherwise the
// cluster's own (kept in its database) when this node is a member; otherwise
// the default. It says which one it used.
func (a *app) effectiveManifest(ctx context.Context, overlay string) (*manifests.Manifest, string, error) {
	if overlay != "" {
		m, err := manifests.Effective(overlay)
		return m, "default + " + overlay, err
	}
	if c, err := a.connect(); err == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if info, err := c.Info(cctx); err == nil && info.Initialized {
			if raw, err := c.Manifest(cctx); err == nil {
				m, err := manifests.Parse("cluster manifest", []byte(raw))
				return m, "the cluster's", err
			}
		}
	}
	m, err := manifests.Default()
	return m, "default", err
}
