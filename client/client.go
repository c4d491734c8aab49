// Package client is how cloudctl talks to cloudd: over the local control
// socket for everything on this node, and (pinned TLS) to a remote cluster
// only to check a join token before joining.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	lxdapi "github.com/canonical/lxd/shared/api"
	mcclient "github.com/canonical/microcluster/client"
	"github.com/canonical/microcluster/microcluster"

	"github.com/cloudctl/cloudctl/api"
)

// Client talks to the cloudd of one state directory.
type Client struct {
	stateDir string
	m        *microcluster.MicroCluster
}

// ErrNotRunning means no cloudd answers on the state directory's socket.
var ErrNotRunning = errors.New("cloudd is not running")

// ErrNotInitialized means cloudd runs but is not part of a cluster yet.
var ErrNotInitialized = errors.New("this node is not part of a cluster yet")

// ErrStarting means cloudd runs, is a member, and has not opened its cluster
// database yet.
var ErrStarting = errors.New("this node's cloudd is starting")

// New returns a client for the daemon whose state lives in stateDir. It does
// not create the directory: a missing one means no daemon.
func New(stateDir string) (*Client, error) {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("state directory %s: %w", stateDir, err)
	}
	if _, err := os.Stat(filepath.Join(abs, "control.socket")); err != nil {
		return nil, fmt.Errorf("%w: no control socket in %s (start it with `cloudd --state-dir %s`, or point --state-dir at the right place)", ErrNotRunning, abs, abs)
	}
	m, err := microcluster.App(microcluster.Args{StateDir: abs})
	if err != nil {
		return nil, fmt.Errorf("open state directory %s: %w", abs, err)
	}
	return &Client{stateDir: abs, m: m}, nil
}

// StateDir is the daemon's state directory.
func (c *Client) StateDir() string { return c.stateDir }

func (c *Client) local() (*mcclient.Client, error) {
	lc, err := c.m.LocalClient()
	if err != nil {
		return nil, fmt.Errorf("connect to cloudd: %w", err)
	}
	return lc, nil
}

// explain turns transport errors into a sentence a person can act on.
func (c *Client) explain(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("%w: its socket in %s does not answer (start it with `cloudd --state-dir %s`)", ErrNotRunning, c.stateDir, c.stateDir)
	}
	var se lxdapi.StatusError
	if errors.As(err, &se) && se.Status() == http.StatusServiceUnavailable && strings.Contains(strings.ToLower(se.Error()), "not yet initialized") {
		// A member's cloudd that has just started answers the same until
		// its cluster database is open (about a second).
		if _, err := os.Stat(filepath.Join(c.stateDir, "database", "info.yaml")); err == nil {
			return fmt.Errorf("%w: cloudd is starting and its cluster database is not open yet; try again in a few seconds", ErrStarting)
		}
		return fmt.Errorf("%w: run `cloudctl bootstrap` on the first node or `cloudctl cluster join TOKEN` here", ErrNotInitialized)
	}
	if errors.As(err, &se) {
		return errors.New(se.Error())
	}
	return err
}

// Info is what the local daemon says about itself.
type Info struct {
	Name        string
	Address     string
	Initialized bool
}

// Info reports whether this node is bootstrapped or joined, and as whom.
func (c *Client) Info(ctx context.Context) (Info, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lc, err := c.local()
	if err != nil {
		return Info{}, err
	}
	// microcluster's own Status() cannot decode the empty address of a fresh daemon.
	var srv struct {
		Name    string `json:"name"`
		Address string `json:"address"`
		Ready   bool   `json:"ready"`
	}
	if err := lc.Query(ctx, "GET", "cluster/1.0", nil, nil, &srv); err != nil {
		// A daemon that was never bootstrapped has no address yet, and
		// microcluster fails to render it instead of answering.
		if strings.Contains(err.Error(), "not an ip:port") {
			return Info{}, nil
		}
		return Info{}, c.explain(err)
	}
	return Info{Name: srv.Name, Address: srv.Address, Initialized: srv.Ready}, nil
}

// WaitReady waits until the daemon answers on its socket.
func (c *Client) WaitReady(ctx context.Context) error {
	if err := c.m.Ready(ctx); err != nil {
		return c.explain(fmt.Errorf("wait for cloudd: %w", err))
	}
	return nil
}

func (c *Client) query(ctx context.Context, method, path string, in, out any) error {
	lc, err := c.local()
	if err != nil {
		return err
	}
	path, rawQuery, _ := strings.Cut(path, "?")
	u := lxdapi.NewURL().Path(strings.Split(path, "/")...)
	if rawQuery != "" {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return fmt.Errorf("query %s: %w", rawQuery, err)
		}
		for k := range q {
			u = u.WithQuery(k, q.Get(k))
		}
	}
	if err := lc.Query(ctx, method, "1.0", u, in, out); err != nil {
		return c.explain(err)
	}
	return nil
}

// Status returns members, roles and the HA state.
func (c *Client) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	err := c.query(ctx, "GET", "status", nil, &st)
	return st, err
}

// ChangeRoles adds and removes roles of a node.
func (c *Client) ChangeRoles(ctx context.Context, node string, ch api.RolesChange) (api.Node, error) {
	var n api.Node
	err := c.query(ctx, "PATCH", "nodes/"+node+"/roles", ch, &n)
	return n, err
}

// SetLabels sets a node's region and zone.
func (c *Client) SetLabels(ctx context.Context, node string, l api.Labels) error {
	return c.query(ctx, "PATCH", "nodes/"+node+"/labels", l, nil)
}

// Plan returns the recorded cluster plan.
func (c *Client) Plan(ctx context.Context) (api.Plan, error) {
	var p api.Plan
	err := c.query(ctx, "GET", "plan", nil, &p)
	return p, err
}

// IssueToken creates a join token bound to name.
func (c *Client) IssueToken(ctx context.Context, name string, ttl time.Duration) (api.Token, error) {
	var t api.Token
	err := c.query(ctx, "POST", "tokens", api.TokenRequest{Name: name, TTLSeconds: int64(ttl / time.Second)}, &t)
	return t, err
}

// Tokens lists join tokens.
func (c *Client) Tokens(ctx context.Context) ([]api.Token, error) {
	var ts []api.Token
	err := c.query(ctx, "GET", "tokens", nil, &ts)
	return ts, err
}

// RevokeToken withdraws the pending token for name.
func (c *Client) RevokeToken(ctx context.Context, name string) error {
	return c.query(ctx, "DELETE", "tokens/"+name, nil, nil)
}

func initConfig(ni api.NodeInit) (map[string]string, error) {
	b, err := json.Marshal(ni)
	if err != nil {
		return nil, fmt.Errorf("encode node init: %w", err)
	}
	return map[string]string{api.InitConfigKey: string(b)}, nil
}

// Bootstrap makes this node the first member of a new cluster.
func (c *Client) Bootstrap(ctx context.Context, name, address string, ni api.NodeInit) error {
	cfg, err := initConfig(ni)
	if err != nil {
		return err
	}
	if err := c.m.NewCluster(ctx, name, address, cfg); err != nil {
		if cutOff(err) {
			return fmt.Errorf("cloudd stopped in the middle of the bootstrap: start it again (it clears what the bootstrap left half-made when it starts) and run the same command")
		}
		return c.explain(fmt.Errorf("bootstrap: %w", err))
	}
	return nil
}

// cutOff reports whether err means cloudd went away during a request (its
// connection closed before an answer).
func cutOff(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// JoinIntent has cloudd record the join about to start (its name and the
// choices it carries) before anything is spent at the cluster: a join
// cloudd dies in is cleared or finished at its next start.
func (c *Client) JoinIntent(ctx context.Context, name string, jt api.JoinToken, ni api.NodeInit) error {
	cfg, err := joinConfig(jt, ni)
	if err != nil {
		return err
	}
	if err := c.query(ctx, "POST", "join-intent", api.JoinIntent{Name: name, InitConfig: cfg}, nil); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	return nil
}

// joinConfig is the init config a join of ni with jt carries.
func joinConfig(jt api.JoinToken, ni api.NodeInit) (map[string]string, error) {
	ni.TokenName = jt.Name
	return initConfig(ni)
}

// Join makes this node a member of the cluster that issued jt. Call
// CheckToken first: it explains a bad token without changing anything;
// then JoinIntent, then redeem the token for the secret jt carries.
func (c *Client) Join(ctx context.Context, name, address string, jt api.JoinToken, ni api.NodeInit) error {
	cfg, err := joinConfig(jt, ni)
	if err != nil {
		return err
	}
	inner, err := jt.Microcluster()
	if err != nil {
		return err
	}
	if err := c.m.JoinCluster(ctx, name, address, inner, cfg); err != nil {
		if cutOff(err) {
			return fmt.Errorf("cloudd stopped in the middle of the join: start it again (it clears or finishes what the join left when it starts) and run the same command; the cluster gives the token back 1.5 to 2 minutes after the join began (the command waits for it when that is close)")
		}
		return c.explain(fmt.Errorf("join: %w", err))
	}
	return nil
}

// Remove removes a member from the cluster.
func (c *Client) Remove(ctx context.Context, name string, force bool) (api.NodeRemoval, error) {
	// cloudd asks the role drivers' guards first ("the only copy of the
	// control databases"), then has microcluster remove the member; a node
	// that must first give up a role (a compute node's instances move) is
	// answered with what it waits for.
	path := "nodes/" + name
	if force {
		path += "?force=1"
	}
	var r api.NodeRemoval
	err := c.query(ctx, "DELETE", path, nil, &r)
	return r, err
}

// LocalAddressFor returns this machine's address used to reach target
// ("host:port"). It only asks the routing table; nothing is sent.
func LocalAddressFor(target string) (string, error) {
	conn, err := net.Dial("udp", target)
	if err != nil {
		return "", fmt.Errorf("no route to %s: %w", target, err)
	}
	defer conn.Close()
	host, _, err := net.SplitHostPort(conn.LocalAddr().String())
	if err != nil {
		return "", fmt.Errorf("local address: %w", err)
	}
	return host, nil
}

// Databases returns the control layer's instances and service databases.
func (c *Client) Databases(ctx context.Context) (api.Databases, error) {
	var d api.Databases
	err := c.query(ctx, "GET", "databases", nil, &d)
	return d, err
}

// Credentials returns one service's database credentials (root, local socket only).
func (c *Client) Credentials(ctx context.Context, service string) (api.DBCredentials, error) {
	var cr api.DBCredentials
	err := c.query(ctx, "GET", "databases/"+service+"/credentials", nil, &cr)
	return cr, err
}

// Manifest returns the cluster's effective manifest (YAML).
func (c *Client) Manifest(ctx context.Context) (string, error) {
	var out map[string]string
	if err := c.query(ctx, "GET", "manifest", nil, &out); err != nil {
		return "", err
	}
	return out["yaml"], nil
}

// CheckDatabases has cloudd connect as each service (or the ones named) to
// each of its endpoints and write and read back a row (local socket only).
func (c *Client) CheckDatabases(ctx context.Context, services []string) ([]api.DBCheck, error) {
	var out []api.DBCheck
	err := c.query(ctx, "POST", "databases/check", api.DBCheckRequest{Services: services}, &out)
	return out, err
}

// DaemonManifest is what GET /1.0/manifest answers: the effective manifest,
// and before bootstrap the text of cloudd's own --manifest overlay.
type DaemonManifest struct {
	YAML        string `json:"yaml"`
	Overlay     string `json:"overlay"`
	Initialized string `json:"initialized"`
}

// DaemonManifest returns the manifest cloudd holds (before bootstrap: its own).
func (c *Client) DaemonManifest(ctx context.Context) (DaemonManifest, error) {
	var out DaemonManifest
	err := c.query(ctx, "GET", "manifest", nil, &out)
	return out, err
}
