package endpoint

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cloudctl/cloudctl/roles/driver"

	"github.com/cloudctl/cloudctl/internal/atomicfile"
)

// HealthEvery is how often the health loop judges this node.
const HealthEvery = time.Second

// DBGrace is how long the cluster database may go unanswered before this
// node gives the floating address up. When the dqlite leader dies (often the
// holder itself, with everything else on it) every member's reads fail
// until a new leader is elected, about 6 s here: judged at once, that made
// every survivor give the address up together, and a client waited for the
// election, keepalived's rise and a new VRRP election on top of each other
// (12 s from the holder's death to the first write through the address).
// A node cut off from the majority still gives the address up, this much
// later.
const DBGrace = 10 * time.Second

// Probe is one local backend the health check connects to.
type Probe struct {
	Frontend string `json:"frontend"`
	Addr     string `json:"addr"`
}

// ProbeResult is one probe's outcome (Err nil: it answered).
type ProbeResult struct {
	Probe
	Err error
}

// Observation is what one round of checks saw on this node.
type Observation struct {
	// DB is the outcome of a read of the cluster database (cloudd's own
	// health: a member cut off from the database majority fails it).
	DB error
	// DBFailingFor is how long the reads have failed without a break
	// (zero when DB is nil); the node is judged by them after DBGrace.
	DBFailingFor time.Duration
	// HAProxyNeeded is true when there are frontends to forward.
	HAProxyNeeded, HAProxyRunning bool
	// Backends are this node's own backends (its control databases, its
	// cloudd API).
	Backends []ProbeResult
}

// Verdict is the health check's judgement of this node.
type Verdict struct {
	Healthy bool     `json:"healthy"`
	Reasons []string `json:"reasons,omitempty"`
	// Notes are failures not judged yet: the cluster database unanswered
	// for less than the grace.
	Notes []string  `json:"notes,omitempty"`
	At    time.Time `json:"at"`
}

// Judge turns an observation into a verdict: healthy only when the cluster
// database answers (or has failed for less than grace), HAProxy runs (when
// there is something to forward) and every backend on this node answers.
func Judge(o Observation, now time.Time, grace time.Duration) Verdict {
	v := Verdict{At: now}
	switch {
	case o.DB != nil && o.DBFailingFor >= grace:
		v.Reasons = append(v.Reasons, fmt.Sprintf("cluster database: %v (for %s)", o.DB, o.DBFailingFor.Round(time.Second)))
	case o.DB != nil:
		v.Notes = append(v.Notes, fmt.Sprintf("the cluster database has not answered for %s (%v): a leader election, or this node is cut off; unhealthy after %s", o.DBFailingFor.Round(time.Second), o.DB, grace))
	}
	if o.HAProxyNeeded && !o.HAProxyRunning {
		v.Reasons = append(v.Reasons, "haproxy is not running")
	}
	for _, r := range o.Backends {
		if r.Err != nil {
			v.Reasons = append(v.Reasons, fmt.Sprintf("%s backend %s: %v", r.Frontend, r.Addr, r.Err))
		}
	}
	v.Healthy = len(v.Reasons) == 0
	return v
}

// Line is the verdict as the check script reads it: "ok", or "fail: ...".
func (v Verdict) Line() string {
	if v.Healthy {
		return "ok\n"
	}
	return "fail: " + strings.Join(v.Reasons, "; ") + "\n"
}

// healthInput is what the loop checks, refreshed by every Converge.
type healthInput struct {
	db      driver.DB
	probes  []Probe
	haproxy bool
	verdict string // the verdict file
}

type healthLoop struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startHealth starts the health loop unless it runs.
func (d *Driver) startHealth() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.loop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &healthLoop{cancel: cancel, done: make(chan struct{})}
	d.loop = l
	go func() {
		defer close(l.done)
		t := time.NewTicker(HealthEvery)
		defer t.Stop()
		for {
			d.checkOnce(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// stopHealth stops the loop and removes the verdict file, so the check fails.
func (d *Driver) stopHealth() {
	d.mu.Lock()
	l := d.loop
	d.loop = nil
	in := d.hin
	d.dbFailingSince = time.Time{}
	d.mu.Unlock()
	if l != nil {
		l.cancel()
		<-l.done
	}
	if in.verdict != "" {
		_ = os.Remove(in.verdict)
	}
}

// checkOnce judges this node and rewrites the verdict file.
func (d *Driver) checkOnce(ctx context.Context) {
	d.mu.Lock()
	in := d.hin
	d.mu.Unlock()
	if in.verdict == "" {
		return
	}
	o := d.observe(ctx, in)
	now := time.Now()
	d.mu.Lock()
	if o.DB == nil {
		d.dbFailingSince = time.Time{}
	} else if d.dbFailingSince.IsZero() {
		d.dbFailingSince = now
	}
	grace := d.dbGrace
	switch {
	case in.db == nil:
		// Not connected at all is no election: judged at once.
		o.DBFailingFor = grace
	case o.DB != nil:
		o.DBFailingFor = now.Sub(d.dbFailingSince)
	}
	v := Judge(o, now, grace)
	prev := d.verdict
	d.verdict = v
	log := d.log
	d.mu.Unlock()
	if in.db != nil && o.DB != nil && o.DBFailingFor == 0 && grace > 0 {
		log.Warn("endpoint: the cluster database does not answer (a leader election, or this node is cut off from the majority); the node keeps or may take the floating address until it has not answered for the grace period", "grace", grace, "error", o.DB)
	}
	if prev.Healthy != v.Healthy || prev.At.IsZero() {
		if v.Healthy {
			log.Info("endpoint: this node is healthy; it may hold the floating address")
		} else {
			log.Warn("endpoint: this node is unhealthy; it gives the floating address up", "reasons", strings.Join(v.Reasons, "; "))
		}
	}
	if err := atomicfile.Replace(in.verdict, []byte(v.Line()), 0o644); err != nil {
		log.Warn("endpoint: cannot write the health verdict", "error", err)
	}
}

func (d *Driver) observe(ctx context.Context, in healthInput) Observation {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	o := Observation{HAProxyNeeded: in.haproxy}
	if in.haproxy {
		o.HAProxyRunning = d.running(haproxyName)
	}
	var wg sync.WaitGroup
	o.Backends = make([]ProbeResult, len(in.probes))
	for i, p := range in.probes {
		wg.Add(1)
		go func(i int, p Probe) {
			defer wg.Done()
			o.Backends[i] = ProbeResult{Probe: p, Err: d.sys.Dial(ctx, p.Addr)}
		}(i, p)
	}
	if in.db == nil {
		o.DB = fmt.Errorf("not connected")
	} else {
		o.DB = in.db.Transaction(ctx, func(ctx context.Context, tx *sql.Tx) error {
			var one int
			return tx.QueryRowContext(ctx, "SELECT 1").Scan(&one)
		})
	}
	wg.Wait()
	sort.SliceStable(o.Backends, func(i, j int) bool { return o.Backends[i].Frontend < o.Backends[j].Frontend })
	return o
}
