package endpoint

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// NodeView is one candidate's own account of the endpoint, served at
// GET /1.0/endpoint and gathered by Status.
type NodeView struct {
	Node string `json:"node"`
	// Active is true when this node runs keepalived for the address.
	Active bool `json:"active"`
	// Holds is true when the floating address is on one of its interfaces.
	Holds bool `json:"holds"`
	// Healthy is the last health verdict (false when none is recent).
	Healthy bool     `json:"healthy"`
	Reasons []string `json:"reasons,omitempty"`
	// Notes are failures the health check has not judged yet.
	Notes     []string  `json:"notes,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitempty"`
	// Keepalived and HAProxy are "running", "restarting" or "stopped".
	Keepalived string `json:"keepalived"`
	HAProxy    string `json:"haproxy"`
}

// CandidateStatus is one candidate in the layer's details.
type CandidateStatus struct {
	Candidate
	Reachable bool      `json:"reachable"`
	View      *NodeView `json:"view,omitempty"`
	Error     string    `json:"error,omitempty"`
}

// Details are the endpoint layer's own data.
type Details struct {
	Address    string            `json:"address"`
	Holder     string            `json:"holder,omitempty"`
	Candidates []CandidateStatus `json:"candidates"`
	Frontends  []driver.Frontend `json:"frontends"`
}

// staleVerdict is how old a verdict may be before the view calls it unknown.
const staleVerdict = 5 * time.Second

// Endpoints implements driver.Driver: GET /1.0/endpoint is this node's view,
// which members ask each other for the status layer. It reveals no secret.
func (d *Driver) Endpoints() []driver.Endpoint {
	return []driver.Endpoint{{Path: "endpoint", Method: http.MethodGet, Handler: func(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
		return d.LocalView(env), nil
	}}}
}

func (d *Driver) procState(name string) string {
	d.mu.Lock()
	sup := d.sup
	d.mu.Unlock()
	if sup == nil {
		return "stopped"
	}
	st, ok := sup.Status(name)
	switch {
	case !ok:
		return "stopped"
	case st.Running:
		return "running"
	default:
		return "restarting"
	}
}

// LocalView is this node's account of the endpoint. It only reads.
func (d *Driver) LocalView(env *driver.Env) NodeView {
	v := NodeView{Node: env.Local.Name, Keepalived: d.procState(keepalivedName), HAProxy: d.procState(haproxyName)}
	v.Active = v.Keepalived != "stopped"
	if addr, _, err := ParseAddress(env.Plan.FloatingAddress); err == nil {
		v.Holds = d.sys.HasAddress(addr)
	}
	d.mu.Lock()
	verdict := d.verdict
	d.mu.Unlock()
	now := time.Now()
	if env.Now != nil {
		now = env.Now()
	}
	switch {
	case verdict.At.IsZero():
		v.Reasons = []string{"no health verdict yet"}
	case now.Sub(verdict.At) > staleVerdict:
		v.Reasons = []string{fmt.Sprintf("no health verdict since %s", verdict.At.UTC().Format(time.RFC3339))}
		v.CheckedAt = verdict.At
	default:
		v.Healthy, v.Reasons, v.Notes, v.CheckedAt = verdict.Healthy, verdict.Reasons, verdict.Notes, verdict.At
	}
	return v
}

// Status implements driver.Driver: the holder, the candidates and their
// health. It asks the other candidates for their views (GET /1.0/endpoint).
func (d *Driver) Status(ctx context.Context, env *driver.Env) api.Layer {
	l := api.Layer{Name: api.LayerEndpoint, Title: "Floating endpoint", Built: true, HA: api.HANo, Health: api.HealthOK, Members: []api.LayerMember{}}
	cands := Candidates(env)
	if env.Plan.FloatingAddress == "" {
		l.Reason = "no floating address: clients use each control node's own address (`cloudctl cluster set floating-address ADDR` adds one)"
		return l
	}
	if _, _, err := ParseAddress(env.Plan.FloatingAddress); err != nil {
		l.Health, l.Reason = api.HealthError, err.Error()
		return l
	}
	switch len(cands) {
	case 0:
		l.Health, l.Reason = api.HealthWarning, fmt.Sprintf("floating address %s: no control node to hold it", env.Plan.FloatingAddress)
		return l
	}
	sts := d.gather(ctx, env, cands)
	sum := Summarize(sts)
	l.HA, l.Reason, l.Health, l.Members = sum.HA, sum.Reason, sum.Health, sum.Members
	det := Details{Address: env.Plan.FloatingAddress, Holder: strings.Join(sum.Holders, ","), Candidates: sts, Frontends: sortedFrontends(env.Frontends)}
	if b, err := json.Marshal(det); err == nil {
		l.Details = b
	}
	return l
}

// peerTimeout bounds how long Status waits for one candidate's view.
const peerTimeout = 2 * time.Second

func (d *Driver) gather(ctx context.Context, env *driver.Env, cands []Candidate) []CandidateStatus {
	out := make([]CandidateStatus, len(cands))
	var wg sync.WaitGroup
	for i, c := range cands {
		out[i].Candidate = c
		if c.Name == env.Local.Name {
			v := d.LocalView(env)
			out[i].View, out[i].Reachable = &v, true
			continue
		}
		if env.Peers == nil {
			out[i].Error = "no way to reach members"
			continue
		}
		wg.Add(1)
		go func(i int, c Candidate) {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, peerTimeout)
			defer cancel()
			var v NodeView
			if err := env.Peers.Get(pctx, c.Name, "endpoint", &v); err != nil {
				out[i].Error = err.Error()
				return
			}
			out[i].View, out[i].Reachable = &v, true
		}(i, c)
	}
	wg.Wait()
	return out
}

// Summary is the layer's verdict over the candidates.
type Summary struct {
	HA, Reason, Health string
	Holders            []string
	Members            []api.LayerMember
}

// Summarize judges the candidates: exactly one must hold the address; HA is
// "yes" with two or more healthy candidates, "no" with a single candidate
// (the only control node), "degraded" (with the reason) otherwise.
func Summarize(sts []CandidateStatus) Summary {
	s := Summary{Health: api.HealthOK}
	var healthy int
	var sick, gone, noted []string
	for _, c := range sts {
		m := api.LayerMember{Node: c.Name}
		switch {
		case !c.Reachable:
			m.State, m.Detail = "unreachable", c.Error
			gone = append(gone, c.Name)
		case c.View.Holds && c.View.Healthy:
			m.State = "holder"
		case c.View.Holds:
			m.State, m.Detail = "holder", "unhealthy: "+strings.Join(slices.Concat(c.View.Reasons, c.View.Notes), "; ")
		case c.View.Healthy:
			m.State = "standby"
		case !c.View.Active:
			m.State, m.Detail = "stopped", strings.Join(slices.Concat(c.View.Reasons, c.View.Notes), "; ")
		default:
			m.State, m.Detail = "unhealthy", strings.Join(slices.Concat(c.View.Reasons, c.View.Notes), "; ")
		}
		if c.Reachable {
			if c.View.Holds {
				s.Holders = append(s.Holders, c.Name)
			}
			if c.View.Healthy {
				healthy++
				if len(c.View.Notes) > 0 {
					m.Detail = strings.Join(c.View.Notes, "; ")
					noted = append(noted, c.Name+": "+m.Detail)
				}
			} else {
				sick = append(sick, c.Name)
			}
		}
		s.Members = append(s.Members, m)
	}
	sort.Strings(s.Holders)
	var why []string
	if len(sick) > 0 {
		why = append(why, "unhealthy: "+strings.Join(sick, ", "))
	}
	if len(gone) > 0 {
		why = append(why, "unreachable: "+strings.Join(gone, ", "))
	}
	why = append(why, noted...)
	switch {
	case len(sts) == 1:
		// The only control node holds the address alone.
		s.HA = api.HANo
		s.Reason = "one control node: the floating address is not highly available until a second control node joins"
		if len(why) > 0 {
			s.Health, s.Reason = api.HealthWarning, s.Reason+" ("+strings.Join(why, "; ")+")"
		}
	case healthy >= 2:
		s.HA = api.HAYes
		if len(why) > 0 {
			s.Health, s.Reason = api.HealthWarning, strings.Join(why, "; ")
		}
	default:
		s.HA, s.Health = api.HADegraded, api.HealthWarning
		s.Reason = fmt.Sprintf("%d of %d candidates healthy: no node to take the address over", healthy, len(sts))
		if len(why) > 0 {
			s.Reason += " (" + strings.Join(why, "; ") + ")"
		}
	}
	switch len(s.Holders) {
	case 0:
		s.Health = api.HealthError
		s.Reason = joinReason("no node holds the floating address", s.Reason)
	case 1:
	default:
		s.Health = api.HealthError
		s.Reason = joinReason("the floating address is on "+strings.Join(s.Holders, " and ")+" at once", s.Reason)
	}
	return s
}

func joinReason(a, b string) string {
	if b == "" {
		return a
	}
	return a + "; " + b
}
