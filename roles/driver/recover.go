package driver

import "context"

// Recoverer is implemented by a role whose layer keeps a quorum of its own
// (Ceph monitors) and so cannot lose a majority of its members by itself.
// After `cloudctl cluster recover` made the survivor the only member of the
// cluster database, and before the lost members are removed, cloudd calls
// RecoverAlone on the survivor for every driver that applied to it: the
// driver rebuilds its layer from this node alone (lost names the members
// that are gone for good). The reconcile loop is paused meanwhile; the
// driver's daemons may be stopped or running. It must be idempotent: an
// interrupted recovery calls it again.
type Recoverer interface {
	RecoverAlone(ctx context.Context, env *Env, lost []string) error
}
