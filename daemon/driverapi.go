package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/canonical/lxd/lxd/response"
	lxdapi "github.com/canonical/lxd/shared/api"
	"github.com/canonical/microcluster/rest"
	"github.com/canonical/microcluster/state"
	"github.com/gorilla/mux"

	"github.com/cloudctl/cloudctl/roles/driver"
)

// driverEndpoints serves each driver's endpoints under /1.0/, grouping the
// methods of one path.
func (d *Daemon) driverEndpoints() []rest.Endpoint {
	var out []rest.Endpoint
	index := map[string]int{}
	for _, dr := range d.drivers {
		for _, e := range dr.Endpoints() {
			i, ok := index[e.Path]
			if !ok {
				out = append(out, rest.Endpoint{Path: e.Path})
				i = len(out) - 1
				index[e.Path] = i
			}
			act := rest.EndpointAction{Handler: d.adapt(dr, e)}
			switch e.Method {
			case http.MethodGet:
				out[i].Get = act
			case http.MethodPost:
				out[i].Post = act
			case http.MethodPut:
				out[i].Put = act
			case http.MethodPatch:
				out[i].Patch = act
			case http.MethodDelete:
				out[i].Delete = act
			}
		}
	}
	return out
}

// adapt turns a driver's handler into a microcluster one: the body is
// limited, local-only endpoints refuse the network, and the driver gets a
// fresh view of the cluster.
func (d *Daemon) adapt(dr driver.Driver, e driver.Endpoint) func(*state.State, *http.Request) response.Response {
	return func(s *state.State, r *http.Request) response.Response {
		local := r.RemoteAddr == "@"
		if e.LocalOnly && !local {
			return response.Forbidden(errors.New("this is only answered on the local control socket (root on a member)"))
		}
		timeout := requestTimeout
		if e.Timeout > 0 {
			timeout = e.Timeout
		}
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		var env *driver.Env
		if e.Light {
			env = &driver.Env{Local: driver.Node{Name: s.Name()}, Log: d.log, Now: d.cfg.Now}
		} else {
			var err error
			if env, err = d.buildEnv(ctx, s); err != nil {
				return response.SmartError(err)
			}
		}
		vars := map[string]string{}
		for k, v := range mux.Vars(r) {
			u, err := url.PathUnescape(v)
			if err != nil {
				return response.BadRequest(fmt.Errorf("path variable %s: %w", k, err))
			}
			vars[k] = u
		}
		req := driver.Request{Vars: vars, Query: r.URL.Query(), Local: local}
		if !local {
			req.Caller = callerName(s, r)
		}
		if r.Body != nil {
			req.Body = http.MaxBytesReader(nil, r.Body, driver.MaxBody)
		}
		out, err := e.Handler(ctx, d.envFor(env, dr), req)
		if err != nil {
			var he driver.HTTPError
			if errors.As(err, &he) {
				return response.SmartError(lxdapi.StatusErrorf(he.Code, "%s", he.Err.Error()))
			}
			return response.SmartError(err)
		}
		if e.Changes {
			// The node the change is for acts on it now, not at its next
			// round (a settled storage round comes back after 10 s).
			go func() {
				kctx, cancel := context.WithTimeout(s.Context, 10*time.Second)
				defer cancel()
				d.kickMembers(kctx, s)
			}()
		}
		return response.SyncResponse(true, out)
	}
}
