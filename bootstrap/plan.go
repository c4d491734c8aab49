// Package bootstrap turns a node's choices (flags today; guided answers and
// preseed files later) into a Plan, validates it, and applies it through
// cloudd: bootstrap a new cluster, or join an existing one.
package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/roles"
)

// Plan is the single input to applying a bootstrap or a join: every source of
// choices (flags, guided answers, preseed) produces one.
type Plan struct {
	// Name is this node's name in the cluster.
	Name string `json:"name" yaml:"name"`
	// Address is "host:port" for cluster traffic.
	Address string       `json:"address" yaml:"address"`
	Roles   []roles.Role `json:"roles" yaml:"roles"`
	Region  string       `json:"region,omitempty" yaml:"region,omitempty"`
	Zone    string       `json:"zone,omitempty" yaml:"zone,omitempty"`
	// Cluster names a new cluster (bootstrap only; default "cloud").
	Cluster string `json:"cluster,omitempty" yaml:"cluster,omitempty"`
}

// DefaultClusterName names a cluster when the bootstrap does not.
const DefaultClusterName = "cloud"

// Validate checks the plan on its own: one sentence per problem.
func (p Plan) Validate() error {
	if err := validName(p.Name); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(p.Address)
	if err != nil {
		return fmt.Errorf("invalid address %q: use host:port, e.g. 10.0.0.1:%d", p.Address, api.DefaultPort)
	}
	if net.ParseIP(host) == nil {
		return fmt.Errorf("invalid address %q: %q is not an IP address", p.Address, host)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("invalid address %q: the port must be 1-65535", p.Address)
	}
	if ip := net.ParseIP(host); ip.IsLoopback() || ip.IsUnspecified() {
		return fmt.Errorf("invalid address %q: other nodes cannot reach a loopback or unspecified address; pick one of this machine's network addresses", p.Address)
	}
	if len(p.Roles) == 0 {
		return fmt.Errorf("no role chosen: use --role with one or more of control, compute, storage")
	}
	for _, r := range p.Roles {
		if !roles.Valid(r) {
			return fmt.Errorf("unknown role %q: use control, compute or storage", r)
		}
	}
	return nil
}

func (p Plan) nodeInit() api.NodeInit {
	rs := make([]string, len(p.Roles))
	for i, r := range p.Roles {
		rs[i] = string(r)
	}
	return api.NodeInit{Roles: rs, Region: p.Region, Zone: p.Zone}
}

// Daemon is what applying a plan needs from cloudd; *client.Client has it.
type Daemon interface {
	Info(ctx context.Context) (client.Info, error)
	Bootstrap(ctx context.Context, name, address string, ni api.NodeInit) error
	Join(ctx context.Context, name, address string, jt api.JoinToken, ni api.NodeInit) error
}

// ErrAlreadyMember means this node is already bootstrapped or joined.
var ErrAlreadyMember = errors.New("already part of a cluster")

// memberError is a sentence about an existing membership that matches ErrAlreadyMember.
type memberError struct{ msg string }

func (e memberError) Error() string        { return e.msg }
func (e memberError) Is(target error) bool { return target == ErrAlreadyMember }

// Result says what applying did.
type Result struct {
	Name      string        `json:"name"`
	Address   string        `json:"address"`
	Roles     []string      `json:"roles"`
	Took      time.Duration `json:"took_ns"`
	Bootstrap bool          `json:"bootstrap"`
}

// Apply bootstraps a new cluster with this node as its first member.
// A node that is already a member is left untouched.
func Apply(ctx context.Context, d Daemon, p Plan, now func() time.Time) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	info, err := d.Info(ctx)
	if err != nil {
		return Result{}, err
	}
	if info.Initialized {
		return Result{}, memberError{fmt.Sprintf("this node is already bootstrapped, as %q (%s); nothing was changed — `cloudctl status` shows the cluster", info.Name, info.Address)}
	}
	start := now()
	ni := p.nodeInit()
	cluster := p.Cluster
	if cluster == "" {
		cluster = DefaultClusterName
	}
	if err := validName(cluster); err != nil {
		return Result{}, fmt.Errorf("invalid cluster name %q: use lowercase letters, digits or '-' (set it with --cluster-name)", cluster)
	}
	ni.Plan = &api.Plan{Version: 1, Cluster: cluster, Bootstrap: p.Name}
	if err := d.Bootstrap(ctx, p.Name, p.Address, ni); err != nil {
		return Result{}, err
	}
	return Result{Name: p.Name, Address: p.Address, Roles: ni.Roles, Took: now().Sub(start), Bootstrap: true}, nil
}

// ApplyJoin joins the cluster that issued jt. The token is checked with the
// cluster first, so a bad token changes nothing on either side.
func ApplyJoin(ctx context.Context, d Daemon, p Plan, jt api.JoinToken, now func() time.Time) (Result, error) {
	if err := p.Validate(); err != nil {
		return Result{}, err
	}
	info, err := d.Info(ctx)
	if err != nil {
		return Result{}, err
	}
	if info.Initialized {
		return Result{}, memberError{fmt.Sprintf("this node is already a member of a cluster, as %q (%s); nothing was changed — remove it there first (`cloudctl cluster remove %s`) to join another", info.Name, info.Address, info.Name)}
	}
	if _, err := client.CheckToken(ctx, jt, p.Name, now()); err != nil {
		return Result{}, err
	}
	start := now()
	if err := d.Join(ctx, p.Name, p.Address, jt, p.nodeInit()); err != nil {
		return Result{}, err
	}
	return Result{Name: p.Name, Address: p.Address, Roles: roleStrings(p.Roles), Took: now().Sub(start)}, nil
}

func roleStrings(rs []roles.Role) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return out
}
