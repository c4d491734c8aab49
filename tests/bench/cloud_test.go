package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cloudctl/cloudctl/api"
)

// ----------------------------------------------------------------- cloud

// cloudRoles are the roles every node of the whole cloud takes.
const cloudRoles = "control,compute,storage"

// cloudLayers are the layers of the whole cloud, in the order they are
// reported.
var cloudLayers = []string{api.LayerClusterDB, api.LayerControl, api.LayerStorage, api.LayerCompute, api.LayerEndpoint}

// phaseCloud forms the cloud a user means: three nodes with every role and
// a floating address, from nothing to every layer highly available, timed
// step by step so the slowest step shows.
func (b *bench) phaseCloud() error {
	reps := envInt("CLOUDBENCH_CLOUD_REPS", 2)
	var order []string
	steps := map[string]*Sample{}
	rec := func(step string, d time.Duration) {
		sm, ok := steps[step]
		if !ok {
			s := secs()
			sm = &s
			steps[step] = sm
			order = append(order, step)
		}
		sm.AddDur(d)
	}
	var err error
	for rep := 0; rep < reps && err == nil; rep++ {
		b.step("whole cloud %d of %d", rep+1, reps)
		var c *Cluster
		c, err = b.lab.NewCluster(b.ctx, 3)
		if err == nil {
			err = b.formCloud(c, rec)
		}
		c.Close()
	}
	s := b.rep.Section("A whole cloud: 3 nodes, every role, a floating address")
	s.Intro = []string{
		fmt.Sprintf("Three fresh nodes (namespaces, cloudd started beforehand, not timed), each with roles `%s` and a 2 GiB file-backed OSD; the floating address is set right after the bootstrap (`cluster set floating-address`). Steps are wall times one after another; the layer lines are from the start of the bootstrap to the first status (polled every 100 ms on node1) whose layer says `HA: yes` — Galera of 3, Ceph `HEALTH_OK` at size 3, an LXD cluster of 3, the floating address held, dqlite with 3 voters. Then every process of the node holding the floating address is SIGKILLed, and a `mysql` client on another node writes to the identity service's database through the floating address (TLS) every 100 ms until it succeeds; beside it, the harness watches for the address on a survivor (VRRP) and writes to that survivor's own MariaDB (Galera going on without the dead member). Each failover figure runs from the first SIGKILL.", cloudRoles),
	}
	for _, st := range order {
		s.Rows = append(s.Rows, Row{Figure: st, Ours: *steps[st]})
	}
	return err
}

// formCloud forms one whole cloud on c and records each step.
func (b *bench) formCloud(c *Cluster, rec func(string, time.Duration)) error {
	if err := startAll(c.Nodes, b.startCloudd); err != nil {
		return err
	}
	n1 := c.Node(1)
	t0 := time.Now()
	t := t0
	lap := func(step string) {
		now := time.Now()
		rec(step, now.Sub(t))
		t = now
	}
	if _, err := b.bootstrapCloudd(n1, cloudRoles); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	lap("1. `bootstrap` of node1, then `storage disk add`")
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute)
	_, _, err := b.cli(ctx, n1, "cluster", "set", "floating-address", c.Subnet+".100/24")
	cancel()
	if err != nil {
		return fmt.Errorf("floating address: %w", err)
	}
	lap("2. `cluster set floating-address`")
	if _, err := waitFor(b.ctx, 5*time.Minute, "node1's layers healthy", func() error {
		st, err := b.status(n1)
		if err != nil {
			return err
		}
		for _, l := range []string{api.LayerControl, api.LayerStorage, api.LayerCompute} {
			if err := layerReady(st, l); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	lap("3. node1's control, storage and compute layers healthy")
	for i := 2; i <= 3; i++ {
		if _, err := b.joinCloudd(n1, c.Node(i), cloudRoles); err != nil {
			return fmt.Errorf("join node%d: %w", i, err)
		}
		lap(fmt.Sprintf("%d. `cluster add` + `cluster join` of node%d, then `storage disk add`", i+2, i))
	}
	joined := time.Now()
	ha := map[string]time.Duration{}
	_, err = waitFor(b.ctx, 10*time.Minute, "every layer HA", func() error {
		st, err := b.status(n1)
		if err != nil {
			return err
		}
		var missing []string
		for _, l := range cloudLayers {
			if _, seen := ha[l]; seen {
				continue
			}
			if layerHA(st, l) == nil {
				ha[l] = time.Since(t0)
				continue
			}
			missing = append(missing, l)
		}
		if len(missing) > 0 {
			return fmt.Errorf("not HA yet: %v", missing)
		}
		return nil
	})
	if err != nil {
		return err
	}
	rec("6. the last join → every layer HA", time.Since(joined))
	for _, l := range cloudLayers {
		rec(fmt.Sprintf("from nothing: %s layer HA", l), ha[l])
	}
	rec("**from nothing: every layer HA**", time.Since(t0))
	return b.floatingFailover(c, rec)
}

// floatingFailover SIGKILLs every process of the node holding the floating
// address and times the first database write through the address from
// another node.
func (b *bench) floatingFailover(c *Cluster, rec func(string, time.Duration)) error {
	st, err := b.status(c.Node(1))
	if err != nil {
		return err
	}
	var holder, survivor *Node
	if l := st.Layer(api.LayerEndpoint); l != nil {
		for _, m := range l.Members {
			for _, nd := range c.Nodes {
				if nd.Name == m.Node && m.State == "holder" {
					holder = nd
				}
			}
		}
	}
	if holder == nil {
		return fmt.Errorf("no node holds the floating address: %+v", st.Layer(api.LayerEndpoint))
	}
	for _, nd := range c.Nodes {
		if nd != holder {
			survivor = nd
			break
		}
	}
	vip := c.Subnet + ".100"
	cnf, err := b.dbClientConfig(survivor, "vip-"+c.Subnet, vip)
	if err != nil {
		return err
	}
	direct, err := b.dbClientConfig(survivor, "direct-"+c.Subnet, "")
	if err != nil {
		return err
	}
	if _, err := waitFor(b.ctx, 2*time.Minute, "a database write through the floating address", func() error { return b.dbWrite(survivor, cnf) }); err != nil {
		return err
	}
	b.step("floating failover: killing %s, which holds %s", holder.Name, vip)
	t := time.Now() // the clock starts at the kill, not when every process is gone
	holder.PowerOff(b.ctx)
	// What the write through the address waits for, watched side by side:
	// VRRP moving the address (keepalived), and Galera taking writes again
	// without the dead member (a write to the survivor's own MariaDB).
	var wg sync.WaitGroup
	var moved, galera time.Duration
	var movedErr, galeraErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, movedErr = waitFor(b.ctx, 2*time.Minute, "the floating address on a survivor", func() error {
			for _, nd := range c.Nodes {
				if nd == holder {
					continue
				}
				if out, _, err := nd.Exec(b.ctx, nil, "ip", "-4", "-o", "addr", "show"); err == nil && strings.Contains(out, " "+vip+"/") {
					return nil
				}
			}
			return fmt.Errorf("no survivor holds %s", vip)
		})
		moved = time.Since(t)
	}()
	go func() {
		defer wg.Done()
		_, galeraErr = waitFor(b.ctx, 2*time.Minute, "a database write to the survivor's own MariaDB", func() error { return b.dbWrite(survivor, direct) })
		galera = time.Since(t)
	}()
	_, err = waitFor(b.ctx, 2*time.Minute, "a database write through the floating address after its holder died", func() error { return b.dbWrite(survivor, cnf) })
	through := time.Since(t)
	wg.Wait()
	if err = errors.Join(err, movedErr, galeraErr); err != nil {
		return err
	}
	rec("failover: holder SIGKILLed → the floating address on a survivor (VRRP)", moved)
	rec("failover: holder SIGKILLed → first write to a survivor's own MariaDB (Galera without the dead member)", galera)
	rec("failover: holder SIGKILLed → first database write through the floating address", through)
	return nil
}
