package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/canonical/lxd/lxd/response"
	lxdapi "github.com/canonical/lxd/shared/api"
	"github.com/canonical/microcluster/rest"
	"github.com/canonical/microcluster/state"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/client"
	"github.com/cloudctl/cloudctl/preflight"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// The preflight endpoints (docs/preflight.md):
//
//   - POST preflight and POST preflight/probe answer a joiner, which is not
//     trusted yet: it proves the join secret (like token-check), bodies are
//     small, and the answers say only what a node about to join needs (the
//     ports its roles need, the members and their ports). probe makes this
//     member dial back to the joiner's listeners.
//   - POST preflight/echo (members only) answers a large exchange with this
//     member's clock, for another member's checks.
//   - POST preflight/peers (members only) makes this member check every other.
//   - POST preflight/cluster (members only) runs preflight/peers on every
//     member and gathers the findings: `cloudctl cluster check`.
//   - POST preflight/ports (local socket, also before bootstrap) lists the
//     ports a node with given roles needs, for bootstrap's local checks.
func (d *Daemon) preflightEndpoints() []rest.Endpoint {
	return []rest.Endpoint{
		{Path: "preflight", Post: rest.EndpointAction{Handler: d.handlePreflightPlan, AllowUntrusted: true}},
		{Path: "preflight/probe", Post: rest.EndpointAction{Handler: d.handlePreflightProbe, AllowUntrusted: true}},
		{Path: "preflight/echo", Post: rest.EndpointAction{Handler: d.handlePreflightEcho}},
		{Path: "preflight/peers", Post: rest.EndpointAction{Handler: d.handlePreflightPeers}},
		{Path: "preflight/cluster", Post: rest.EndpointAction{Handler: d.handlePreflightCluster}},
		{Path: "preflight/ports", Post: rest.EndpointAction{Handler: d.handlePreflightPorts}, AllowedBeforeInit: true},
	}
}

// preflightTimeout bounds one member's checks of the others (a blocked port
// costs a dial timeout, a path that drops large packets a few exchanges).
const preflightTimeout = 60 * time.Second

// decodeUntrusted decodes the body of an untrusted preflight request and
// checks its join secret. A bad secret gets a refusal that says nothing else.
func (d *Daemon) decodeUntrusted(ctx context.Context, s *state.State, r *http.Request) (preflight.JoinRequest, error) {
	req, err := decodeJoinRequest(r)
	if err != nil {
		return req, err
	}
	// The same per-source limit and backoff as the token endpoints: this
	// one must not become a way round them to guess secrets.
	src, now := sourceOf(r), d.cfg.Now()
	if wait := d.untrusted.admit(src, now); wait > 0 {
		return req, tooMany("join token attempts", src, wait)
	}
	// Judged every time, not remembered: a token redeemed or revoked a
	// moment ago must refuse the preflight (a join run again after it was
	// cut off waits for its token there).
	res, err := d.checkToken(ctx, s, api.TokenCheck{Name: req.Token, Secret: req.Secret}, joinerOf(r))
	if err != nil {
		return req, err
	}
	d.untrusted.result(src, res.Reason != "unknown", now)
	if !res.Valid {
		return req, lxdapi.StatusErrorf(http.StatusForbidden, "the join secret is not valid here: check the token with `cloudctl cluster join`")
	}
	return req, validJoinNode(req.Node)
}

// decodeJoinRequest reads an untrusted preflight body: bounded, and
// refused whole when it is not exactly a JoinRequest.
func decodeJoinRequest(r *http.Request) (preflight.JoinRequest, error) {
	var req preflight.JoinRequest
	if err := readUntrustedBody(r, preflight.MaxUntrustedBody); err != nil {
		return req, err
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, lxdapi.StatusErrorf(http.StatusBadRequest, "invalid request body")
	}
	return req, nil
}

// validJoinNode checks the joiner's own account of itself.
func validJoinNode(n preflight.NodeSpec) error {
	if err := api.ValidNodeName(n.Name); err != nil {
		return lxdapi.StatusErrorf(http.StatusBadRequest, "%v", err)
	}
	if _, _, err := net.SplitHostPort(n.Address); err != nil {
		return lxdapi.StatusErrorf(http.StatusBadRequest, "the joiner's address %q is not host:port", n.Address)
	}
	for _, rl := range n.Roles {
		if !roles.Valid(roles.Role(rl)) {
			return lxdapi.StatusErrorf(http.StatusBadRequest, "unknown role %q: use control, compute or storage", rl)
		}
	}
	return nil
}

// withNode is env with n added as a member (the cluster after a join).
func withNode(env *driver.Env, n driver.Node) *driver.Env {
	e := *env
	e.Nodes = append(append([]driver.Node(nil), env.Nodes...), n)
	return &e
}

// portsOf are the ports n needs, from every driver, without repeats.
func (d *Daemon) portsOf(env *driver.Env, n driver.Node) []preflight.PortSpec {
	out := []preflight.PortSpec{preflight.ClusterPort(n.Address)}
	seen := map[string]bool{out[0].String(): true}
	for _, dr := range d.drivers {
		for _, p := range dr.Ports(d.envFor(env, dr), n) {
			ps := preflight.PortSpec{Port: p.Number, Proto: p.Proto, Purpose: p.Purpose, Role: dr.Name(), Peers: p.Peers}
			if !seen[ps.String()] {
				seen[ps.String()] = true
				out = append(out, ps)
			}
		}
	}
	return out
}

// usedBy are the ports of to that from will connect to: cloudd's, and the
// peer ports of every driver that applies to both.
func (d *Daemon) usedBy(env *driver.Env, from, to driver.Node) []preflight.PortSpec {
	out := []preflight.PortSpec{preflight.ClusterPort(to.Address)}
	seen := map[string]bool{out[0].String(): true}
	for _, dr := range d.drivers {
		e := d.envFor(env, dr)
		if !dr.AppliesTo(e, from) || !dr.AppliesTo(e, to) {
			continue
		}
		for _, p := range dr.Ports(e, to) {
			ps := preflight.PortSpec{Port: p.Number, Proto: p.Proto, Purpose: p.Purpose, Role: dr.Name(), Peers: p.Peers}
			if p.Peers && !seen[ps.String()] {
				seen[ps.String()] = true
				out = append(out, ps)
			}
		}
	}
	return out
}

// joinPlan is what a joiner with req's node must check, computed from the
// drivers on the cluster as it will be after the join.
// The environment may be a few seconds old (preflightMemo).
func (d *Daemon) joinPlan(ctx context.Context, s *state.State, req preflight.JoinRequest) (preflight.JoinPlan, driver.Node, *driver.Env, error) {
	env := d.preflight.cachedEnv(time.Now())
	if env == nil {
		var err error
		if env, err = d.buildEnv(ctx, s); err != nil {
			return preflight.JoinPlan{}, driver.Node{}, nil, err
		}
		d.preflight.rememberEnv(env, time.Now())
	}
	host, _, _ := net.SplitHostPort(req.Node.Address)
	jn := driver.Node{Name: req.Node.Name, Address: req.Node.Address, IP: host, Roles: roles.Normalize(toRoles(req.Node.Roles)), JoinedAt: d.cfg.Now()}
	after := withNode(env, jn)
	plan := preflight.JoinPlan{Cluster: env.Plan.Cluster, Version: api.Version, Ports: d.portsOf(after, jn)}
	unique := true
	for _, m := range env.Nodes {
		if m.Name == jn.Name {
			plan.Findings = append(plan.Findings, preflight.NameTaken(jn.Name))
			unique = false
		} else if net.ParseIP(m.IP) != nil && net.ParseIP(m.IP).Equal(net.ParseIP(host)) {
			plan.Findings = append(plan.Findings, preflight.AddressTaken(jn.Name, host, m.Name))
			unique = false
		}
		plan.Members = append(plan.Members, preflight.MemberPlan{Name: m.Name, Address: m.Address, Dial: d.usedBy(after, jn, m), DialBack: d.usedBy(after, m, jn)})
	}
	if unique {
		plan.Findings = append(plan.Findings, preflight.Unique(jn.Name, host))
	}
	return plan, jn, after, nil
}

// handlePreflightPlan answers a joiner holding the join secret with what it
// must check, this member's clock, and its large payload back.
func (d *Daemon) handlePreflightPlan(s *state.State, r *http.Request) response.Response {
	ctx, cancel := reqCtx(s, r)
	defer cancel()
	req, err := d.decodeUntrusted(ctx, s, r)
	if err != nil {
		return response.SmartError(err)
	}
	plan, _, _, err := d.joinPlan(ctx, s, req)
	if err != nil {
		return response.SmartError(err)
	}
	plan.Node = s.Name()
	plan.Pad = preflight.Pad(min(len(req.Pad), preflight.PadSize))
	plan.Time = d.cfg.Now()
	return response.SyncResponse(true, plan)
}

// handlePreflightProbe dials back to the joiner's listeners on the ports
// this member will use, and says what it found. It dials only the address
// the request came from.
func (d *Daemon) handlePreflightProbe(s *state.State, r *http.Request) response.Response {
	ctx, cancel := context.WithTimeout(r.Context(), preflightTimeout)
	defer cancel()
	req, err := d.decodeUntrusted(ctx, s, r)
	if err != nil {
		return response.SmartError(err)
	}
	if req.Nonce == "" {
		return response.BadRequest(errors.New("a probe needs the nonce of the joiner's listeners"))
	}
	host, _, _ := net.SplitHostPort(req.Node.Address)
	from, _, _ := net.SplitHostPort(r.RemoteAddr)
	if !net.ParseIP(host).Equal(net.ParseIP(from)) {
		return response.SmartError(lxdapi.StatusErrorf(http.StatusBadRequest, "the probe comes from %s but the joiner's address is %s: send it from the joiner's cluster address", from, host))
	}
	plan, jn, _, err := d.joinPlan(ctx, s, req)
	if err != nil {
		return response.SmartError(err)
	}
	var back []preflight.PortSpec
	for _, m := range plan.Members {
		if m.Name == s.Name() {
			back = m.DialBack
		}
	}
	res := preflight.ProbeResult{Node: s.Name(), Version: api.Version}
	res.Findings = d.dialBack(ctx, s.Name(), jn, back, req.Nonce)
	res.Time = d.cfg.Now()
	return response.SyncResponse(true, res)
}

// dialBack dials the joiner's listeners on ports; the first (cloudd's port)
// carries a large exchange, which checks the path MTU.
func (d *Daemon) dialBack(ctx context.Context, self string, jn driver.Node, ports []preflight.PortSpec, nonce string) preflight.Findings {
	out := make(preflight.Findings, len(ports)+1)
	var wg sync.WaitGroup
	for i, p := range ports {
		if p.Proto != "tcp" {
			out[i] = preflight.NotChecked(self, jn.Name, p, "only TCP ports are probed")
			continue
		}
		wg.Add(1)
		go func(i int, p preflight.PortSpec) {
			defer wg.Done()
			addr := net.JoinHostPort(jn.IP, strconv.Itoa(p.Port))
			size := 16
			if i == 0 {
				size = preflight.PadSize
			}
			err := preflight.DialBack(ctx, addr, nonce, size, 0, preflight.ExchangeTimeout)
			if err == nil {
				out[i] = preflight.Reached(self, jn.Name, p)
				if i == 0 {
					out[len(ports)] = preflight.MTUOK(self, jn.Name, preflight.InterfaceMTU(localIPFor(addr)))
				}
				return
			}
			if i == 0 && preflight.Dial(ctx, addr) == nil {
				// The port answers but the large exchange does not pass.
				mtu := preflight.InterfaceMTU(localIPFor(addr))
				largest := preflight.LargestPacket(ctx, mtu, func(ctx context.Context, mss int) error {
					timeout := preflight.SearchTimeout
					if mss <= preflight.MinMSS {
						timeout = preflight.ExchangeTimeout
					}
					return preflight.DialBack(ctx, addr, nonce, preflight.PadSize, mss, timeout)
				})
				if largest > 0 {
					out[i] = preflight.Reached(self, jn.Name, p)
					out[len(ports)] = preflight.MTUDrop(self, jn.Name, mtu, largest)
					return
				}
			}
			out[i] = preflight.Unreached(self, jn.Name, p, err, false)
		}(i, p)
	}
	wg.Wait()
	return compact(out)
}

// compact drops the empty findings of a preallocated list.
func compact(fs preflight.Findings) preflight.Findings {
	out := preflight.Findings{}
	for _, f := range fs {
		if f.Check != "" {
			out = append(out, f)
		}
	}
	return out
}

// localIPFor is this machine's address used to reach addr.
func localIPFor(addr string) string {
	ip, err := client.LocalAddressFor(addr)
	if err != nil {
		return ""
	}
	return ip
}

func (d *Daemon) handlePreflightEcho(s *state.State, r *http.Request) response.Response {
	var req preflight.EchoRequest
	if err := decode(r, &req); err != nil {
		return response.SmartError(err)
	}
	return response.SyncResponse(true, preflight.ProbeResult{Node: s.Name(), Version: api.Version, Pad: preflight.Pad(min(len(req.Pad), preflight.PadSize)), Time: d.cfg.Now()})
}

// echoClient is a client for another member's cloudd on a fresh connection
// whose TCP segments are clamped to mss (0: not clamped).
func echoClient(s *state.State, mss int, timeout time.Duration) (*http.Client, error) {
	fp, err := clusterFingerprint(s)
	if err != nil {
		return nil, err
	}
	dialer := preflight.Dialer(mss, nil)
	tr := &http.Transport{TLSClientConfig: client.PinnedTLS(fp, s.ServerCert().KeyPair()), DialContext: dialer.DialContext, DisableKeepAlives: true}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// echo makes one large exchange with the member at addr and returns its
// answer and the local clock before and after.
func echo(ctx context.Context, s *state.State, addr string, mss int, timeout time.Duration) (preflight.ProbeResult, time.Time, time.Time, error) {
	var res preflight.ProbeResult
	hc, err := echoClient(s, mss, timeout)
	if err != nil {
		return res, time.Time{}, time.Time{}, err
	}
	defer hc.CloseIdleConnections()
	body, err := json.Marshal(preflight.EchoRequest{Pad: preflight.Pad(preflight.PadSize)})
	if err != nil {
		return res, time.Time{}, time.Time{}, fmt.Errorf("encode echo: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/"+PathPrefix+"/preflight/echo", bytes.NewReader(body))
	if err != nil {
		return res, time.Time{}, time.Time{}, err
	}
	sent := time.Now()
	err = doJSON(hc, req, &res)
	return res, sent, time.Now(), err
}

// doJSON sends req and decodes a microcluster answer's metadata into out.
func doJSON(hc *http.Client, req *http.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Metadata json.RawMessage `json:"metadata"`
		Error    string          `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&env); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, env.Error)
	}
	return json.Unmarshal(env.Metadata, out)
}

// checkPeers is this member's view of every other: cloudd's port with a
// large exchange (the path MTU) and the clock, then the ports of the roles
// they share.
func (d *Daemon) checkPeers(ctx context.Context, s *state.State) (preflight.Findings, error) {
	env, err := d.buildEnv(ctx, s)
	if err != nil {
		return nil, err
	}
	self := env.Local
	var mu sync.Mutex
	out := preflight.Findings{}
	add := func(fs ...preflight.Finding) {
		mu.Lock()
		out = append(out, fs...)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, m := range env.Nodes {
		if m.Name == self.Name {
			continue
		}
		ports := d.usedBy(env, self, m)
		for i, p := range ports {
			wg.Add(1)
			go func(i int, p preflight.PortSpec, m driver.Node) {
				defer wg.Done()
				if i == 0 {
					add(d.checkCloudd(ctx, s, self, m, p)...)
					return
				}
				add(checkPort(ctx, self.Name, m, p))
			}(i, p, m)
		}
	}
	wg.Wait()
	sortFindings(out)
	return out, nil
}

// checkCloudd checks another member's cloudd port: reach, path MTU, clock.
func (d *Daemon) checkCloudd(ctx context.Context, s *state.State, self, m driver.Node, p preflight.PortSpec) preflight.Findings {
	res, sent, recv, err := echo(ctx, s, m.Address, 0, preflight.ExchangeTimeout)
	mtu := preflight.InterfaceMTU(self.IP)
	if err == nil {
		off, unc := preflight.Offset(sent, res.Time, recv)
		return preflight.Findings{preflight.Reached(self.Name, m.Name, p), preflight.MTUOK(self.Name, m.Name, mtu), preflight.Clock(self.Name, m.Name, off, unc)}
	}
	if derr := preflight.Dial(ctx, m.Address); derr != nil {
		return preflight.Findings{preflight.Unreached(self.Name, m.Name, p, derr, false)}
	}
	largest := preflight.LargestPacket(ctx, mtu, func(ctx context.Context, mss int) error {
		timeout := preflight.SearchTimeout
		if mss <= preflight.MinMSS {
			timeout = preflight.ExchangeTimeout
		}
		_, _, _, err := echo(ctx, s, m.Address, mss, timeout)
		return err
	})
	if largest > 0 {
		return preflight.Findings{preflight.Reached(self.Name, m.Name, p), preflight.MTUDrop(self.Name, m.Name, mtu, largest)}
	}
	return preflight.Findings{preflight.Unreached(self.Name, m.Name, p, err, false)}
}

// checkPort dials a role's port on another member.
func checkPort(ctx context.Context, self string, m driver.Node, p preflight.PortSpec) preflight.Finding {
	if p.Proto != "tcp" {
		return preflight.NotChecked(self, m.Name, p, "only TCP ports are probed")
	}
	if err := preflight.Dial(ctx, net.JoinHostPort(m.IP, strconv.Itoa(p.Port))); err != nil {
		return preflight.Unreached(self, m.Name, p, err, true)
	}
	return preflight.Reached(self, m.Name, p)
}

func sortFindings(fs preflight.Findings) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.From != b.From {
			return a.From < b.From
		}
		if a.To != b.To {
			return a.To < b.To
		}
		if a.Check != b.Check {
			return a.Check < b.Check
		}
		return a.Port < b.Port
	})
}

// peersAnswer is what POST /1.0/preflight/peers answers.
type peersAnswer struct {
	Node     string             `json:"node"`
	Version  string             `json:"version"`
	Findings preflight.Findings `json:"findings"`
}

func (d *Daemon) handlePreflightPeers(s *state.State, r *http.Request) response.Response {
	ctx, cancel := context.WithTimeout(r.Context(), preflightTimeout)
	defer cancel()
	fs, err := d.checkPeers(ctx, s)
	if err != nil {
		return response.SmartError(err)
	}
	return response.SyncResponse(true, peersAnswer{Node: s.Name(), Version: api.Version, Findings: fs})
}

// handlePreflightCluster has every member check the others and gathers
// the findings, with the versions compared against this member's.
func (d *Daemon) handlePreflightCluster(s *state.State, r *http.Request) response.Response {
	ctx, cancel := context.WithTimeout(r.Context(), preflightTimeout+20*time.Second)
	defer cancel()
	env, err := d.buildEnv(ctx, s)
	if err != nil {
		return response.SmartError(err)
	}
	hc, err := echoClient(s, 0, preflightTimeout+10*time.Second)
	if err != nil {
		return response.SmartError(err)
	}
	rep := preflight.Report{Members: make([]preflight.MemberReport, len(env.Nodes)), Findings: preflight.Findings{}}
	answers := make([]peersAnswer, len(env.Nodes))
	var wg sync.WaitGroup
	for i, m := range env.Nodes {
		rep.Members[i] = preflight.MemberReport{Name: m.Name, Address: m.Address}
		wg.Add(1)
		go func(i int, m driver.Node) {
			defer wg.Done()
			if m.Name == s.Name() {
				fs, err := d.checkPeers(ctx, s)
				if err != nil {
					rep.Members[i].Error = err.Error()
					return
				}
				answers[i] = peersAnswer{Node: m.Name, Version: api.Version, Findings: fs}
				return
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+m.Address+"/"+PathPrefix+"/preflight/peers", bytes.NewReader([]byte("{}")))
			if err == nil {
				err = doJSON(hc, req, &answers[i])
			}
			if err != nil {
				rep.Members[i].Error = err.Error()
			}
		}(i, m)
	}
	wg.Wait()
	for i, m := range env.Nodes {
		if rep.Members[i].Error != "" {
			rep.Findings = append(rep.Findings, preflight.Finding{Check: preflight.CheckReach, From: s.Name(), To: m.Name, Severity: preflight.Fail,
				Message: fmt.Sprintf("%s could not have %s check the others: %s", s.Name(), m.Name, rep.Members[i].Error),
				Fix:     fmt.Sprintf("check that cloudd runs on %s and that %s reaches it (`cloudctl status`)", m.Name, s.Name())})
			continue
		}
		rep.Members[i].Version = answers[i].Version
		rep.Findings = append(rep.Findings, answers[i].Findings...)
		if m.Name != s.Name() {
			rep.Findings = append(rep.Findings, preflight.Version(s.Name(), api.Version, m.Name, answers[i].Version))
		}
	}
	sortFindings(rep.Findings)
	rep.Worst = rep.Findings.Worst()
	return response.SyncResponse(true, rep)
}

// handlePreflightPorts lists the ports a node with the given roles needs
// (local socket only; answered before bootstrap, from cloudd's manifest).
func (d *Daemon) handlePreflightPorts(s *state.State, r *http.Request) response.Response {
	if r.RemoteAddr != "@" {
		return response.Forbidden(errors.New("this is only answered on the local control socket (root on this machine)"))
	}
	var req preflight.PortsRequest
	if err := decode(r, &req); err != nil {
		return response.SmartError(err)
	}
	for _, rl := range req.Node.Roles {
		if !roles.Valid(roles.Role(rl)) {
			return response.BadRequest(fmt.Errorf("unknown role %q: use control, compute or storage", rl))
		}
	}
	m, err := d.effectiveManifest(req.Manifest)
	if err != nil {
		return response.SmartError(err)
	}
	host, _, _ := net.SplitHostPort(req.Node.Address)
	n := driver.Node{Name: req.Node.Name, Address: req.Node.Address, IP: host, Roles: roles.Normalize(toRoles(req.Node.Roles)), JoinedAt: d.cfg.Now()}
	env := &driver.Env{Local: n, Nodes: []driver.Node{n}, Manifest: m, Log: d.log, Now: d.cfg.Now, Sup: d.sup,
		Plan: api.Plan{Cluster: req.Node.Name, Bootstrap: req.Node.Name, MySQLTopology: req.MySQLTopology, FloatingAddress: req.FloatingAddress}}
	for _, dr := range d.drivers {
		if f, ok := dr.(driver.Frontender); ok {
			env.Frontends = append(env.Frontends, f.Frontends(env)...)
		}
	}
	return response.SyncResponse(true, d.portsOf(env, n))
}

// TestClock returns a clock moved by spec, for tests of the preflight clock
// checks (cloudd --clock-offset-for-tests): a duration ("1.5s", "-30s"), or
// "@FILE", a file holding a duration that is read again whenever it changes
// (missing or empty: no offset), so a test can move a running daemon's clock.
func TestClock(spec string) (func() time.Time, error) {
	if file, ok := strings.CutPrefix(spec, "@"); ok {
		var mu sync.Mutex
		var stamp time.Time
		var size int64 = -1
		var off time.Duration
		return func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			if fi, err := os.Stat(file); err != nil {
				off, size = 0, -1
			} else if !fi.ModTime().Equal(stamp) || fi.Size() != size {
				stamp, size = fi.ModTime(), fi.Size()
				b, _ := os.ReadFile(file)
				off, _ = time.ParseDuration(strings.TrimSpace(string(b)))
			}
			return time.Now().Add(off)
		}, nil
	}
	off, err := time.ParseDuration(spec)
	if err != nil {
		return nil, fmt.Errorf("--clock-offset-for-tests %q: give a duration such as 1.5s, or @FILE holding one", spec)
	}
	return func() time.Time { return time.Now().Add(off) }, nil
}
