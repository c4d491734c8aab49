package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/preflight"
)

// errForbidden means a member refused the join secret of a preflight call.
var errForbidden = errors.New("refused")

// planTimeout bounds a preflight plan call with its large exchange; a path
// that drops large packets stalls it until then.
const planTimeout = preflight.ExchangeTimeout + 5*time.Second

// probeTimeout bounds a member's dial back (blocked ports cost a dial
// timeout each, a path that drops large packets a few exchanges).
const probeTimeout = 75 * time.Second

// untrusted POSTs in to https://addr/1.0/path as a joiner: over TLS cfg
// (the joiner's: the cluster pinned, the node's certificate presented),
// from the local address (nil: any), with TCP segments clamped to mss (0:
// not clamped).
func untrusted(ctx context.Context, cfg *tls.Config, addr, path string, in, out any, mss int, local net.IP, timeout time.Duration) error {
	tr := joinerTransport(cfg, mss, local, false)
	defer tr.CloseIdleConnections()
	return post(ctx, tr, addr, path, in, out, timeout)
}

// joinerTransport is the transport of untrusted; keepAlive lets the
// requests to one member share a TLS connection (the caller closes it).
func joinerTransport(cfg *tls.Config, mss int, local net.IP, keepAlive bool) *http.Transport {
	var la net.Addr
	if local != nil {
		la = &net.TCPAddr{IP: local}
	}
	return &http.Transport{TLSClientConfig: cfg, DialContext: preflight.Dialer(mss, la).DialContext, DisableKeepAlives: !keepAlive}
}

// post is untrusted over tr.
func post(ctx context.Context, tr *http.Transport, addr, path string, in, out any, timeout time.Duration) error {
	hc := &http.Client{Transport: tr, Timeout: timeout}
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/1.0/"+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Type     string          `json:"type"`
		Error    string          `json:"error"`
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&env); err != nil {
		return fmt.Errorf("unreadable answer: %w", err)
	}
	// Read to the end, so a kept-alive connection can carry the next one.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode == http.StatusForbidden {
		return fmt.Errorf("%w: %s", errForbidden, env.Error)
	}
	if env.Type == "error" || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the cluster answered %s: %s", resp.Status, env.Error)
	}
	if err := json.Unmarshal(env.Metadata, out); err != nil {
		return fmt.Errorf("unreadable answer: %w", err)
	}
	return nil
}

// PreflightPorts asks the local cloudd which ports a node needs (bootstrap).
func (c *Client) PreflightPorts(ctx context.Context, req preflight.PortsRequest) ([]preflight.PortSpec, error) {
	var out []preflight.PortSpec
	err := c.query(ctx, "POST", "preflight/ports", req, &out)
	return out, err
}

// CheckCluster has every member check every other (`cloudctl cluster check`).
func (c *Client) CheckCluster(ctx context.Context) (preflight.Report, error) {
	var rep preflight.Report
	err := c.query(ctx, "POST", "preflight/cluster", struct{}{}, &rep)
	return rep, err
}

// PreflightBootstrap checks what a bootstrap can check alone: the address
// is this machine's, and every port the node's roles need is free. The
// local cloudd says which ports (its role drivers declare them).
func (c *Client) PreflightBootstrap(ctx context.Context, req preflight.PortsRequest) (preflight.Findings, error) {
	host, _, err := net.SplitHostPort(req.Node.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q is not host:port", req.Node.Address)
	}
	if !preflight.HasAddress(host) {
		return preflight.Findings{preflight.AddressMissing(req.Node.Name, host)}, nil
	}
	ports, err := c.PreflightPorts(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("ask cloudd which ports the roles need: %w", err)
	}
	var fs preflight.Findings
	for _, p := range ports {
		cl, checked, err := preflight.Bind(p)
		switch {
		case !checked:
			fs = append(fs, preflight.NotChecked(req.Node.Name, req.Node.Name, p, "not a port (VRRP is IP protocol 112)"))
		case err != nil:
			fs = append(fs, preflight.PortTaken(req.Node.Name, p, err))
		default:
			_ = cl.Close()
			fs = append(fs, preflight.PortFree(req.Node.Name, p))
		}
	}
	return fs, nil
}

// PreflightJoin checks, before a join changes anything, that the joiner
// (node) and the cluster that issued its token (jn) can work together: its address is
// on this machine; the name and address are unique; the ports its roles
// need are free here; every member reaches it on them (members dial back to
// listeners opened here for the duration) and it reaches every member;
// large packets pass both ways; the clocks agree; the versions are
// compatible. A bad token is explained as by CheckToken. It changes nothing.
func PreflightJoin(ctx context.Context, jn Joiner, node preflight.NodeSpec, now func() time.Time) (preflight.Findings, error) {
	jt := jn.Token
	host, _, err := net.SplitHostPort(node.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q is not host:port", node.Address)
	}
	if !preflight.HasAddress(host) {
		return preflight.Findings{preflight.AddressMissing(node.Name, host)}, nil
	}
	// What CheckToken refuses without asking the cluster (another node's
	// token, an expired one) is refused here the same way; a token the
	// cluster rejects is explained below, when it refuses the secret.
	if node.Name != jt.Name || (!jt.ExpiresAt.IsZero() && !jt.ExpiresAt.After(now())) {
		if _, err := CheckToken(ctx, jn, node.Name, now()); err != nil {
			return nil, err
		}
	}
	j := joiner{jn: jn, node: node, local: net.ParseIP(host), mtu: preflight.InterfaceMTU(host)}
	req := preflight.JoinRequest{Token: jt.Name, Secret: jt.Secret, Node: node, Version: api.Version, Pad: preflight.Pad(preflight.PadSize)}

	// The plan, from the first member that answers: all are asked at once,
	// so unreachable ones cost one deadline, not one each.
	first, answered, errs := j.firstPlan(ctx, req)
	plan := first.plan
	if !answered {
		for _, err := range errs {
			if errors.Is(err, errForbidden) || errors.Is(err, ErrForeignCluster) {
				if _, cerr := CheckToken(ctx, jn, node.Name, now()); cerr != nil {
					return nil, cerr
				}
				return nil, fmt.Errorf("the cluster refused the preflight checks (%v): ask for a new token with `cloudctl cluster add %s`", err, jt.Name)
			}
		}
		per := make([]preflight.Findings, len(jt.Addresses))
		var wg sync.WaitGroup
		for i, addr := range jt.Addresses {
			wg.Add(1)
			go func(i int, addr string) {
				defer wg.Done()
				per[i] = j.diagnose(ctx, addr, addr, req, errs[i])
			}(i, addr)
		}
		wg.Wait()
		var fs preflight.Findings
		for _, f := range per {
			fs = append(fs, f...)
		}
		return tokenFirst(ctx, jn, node.Name, now, fs)
	}
	fs := append(preflight.Findings{}, plan.Findings...)

	// The ports, free here: held open while the members dial back.
	nonce, err := preflight.NewNonce()
	if err != nil {
		return nil, err
	}
	echo := preflight.NewEcho(nonce)
	defer echo.Close()
	taken := false
	for _, p := range plan.Ports {
		cl, checked, err := preflight.Bind(p)
		switch {
		case !checked:
			fs = append(fs, preflight.NotChecked(node.Name, node.Name, p, "not a port (VRRP is IP protocol 112)"))
		case err != nil:
			fs = append(fs, preflight.PortTaken(node.Name, p, err))
			taken = true
		default:
			if ln, ok := cl.(net.Listener); ok {
				echo.Serve(ln)
			} else {
				defer cl.Close()
			}
			fs = append(fs, preflight.PortFree(node.Name, p))
		}
	}
	if taken {
		return tokenFirst(ctx, jn, node.Name, now, fs)
	}

	// Every member, both ways.
	probe := req
	probe.Pad, probe.Nonce = "", nonce
	per := make([]preflight.Findings, len(plan.Members))
	var wg sync.WaitGroup
	for i, m := range plan.Members {
		wg.Add(1)
		go func(i int, m preflight.MemberPlan) {
			defer wg.Done()
			var pre *timedPlan
			if m.Address == first.addr {
				pre = &first
			}
			per[i] = j.member(ctx, m, req, probe, pre)
		}(i, m)
	}
	wg.Wait()
	for _, mf := range per {
		fs = append(fs, mf...)
	}
	return tokenFirst(ctx, jn, node.Name, now, fs)
}

// tokenFirst explains failed checks by the token when it stopped being
// usable while they ran (another machine redeemed it, it expired or was
// revoked): then the members refuse the joiner and the name shows as taken,
// and the token's sentence is the one that says what happened.
func tokenFirst(ctx context.Context, jn Joiner, name string, now func() time.Time, fs preflight.Findings) (preflight.Findings, error) {
	if len(fs.Of(preflight.Fail)) == 0 {
		return fs, nil
	}
	if _, err := CheckToken(ctx, jn, name, now()); errors.Is(err, ErrTokenRejected) {
		return nil, err
	}
	return fs, nil
}

// joiner is the joining side of the preflight checks.
type joiner struct {
	jn    Joiner
	node  preflight.NodeSpec
	local net.IP
	mtu   int
}

// timedPlan is a member's plan with when it was asked and answered.
type timedPlan struct {
	addr       string
	plan       preflight.JoinPlan
	sent, recv time.Time
}

// firstPlan asks every address of the token for the plan at once and
// returns the first answer, or every address's error.
func (j joiner) firstPlan(ctx context.Context, req preflight.JoinRequest) (timedPlan, bool, []error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		i   int
		tp  timedPlan
		err error
	}
	ch := make(chan answer, len(j.jn.Token.Addresses))
	for i, addr := range j.jn.Token.Addresses {
		go func(i int, addr string) {
			plan, sent, recv, err := j.plan(ctx, addr, req, 0, planTimeout)
			ch <- answer{i, timedPlan{addr: addr, plan: plan, sent: sent, recv: recv}, err}
		}(i, addr)
	}
	errs := make([]error, len(j.jn.Token.Addresses))
	for range j.jn.Token.Addresses {
		a := <-ch
		if a.err == nil {
			return a.tp, true, nil
		}
		errs[a.i] = a.err
	}
	return timedPlan{}, false, errs
}

func (j joiner) plan(ctx context.Context, addr string, req preflight.JoinRequest, mss int, timeout time.Duration) (preflight.JoinPlan, time.Time, time.Time, error) {
	var plan preflight.JoinPlan
	sent := time.Now()
	err := untrusted(ctx, j.jn.tlsConfig(), addr, "preflight", req, &plan, mss, j.local, timeout)
	return plan, sent, time.Now(), err
}

// diagnose explains a failed plan call to the member name at addr: its
// port does not answer, or it does but large exchanges do not pass.
func (j joiner) diagnose(ctx context.Context, name, addr string, req preflight.JoinRequest, callErr error) preflight.Findings {
	cp := preflight.ClusterPort(addr)
	if err := preflight.Dial(ctx, addr); err != nil {
		return preflight.Findings{preflight.Unreached(j.node.Name, name, cp, err, false)}
	}
	largest := preflight.LargestPacket(ctx, j.mtu, func(ctx context.Context, mss int) error {
		timeout := preflight.SearchTimeout + 2*time.Second
		if mss <= preflight.MinMSS {
			timeout = planTimeout
		}
		_, _, _, err := j.plan(ctx, addr, req, mss, timeout)
		return err
	})
	if largest > 0 {
		return preflight.Findings{preflight.Reached(j.node.Name, name, cp), preflight.MTUDrop(j.node.Name, name, j.mtu, largest)}
	}
	return preflight.Findings{preflight.Unreached(j.node.Name, name, cp, callErr, false)}
}

// member checks one member: its cloudd port with a large exchange and its
// clock and version, its dial back, and the joiner dialing its role ports.
func (j joiner) member(ctx context.Context, m preflight.MemberPlan, req, probe preflight.JoinRequest, pre *timedPlan) preflight.Findings {
	cp := preflight.ClusterPort(m.Address)
	// The plan and the probe share one TLS connection: a handshake fewer
	// per member on both sides (two CPUs, 25 members: it shows).
	tr := joinerTransport(j.jn.tlsConfig(), 0, j.local, true)
	defer tr.CloseIdleConnections()
	var (
		plan       preflight.JoinPlan
		sent, recv time.Time
		err        error
	)
	if pre != nil {
		// The member that gave the plan has been asked already.
		plan, sent, recv = pre.plan, pre.sent, pre.recv
	} else {
		sent = time.Now()
		err = post(ctx, tr, m.Address, "preflight", req, &plan, planTimeout)
		recv = time.Now()
	}
	if err != nil {
		return j.diagnose(ctx, m.Name, m.Address, req, err)
	}
	off, unc := preflight.Offset(sent, plan.Time, recv)
	fs := preflight.Findings{
		preflight.Reached(j.node.Name, m.Name, cp),
		preflight.MTUOK(j.node.Name, m.Name, j.mtu),
		preflight.Clock(j.node.Name, m.Name, off, unc),
		preflight.Version(j.node.Name, api.Version, m.Name, plan.Version),
	}
	var res preflight.ProbeResult
	if err := post(ctx, tr, m.Address, "preflight/probe", probe, &res, probeTimeout); err != nil {
		fs = append(fs, preflight.Finding{Check: preflight.CheckReach, From: m.Name, To: j.node.Name, Severity: preflight.Fail,
			Message: fmt.Sprintf("%s could not check its way back to %s: %v", m.Name, j.node.Name, err),
			Fix:     fmt.Sprintf("look at cloudd's log on %s, and try again", m.Name)})
	} else {
		fs = append(fs, res.Findings...)
	}
	host, _, _ := net.SplitHostPort(m.Address)
	for _, p := range m.Dial {
		if p.Port == cp.Port && p.Proto == cp.Proto {
			continue
		}
		if p.Proto != "tcp" {
			fs = append(fs, preflight.NotChecked(j.node.Name, m.Name, p, "only TCP ports are probed"))
			continue
		}
		if err := preflight.Dial(ctx, net.JoinHostPort(host, strconv.Itoa(p.Port))); err != nil {
			fs = append(fs, preflight.Unreached(j.node.Name, m.Name, p, err, true))
		} else {
			fs = append(fs, preflight.Reached(j.node.Name, m.Name, p))
		}
	}
	return fs
}
