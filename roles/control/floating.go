package control

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// floatingDialTimeout bounds the connect that shows the floating endpoint
// answers for an instance.
const floatingDialTimeout = time.Second

// Dialer connects to addr and hangs up (the floating endpoint's check).
type Dialer func(ctx context.Context, addr string) error

func dialTCP(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, floatingDialTimeout)
	defer cancel()
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// floating fills in each service's floating endpoint: the plan's floating
// address (Env.FloatingAddress: set, IPv4, a control node to hold it) and
// the port of the frontend this driver offers for the service's instance,
// once the address answers there (a node holds it and its HAProxy
// forwards). Otherwise dbs.EndpointNote says why clients use the members'
// own addresses. The answer is a connect that HAProxy forwards to MariaDB
// and hangs up, harmless with skip-name-resolve (docs/endpoint.md).
func (d *Driver) floating(ctx context.Context, env *driver.Env, dbs *api.Databases) {
	if len(dbs.Instances) == 0 {
		return
	}
	vip, why := env.FloatingAddress()
	if !vip.IsValid() {
		dbs.EndpointNote = why + ": clients use the members' own addresses, and the database endpoint is not highly available"
		return
	}
	dial := d.dial
	if dial == nil {
		dial = dialTCP
	}
	eps := map[string]string{}
	var missing []string
	for _, in := range dbs.Instances {
		if f, ok := env.Frontend(in.Name); ok && f.Port == in.Port {
			eps[in.Name] = netip.AddrPortFrom(vip, uint16(in.Port)).String()
		} else {
			missing = append(missing, in.Name)
		}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var silent []string
	for name, ep := range eps {
		wg.Add(1)
		go func(name, ep string) {
			defer wg.Done()
			if err := dial(ctx, ep); err != nil {
				mu.Lock()
				delete(eps, name)
				silent = append(silent, ep)
				mu.Unlock()
			}
		}(name, ep)
	}
	wg.Wait()
	for i := range dbs.Services {
		dbs.Services[i].Floating = eps[dbs.Services[i].Instance]
	}
	switch {
	case len(silent) > 0:
		dbs.EndpointNote = fmt.Sprintf("the floating address %s does not answer on port %s (no control node holds it yet): those services' clients use the members' own addresses", vip, portList(silent))
	case len(missing) > 0:
		dbs.EndpointNote = fmt.Sprintf("no floating endpoint is offered for %s: its clients use the members' own addresses", strings.Join(missing, ", "))
	case len(env.WithRole(roles.Control)) == 1:
		dbs.EndpointNote = fmt.Sprintf("one control node holds the floating address %s: the database endpoint is not highly available until a second control node joins", vip)
	}
}

func portOf(ep string) int {
	_, p, _ := net.SplitHostPort(ep)
	n, _ := strconv.Atoi(p)
	return n
}

// portList is the ports of eps, ascending, comma-separated.
func portList(eps []string) string {
	var ps []int
	for _, ep := range eps {
		ps = append(ps, portOf(ep))
	}
	sort.Ints(ps)
	out := make([]string, 0, len(ps))
	for i, p := range ps {
		if i == 0 || p != ps[i-1] {
			out = append(out, strconv.Itoa(p))
		}
	}
	return strings.Join(out, ", ")
}
