package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
)

func ms() Sample   { return Sample{Unit: "ms"} }
func secs() Sample { return Sample{Unit: "s"} }

// timeCmd runs a command in the root namespace and returns its wall time.
func timeCmd(ctx context.Context, name string, args ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return time.Since(t0), nil
}

// ------------------------------------------------------------------ CLI

func (b *bench) phaseCLI() error {
	help, floor, probe := ms(), ms(), ms()
	for i := 0; i < 20; i++ {
		d, err := timeCmd(b.ctx, b.lab.Bins.Cloudctl, "--help")
		if err != nil {
			return err
		}
		help.AddDur(d)
		if d, err = timeCmd(b.ctx, b.lab.Bins.Microd, "--help"); err != nil {
			return err
		}
		floor.AddDur(d)
	}
	for i := 0; i < 10; i++ {
		d, err := timeCmd(b.ctx, b.lab.Bins.Cloudctl, "probe")
		if err != nil {
			return err
		}
		probe.AddDur(d)
	}
	s := b.rep.Section("CLI")
	s.Intro = []string{"Wall time of the process, started from the root namespace, binaries in the page cache (the first of each series included)."}
	s.Rows = append(s.Rows,
		Row{Figure: "`cloudctl --help` start", Ours: help, FloorName: "`microd --help` (cobra + microcluster)", Floor: floor},
		Row{Figure: "`cloudctl probe`", Ours: probe, Note: "reads this machine's hardware; no floor"},
	)
	return nil
}

// ------------------------------------------------------------ bootstrap

func (b *bench) phaseBootstrap() error {
	s := b.rep.Section("Bootstrap to ready")
	s.Intro = []string{
		"A fresh node each run (namespace and daemon started beforehand, not timed).",
		"cloudctl: `cloudctl bootstrap` wall time, then until the role's status layer is built and healthy.",
		"Floor: microd bootstrapped by `microinit init NAME ADDRESS --bootstrap` (tests/bench/microinit: microctl's init command, the same cobra command line and microcluster call) run in the namespace as cloudctl is, so both carry `ip netns exec` and a process start; and microd's `NewCluster` called over its unix socket from the harness, which carries neither. For roles, the engine itself started by hand in a namespace.",
	}
	var errs []error
	{
		const runs = 7
		boot, floorCLI, floorAPI := ms(), ms(), ms()
		for i := 0; i < runs; i++ {
			d, err := b.oneBoot(b.startCore, string(b.cp), "", i == runs-1)
			if err != nil {
				return err
			}
			boot.AddDur(d.cli)
			fc, err := b.oneMicroBoot(false, b.bootstrapMicroCLI)
			if err != nil {
				return err
			}
			floorCLI.AddDur(fc)
			fa, err := b.oneMicroBoot(i == runs-1, b.bootstrapMicrod)
			if err != nil {
				return err
			}
			floorAPI.AddDur(fa)
			b.step("bootstrap %d: clouddcore %s, microinit %s, microd API %s", i+1, d.cli.Round(time.Millisecond), fc.Round(time.Millisecond), fa.Round(time.Millisecond))
		}
		fig := "control plane only (`--role " + string(b.cp) + "`): CLI returns"
		s.Rows = append(s.Rows,
			Row{Figure: fig, Ours: boot, FloorName: "bare microd, bootstrapped by `microinit` in the namespace", Floor: floorCLI},
			Row{Figure: fig + " (the same runs)", Ours: boot, FloorName: "bare microd, `NewCluster` over its socket from the harness", Floor: floorAPI,
				Note: "this floor has no `ip netns exec` and no process start (about 10–20 ms here)"})
	}
	for _, r := range b.driven {
		cli, ready := ms(), ms()
		for i := 0; i < 3; i++ {
			d, err := b.oneBoot(b.startCloudd, string(r), layerOf(r), i == 2)
			if err != nil {
				errs = append(errs, fmt.Errorf("bootstrap with %s: %w", r, err))
				break
			}
			cli.AddDur(d.cli)
			ready.AddDur(d.ready)
			b.step("bootstrap --role %s %d: CLI %s, layer ready %s", r, i+1, d.cli.Round(time.Millisecond), d.ready.Round(time.Millisecond))
		}
		row := Row{Figure: fmt.Sprintf("`--role %s`: CLI returns", r), Ours: cli}
		rowReady := Row{Figure: fmt.Sprintf("`--role %s`: %s layer healthy", r, layerOf(r)), Ours: ready}
		switch r {
		case roles.Control:
			fresh, restart, install, err := b.mariadbFloor()
			if err != nil {
				errs = append(errs, fmt.Errorf("mariadbd floor: %w", err))
			}
			rowReady.FloorName, rowReady.Floor = "mariadb-install-db + mariadbd ready (by hand)", fresh
			s.Rows = append(s.Rows, row, rowReady,
				Row{Figure: "engine: mariadb-install-db alone", Ours: install, Note: "part of the floor above"},
				Row{Figure: "engine: mariadbd ready, existing datadir", Ours: restart, Note: "start to first handshake on its socket"})
			continue
		case roles.Compute:
			floor, err := b.lxdFloor()
			if err != nil {
				errs = append(errs, fmt.Errorf("LXD floor: %w", err))
			}
			rowReady.FloorName, rowReady.Floor = "lxd started to `GET /1.0` answered (by hand, fresh LXD_DIR)", floor
			rowReady.Note = "the floor has no network, pool or cluster configured"
		case roles.Storage:
			floor, err := b.cephMonFloor()
			if err != nil {
				errs = append(errs, fmt.Errorf("Ceph monitor floor: %w", err))
			}
			rowReady.FloorName, rowReady.Floor = "ceph-mon mkfs + start to leader (by hand)", floor
			rowReady.Note = "the floor is one monitor alone: no manager, no OSD"
		}
		s.Rows = append(s.Rows, row, rowReady)
	}
	return errors.Join(errs...)
}

type bootTimes struct{ cli, ready time.Duration }

// oneBoot bootstraps a fresh node with rs; with layer, also waits for it to
// be healthy. keep leaves the cluster running for the rest measurements.
func (b *bench) oneBoot(start func(*Node) error, rs, layer string, keep bool) (bootTimes, error) {
	var bt bootTimes
	c, err := b.lab.NewCluster(b.ctx, 1)
	if err != nil {
		c.Close()
		return bt, err
	}
	if keep {
		label := "1 × " + rs
		if layer == "" {
			label = "1 × " + rs + " (clouddcore)"
		}
		b.kept[label] = c
	} else {
		defer c.Close()
	}
	nd := c.Node(1)
	if err := start(nd); err != nil {
		return bt, err
	}
	t0 := time.Now()
	if bt.cli, err = b.bootstrapCloudd(nd, rs); err != nil {
		return bt, fmt.Errorf("%w; log:\n%s", err, nd.Log())
	}
	if layer == "" {
		return bt, nil
	}
	_, err = waitFor(b.ctx, 4*time.Minute, layer+" layer healthy", func() error {
		st, err := b.status(nd)
		if err != nil {
			return err
		}
		return layerReady(st, layer)
	})
	bt.ready = time.Since(t0)
	if err != nil {
		return bt, fmt.Errorf("%w; log:\n%s", err, nd.Log())
	}
	return bt, nil
}

func (b *bench) oneMicroBoot(keep bool, boot func(*Node) (time.Duration, error)) (time.Duration, error) {
	c, err := b.lab.NewCluster(b.ctx, 1)
	if err != nil {
		c.Close()
		return 0, err
	}
	if keep {
		b.kept["1 × microd"] = c
	} else {
		defer c.Close()
	}
	if err := b.startMicrod(c.Node(1)); err != nil {
		return 0, err
	}
	return boot(c.Node(1))
}

// mariadbFloor times MariaDB by hand in a namespace: install-db plus start
// to first handshake on a fresh datadir (3 runs), install-db alone, and a
// start on an existing datadir (5 runs). Default configuration.
func (b *bench) mariadbFloor() (fresh, restart, install Sample, err error) {
	fresh, restart, install = ms(), ms(), ms()
	c, err := b.lab.NewCluster(b.ctx, 1)
	defer c.Close()
	if err != nil {
		return
	}
	nd := c.Node(1)
	start := func(dir string) (time.Duration, error) {
		sock := filepath.Join(dir, "mysqld.sock")
		t0 := time.Now()
		if err := nd.Start("mariadbd", "--no-defaults", "--datadir="+dir, "--socket="+sock, "--port=3306",
			"--bind-address="+nd.IP, "--user=mysql", "--pid-file="+filepath.Join(dir, "pid"), "--log-error="+filepath.Join(dir, "err.log")); err != nil {
			return 0, err
		}
		_, err := waitFor(b.ctx, time.Minute, "mariadbd handshake", func() error {
			if nd.Exited() {
				log, _ := os.ReadFile(filepath.Join(dir, "err.log"))
				return errStop{fmt.Errorf("mariadbd exited: %s", log)}
			}
			return handshake(sock)
		})
		return time.Since(t0), err
	}
	stop := func() {
		for _, p := range nd.Pids(b.ctx) {
			_ = syscall.Kill(p, syscall.SIGTERM)
		}
		_, _ = waitFor(b.ctx, 30*time.Second, "mariadbd stopped", func() error {
			if n := len(nd.Pids(b.ctx)); n > 0 {
				return fmt.Errorf("%d processes", n)
			}
			return nil
		})
		nd.PowerOff(b.ctx)
	}
	var first string
	for i := 0; i < 3; i++ {
		dir := filepath.Join(nd.StateDir, fmt.Sprintf("data%d", i))
		if first == "" {
			first = dir
		}
		t0 := time.Now()
		if _, _, err = nd.Exec(b.ctx, nil, "mariadb-install-db", "--no-defaults", "--datadir="+dir, "--user=mysql",
			"--auth-root-authentication-method=socket", "--skip-test-db"); err != nil {
			return
		}
		install.AddDur(time.Since(t0))
		_, err = start(dir)
		total := time.Since(t0)
		stop()
		if err != nil {
			return
		}
		fresh.AddDur(total)
	}
	for i := 0; i < 5; i++ {
		var d time.Duration
		d, err = start(first)
		stop()
		if err != nil {
			return
		}
		restart.AddDur(d)
	}
	return
}

// handshake connects to a MariaDB socket and reads the server greeting.
func handshake(sock string) error {
	conn, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 5)
	if _, err := bufio.NewReader(conn).Read(buf); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	return nil
}

// ----------------------------------------------------------------- join

func (b *bench) phaseJoin() error {
	maxN := envInt("CLOUDBENCH_JOIN_N", 25)
	reps := envInt("CLOUDBENCH_JOIN_REPS", 2)
	ours := make([]Sample, maxN+1)
	floor := make([]Sample, maxN+1)
	for k := range ours {
		ours[k], floor[k] = ms(), ms()
	}
	for rep := 0; rep < reps; rep++ {
		b.step("join series %d of %d (N=%d)", rep+1, reps, maxN)
		order := []bool{true, false}
		if rep%2 == 1 {
			order = []bool{false, true}
		}
		for _, cloud := range order {
			if err := b.joinSeries(cloud, maxN, ours, floor); err != nil {
				return err
			}
		}
	}
	s := b.rep.Section("Join latency (control plane only)")
	s.Intro = []string{
		fmt.Sprintf("One cluster grown from 1 to %d nodes per run (%d runs each, cloudd and microd alternated); every daemon started before the first join (not timed).", maxN, reps),
		fmt.Sprintf("cloudctl: `cloudctl cluster join TOKEN --role %s` wall time against clouddcore (the token is made beforehand, not timed). Floor: microd's `JoinCluster` over its unix socket.", b.cp),
		"",
		"![join latency by node](bench-join.svg)",
	}
	for _, n := range []int{3, 10, 25} {
		if n > maxN {
			continue
		}
		po, pf := ms(), ms()
		for k := 2; k <= n; k++ {
			po.Values = append(po.Values, ours[k].Values...)
			pf.Values = append(pf.Values, floor[k].Values...)
		}
		s.Rows = append(s.Rows,
			Row{Figure: fmt.Sprintf("N=%d: joins of nodes 2..%d, pooled", n, n), Ours: po, FloorName: "microd", Floor: pf},
			Row{Figure: fmt.Sprintf("N=%d: join of node %d", n, n), Ours: ours[n], FloorName: "microd", Floor: floor[n]})
	}
	if maxN >= 11 {
		early, late, fe, fl := ms(), ms(), ms(), ms()
		for k := 4; k <= maxN; k++ {
			if k <= 10 {
				early.Values = append(early.Values, ours[k].Values...)
				fe.Values = append(fe.Values, floor[k].Values...)
			} else {
				late.Values = append(late.Values, ours[k].Values...)
				fl.Values = append(fl.Values, floor[k].Values...)
			}
		}
		s.After = append(s.After, fmt.Sprintf("Flatness: median join of nodes 11..%d over nodes 4..10 is %s for cloudd, %s for microd (1.00× is flat).",
			maxN, Ratio(late, early), Ratio(fl, fe)))
	}
	p := Plot{Title: "Join latency of node k (median, bar: min–max)", XLabel: "node k joining", YLabel: "join latency (ms)"}
	so := Series{Name: "cloudctl cluster join (" + string(b.cp) + ")", Color: "#d62728"}
	sf := Series{Name: "bare microcluster (microd JoinCluster)", Color: "#1f77b4"}
	for k := 2; k <= maxN; k++ {
		for _, pair := range []struct {
			s  *Series
			sm Sample
		}{{&so, ours[k]}, {&sf, floor[k]}} {
			if pair.sm.N() == 0 {
				continue
			}
			pair.s.X = append(pair.s.X, float64(k))
			pair.s.Y = append(pair.s.Y, pair.sm.Median())
			pair.s.Lo = append(pair.s.Lo, pair.sm.Quantile(0))
			pair.s.Hi = append(pair.s.Hi, pair.sm.Quantile(1))
		}
	}
	p.Series = []Series{so, sf}
	out := os.Getenv("CLOUDBENCH_OUT")
	if out == "" {
		out = filepath.Join(b.root, "docs")
	}
	return os.WriteFile(filepath.Join(out, "bench-join.svg"), []byte(p.SVG()), 0o644)
}

func (b *bench) joinSeries(cloud bool, n int, ours, floor []Sample) error {
	c, err := b.lab.NewCluster(b.ctx, n)
	defer c.Close()
	if err != nil {
		return err
	}
	if cloud {
		if err := startAll(c.Nodes, b.startCore); err != nil {
			return err
		}
		if _, err := b.bootstrapCloudd(c.Node(1), string(b.cp)); err != nil {
			return err
		}
		for k := 2; k <= n; k++ {
			d, err := b.joinCloudd(c.Node(1), c.Node(k), string(b.cp))
			if err != nil {
				return fmt.Errorf("join node %d: %w; log:\n%s", k, err, c.Node(k).Log())
			}
			ours[k].AddDur(d)
		}
		return nil
	}
	if err := startAll(c.Nodes, b.startMicrod); err != nil {
		return err
	}
	if _, err := b.bootstrapMicrod(c.Node(1)); err != nil {
		return err
	}
	for k := 2; k <= n; k++ {
		d, err := b.joinMicrod(c.Node(1), c.Node(k))
		if err != nil {
			return fmt.Errorf("microd join node %d: %w; log:\n%s", k, err, c.Node(k).Log())
		}
		floor[k].AddDur(d)
	}
	return nil
}

// ------------------------------------------- rest, failover, power cut

type named struct {
	label string
	c     *Cluster
}

func (b *bench) phaseRestFailPower() error {
	var clusters []named
	defer func() {
		for _, n := range clusters {
			n.c.Close()
		}
	}()
	form := b.rep.Section("Formation to HA (3 nodes)")
	form.Intro = []string{"From the start of the third node's join to its layer reporting `HA: yes` in status (dqlite needs 3 voters first)."}
	var errs []error
	var formed []named
	add := func(label string, n int, f func(*Cluster) error) *Cluster {
		b.step("forming %s", label)
		c, err := b.lab.NewCluster(b.ctx, n)
		clusters = append(clusters, named{label, c})
		if err == nil {
			err = f(c)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
			c.Close()
			return nil
		}
		formed = append(formed, named{label, c})
		return c
	}
	var P, B, C, A *Cluster
	P = add(fmt.Sprintf("(a′) 3 × %s, clouddcore", b.cp), 3, func(c *Cluster) error { return b.formCloudd(c, b.startCore, string(b.cp)) })
	B = add("(b) 3 × bare microd", 3, b.formMicrod)
	type drivenCluster struct {
		label string
		c     *Cluster
		want  map[string]bool
	}
	var driven []drivenCluster
	for _, r := range b.driven {
		r := r
		label := fmt.Sprintf("3 × %s", r)
		switch r {
		case roles.Control:
			label = "(c) 3 × control"
		case roles.Compute:
			label = "(a) 3 × compute"
		}
		c := add(label, 3, func(c *Cluster) error {
			d, err := b.formTimed(c, string(r), layerOf(r))
			if err == nil {
				form.Rows = append(form.Rows, Row{Figure: fmt.Sprintf("third `%s` join → %s layer HA", r, layerOf(r)), Ours: oneSample(d)})
			}
			return err
		})
		if c == nil {
			continue
		}
		driven = append(driven, drivenCluster{label, c, map[string]bool{api.LayerClusterDB: true, layerOf(r): true}})
		switch r {
		case roles.Control:
			C = c
		case roles.Compute:
			A = c
		}
	}
	// At rest: everything formed, then a settling pause (not an assertion),
	// then six 10 s windows over every process the harness started.
	rest := append([]named(nil), formed...)
	for _, k := range sortedKeys(b.kept) {
		rest = append(rest, named{k, b.kept[k]})
	}
	b.step("at rest: %d clusters", len(rest))
	if err := b.atRest(rest); err != nil {
		errs = append(errs, err)
	}
	for _, k := range sortedKeys(b.kept) {
		b.kept[k].Close()
		delete(b.kept, k)
	}
	if C != nil {
		if err := b.failoverControl(C); err != nil {
			errs = append(errs, err)
		}
	}
	for _, d := range driven {
		if err := b.powerCut(d.label, d.c, 2, d.want); err != nil {
			errs = append(errs, err)
		}
		if d.c != A {
			d.c.Close()
		}
	}
	if P != nil && B != nil {
		if err := b.powerCutBare(P, B, 3); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func oneSample(d time.Duration) Sample {
	s := secs()
	s.AddDur(d)
	return s
}

// formTimed forms a 3-node cluster with role rs and returns the time from
// the third join's start to layer HA.
func (b *bench) formTimed(c *Cluster, rs, layer string) (time.Duration, error) {
	if err := startAll(c.Nodes, b.startCloudd); err != nil {
		return 0, err
	}
	n1 := c.Node(1)
	if _, err := b.bootstrapCloudd(n1, rs); err != nil {
		return 0, err
	}
	if _, err := waitFor(b.ctx, 4*time.Minute, layer+" healthy on node1", func() error {
		st, err := b.status(n1)
		if err != nil {
			return err
		}
		return layerReady(st, layer)
	}); err != nil {
		return 0, err
	}
	if _, err := b.joinCloudd(n1, c.Node(2), rs); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if _, err := b.joinCloudd(n1, c.Node(3), rs); err != nil {
		return 0, err
	}
	_, err := waitFor(b.ctx, 5*time.Minute, layer+" HA", func() error {
		st, err := b.status(n1)
		if err != nil {
			return err
		}
		if err := layerHA(st, api.LayerClusterDB); err != nil {
			return err
		}
		return layerHA(st, layer)
	})
	return time.Since(t0), err
}

func (b *bench) atRest(rest []named) error {
	settle := time.Duration(envInt("CLOUDBENCH_SETTLE_S", 20)) * time.Second
	windows := envInt("CLOUDBENCH_IDLE_WINDOWS", 6)
	time.Sleep(settle)
	type key struct{ cluster, comm string }
	cpu := map[key]*Sample{}
	rss := map[key]*Sample{}
	snap := func() map[string]map[int]Proc {
		out := map[string]map[int]Proc{}
		for _, n := range rest {
			for _, nd := range n.c.Nodes {
				out[nd.NS] = nd.Procs(b.ctx)
			}
		}
		return out
	}
	prev := snap()
	t0 := time.Now()
	for w := 0; w < windows; w++ {
		time.Sleep(10 * time.Second)
		cur := snap()
		el := time.Since(t0).Seconds()
		t0 = time.Now()
		for _, n := range rest {
			ticks := map[string]float64{}
			for _, nd := range n.c.Nodes {
				for pid, p := range cur[nd.NS] {
					d := float64(p.Ticks)
					if q, ok := prev[nd.NS][pid]; ok && q.Comm == p.Comm {
						d -= float64(q.Ticks)
					}
					ticks[p.Comm] += d
				}
			}
			for comm, t := range ticks {
				k := key{n.label, comm}
				if cpu[k] == nil {
					cpu[k] = &Sample{Unit: "% of a core"}
				}
				cpu[k].Add(100 * t / clockTicks / el)
			}
		}
		prev = cur
	}
	for _, n := range rest {
		for _, nd := range n.c.Nodes {
			perComm := map[string]int{}
			for _, p := range prev[nd.NS] {
				perComm[p.Comm] += p.RSSKiB
			}
			for comm, kib := range perComm {
				k := key{n.label, comm}
				if rss[k] == nil {
					rss[k] = &Sample{Unit: "MiB"}
				}
				rss[k].Add(float64(kib) / 1024)
			}
		}
	}
	get := func(m map[key]*Sample, label, comm string) Sample {
		if s := m[key{label, comm}]; s != nil {
			return *s
		}
		return Sample{}
	}
	s := b.rep.Section("Cost at rest")
	s.Intro = []string{
		fmt.Sprintf("Clusters formed, then a %s pause, then %d windows of 10 s: CPU from utime+stime in /proc/PID/stat of every process in the nodes' namespaces (all started by the harness), summed over the cluster's nodes, as %% of one core; the spread is over the windows. RSS is VmRSS per node (summed per process name), spread over nodes.", settle, windows),
		"All clusters idle side by side in the same windows.",
	}
	var bareLabel string
	for _, n := range rest {
		if strings.Contains(n.label, "microd") && len(n.c.Nodes) == 3 {
			bareLabel = n.label
		}
	}
	for _, n := range rest {
		comms := map[string]bool{}
		for k := range cpu {
			if k.cluster == n.label {
				comms[k.comm] = true
			}
		}
		for _, comm := range sortedKeys(comms) {
			row := Row{Figure: fmt.Sprintf("%s: %s CPU", n.label, comm), Ours: get(cpu, n.label, comm)}
			if strings.HasPrefix(comm, "cloudd") && len(n.c.Nodes) == 3 && bareLabel != "" {
				row.FloorName, row.Floor = "(b) microd CPU", get(cpu, bareLabel, "microd")
			}
			s.Rows = append(s.Rows, row)
		}
	}
	for _, n := range rest {
		comms := map[string]bool{}
		for k := range rss {
			if k.cluster == n.label {
				comms[k.comm] = true
			}
		}
		for _, comm := range sortedKeys(comms) {
			row := Row{Figure: fmt.Sprintf("%s: %s RSS per node", n.label, comm), Ours: get(rss, n.label, comm)}
			if strings.HasPrefix(comm, "cloudd") {
				for _, m := range rest {
					if strings.Contains(m.label, "microd") && len(m.c.Nodes) == len(n.c.Nodes) {
						row.FloorName, row.Floor = "microd RSS", get(rss, m.label, "microd")
					}
				}
			}
			s.Rows = append(s.Rows, row)
		}
	}
	// (a)/(b), the lead's target: everything a compute-only cluster runs vs bare microd.
	for _, n := range rest {
		if !strings.HasPrefix(n.label, "(a)") || bareLabel == "" {
			continue
		}
		tot := Sample{Unit: "% of a core"}
		for w := 0; w < windows; w++ {
			sum, ok := 0.0, false
			for k, v := range cpu {
				if k.cluster == n.label && w < v.N() {
					sum += v.Values[w]
					ok = true
				}
			}
			if ok {
				tot.Add(sum)
			}
		}
		s.Rows = append(s.Rows, Row{Figure: n.label + ": all processes CPU", Ours: tot, FloorName: "(b) microd CPU", Floor: get(cpu, bareLabel, "microd"), Note: "the (a)/(b) ratio; target ≤ 1.5×"})
	}
	return nil
}

// failoverControl kills the node holding the dqlite leader (every process in
// its namespace) three times and times the first write through the cluster
// API and through a survivor's control database; then restarts it and
// times the return to HA.
func (b *bench) failoverControl(c *Cluster) error {
	apiS, dbS, backS := ms(), ms(), secs()
	var errs []error
	for rep := 0; rep < 3; rep++ {
		leader, err := b.leader(c)
		if err != nil {
			return err
		}
		var survivor *Node
		for _, nd := range c.Nodes {
			if nd != leader {
				survivor = nd
				break
			}
		}
		want := map[string]bool{api.LayerClusterDB: true, api.LayerControl: true}
		if err := b.waitHA(c, want); err != nil {
			return err
		}
		b.step("control failover %d: killing %s (HA layers before: %v)", rep+1, leader.Name, sortedKeys(want))
		cnf, err := b.dbClientConfig(survivor, fmt.Sprintf("fo%d", rep), "")
		if err != nil {
			return err
		}
		if _, err := waitFor(b.ctx, 2*time.Minute, "control database write before the failover", func() error { return b.dbWrite(survivor, cnf) }); err != nil {
			return err
		}
		t0 := time.Now() // the clock starts at the kill, not when every process is gone
		leader.PowerOff(b.ctx)
		var wg sync.WaitGroup
		var apiErr, dbErr error
		var apiD, dbD time.Duration
		wg.Add(2)
		go func() {
			defer wg.Done()
			i := 0
			_, apiErr = waitFor(b.ctx, 2*time.Minute, "cluster API write", func() error {
				i++
				return b.cloudWrite(survivor, fmt.Sprintf("fo%d-%d", rep, i))
			})
			apiD = time.Since(t0)
		}()
		go func() {
			defer wg.Done()
			_, dbErr = waitFor(b.ctx, 2*time.Minute, "control database write", func() error { return b.dbWrite(survivor, cnf) })
			dbD = time.Since(t0)
		}()
		wg.Wait()
		if apiErr != nil || dbErr != nil {
			errs = append(errs, errors.Join(apiErr, dbErr))
		}
		if apiErr == nil {
			apiS.AddDur(apiD)
		}
		if dbErr == nil {
			dbS.AddDur(dbD)
		}
		t1 := time.Now()
		if err := b.restartCloudd(leader); err != nil {
			return errors.Join(append(errs, err)...)
		}
		b.step("control failover %d: cluster API write after %s, database write after %s; restarting %s", rep+1, apiD.Round(time.Millisecond), dbD.Round(time.Millisecond), leader.Name)
		if _, err := waitFor(b.ctx, 5*time.Minute, "layers HA again after restart", func() error {
			st, err := b.status(survivor)
			if err != nil {
				return err
			}
			return haBack(st, want)
		}); err != nil {
			return errors.Join(append(errs, err)...)
		}
		backS.AddDur(time.Since(t1))
	}
	s := b.rep.Section("Failover: SIGKILL of the node holding the dqlite leader")
	s.Intro = append(s.Intro, "Every process in the leader's namespace is SIGKILLed (cloudd, mariadbd...); then a survivor is polled every 100 ms. The cluster API write is `cloudctl cluster add NAME` (a join-token row in dqlite); the database write is a `mysql` client in the survivor's namespace inserting into the identity service's database on the survivor's own endpoint (TLS).")
	s.Rows = append(s.Rows,
		Row{Figure: "(c) 3 × control: first cluster API write", Ours: apiS},
		Row{Figure: "(c) 3 × control: first control database write", Ours: dbS},
		Row{Figure: "(c) killed node restarted → every layer HA again", Ours: backS, Note: "the layers that were HA before the kill"},
	)
	if !hasOther(b.other, "endpoint") {
		b.rep.Gap("floating address failover: no endpoint driver registered in cmd/cloudd/main.go at run time")
	}
	return errors.Join(errs...)
}

func hasOther(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// dbClientConfig writes a 0600 mysql option file (the password never goes
// on a command line) for the identity service on nd's own endpoint.
// dbClientConfig writes a mysql client config for the identity service's
// database from nd: to nd's own endpoint, or to host (the floating
// address) on the same port.
func (b *bench) dbClientConfig(nd *Node, tag, host string) (string, error) {
	c, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	out, _, err := b.cli(c, nd, "database", "credentials", "identity", "--format", "json")
	if err != nil {
		return "", err
	}
	var cr api.DBCredentials
	if err := json.Unmarshal([]byte(out), &cr); err != nil {
		return "", fmt.Errorf("credentials json: %w", err)
	}
	port := "3306"
	for _, ep := range cr.Endpoints {
		if h, p, err := net.SplitHostPort(ep); err == nil && h == nd.IP {
			port = p
		}
	}
	dir := filepath.Join(b.lab.Dir, "mysql-"+tag)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	if host == "" {
		host = nd.IP
	}
	var lines = []string{"[client]", "user=" + cr.User, "password=" + cr.Password, "host=" + host, "port=" + port, "database=" + cr.Database, "connect-timeout=2"}
	if cr.CA != "" {
		ca := filepath.Join(dir, "ca.pem")
		if err := os.WriteFile(ca, []byte(cr.CA), 0o600); err != nil {
			return "", err
		}
		lines = append(lines, "ssl-ca="+ca)
	}
	f := filepath.Join(dir, "client.cnf")
	if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return "", err
	}
	return f, nil
}

func (b *bench) dbWrite(nd *Node, cnf string) error {
	c, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	_, _, err := nd.Exec(c, nil, "mysql", "--defaults-extra-file="+cnf, "-e",
		"CREATE TABLE IF NOT EXISTS bench_failover (id BIGINT AUTO_INCREMENT PRIMARY KEY, at DATETIME(6)); INSERT INTO bench_failover (at) VALUES (NOW(6))")
	return err
}

// powerCut kills every process of every node, starts every cloudd at once,
// and times each layer's return to HA and the whole `HA: yes`.
func (b *bench) powerCut(label string, c *Cluster, reps int, want map[string]bool) error {
	var layers []string
	per := map[string]*Sample{}
	all := secs()
	for rep := 0; rep < reps; rep++ {
		if err := b.waitHA(c, want); err != nil {
			return err
		}
		b.step("%s: power cut %d (HA layers before: %v)", label, rep+1, sortedKeys(want))
		for _, nd := range c.Nodes {
			nd.PowerOff(b.ctx)
		}
		t0 := time.Now()
		for _, nd := range c.Nodes {
			if err := nd.Restart(); err != nil {
				return err
			}
		}
		seen := map[string]time.Duration{}
		_, err := waitFor(b.ctx, 5*time.Minute, label+" layers HA again after a power cut", func() error {
			st, err := b.anyStatus(c)
			if err != nil {
				return err
			}
			for _, l := range st.Layers {
				if _, ok := seen[l.Name]; !ok && l.HA == api.HAYes {
					seen[l.Name] = time.Since(t0)
					if !hasOther(layers, l.Name) {
						layers = append(layers, l.Name)
					}
				}
			}
			return haBack(st, want)
		})
		if err != nil {
			return err
		}
		all.AddDur(time.Since(t0))
		b.step("%s: power cut %d: layers HA again after %s", label, rep+1, time.Since(t0).Round(time.Millisecond))
		for l, d := range seen {
			if per[l] == nil {
				s := secs()
				per[l] = &s
			}
			per[l].AddDur(d)
		}
		// Every daemon answers again before the next cut.
		for _, nd := range c.Nodes {
			if err := b.waitCloudd(nd); err != nil {
				return err
			}
		}
	}
	s := b.rep.Section("Power cut → healthy")
	s.Intro = []string{"Every process of every node SIGKILLed, then every daemon started at once; times from the start to each layer's HA verdict `yes`, and to all the layers that were HA before the cut being HA again (status polled every 100 ms on the first node that answers). The top line `HA: yes` also needs 3 control nodes, so only a control cluster can reach it."}
	for _, l := range layers {
		if per[l] != nil {
			s.Rows = append(s.Rows, Row{Figure: fmt.Sprintf("%s: %s layer HA", label, l), Ours: *per[l]})
		}
	}
	s.Rows = append(s.Rows, Row{Figure: label + ": every layer HA again", Ours: all})
	return nil
}

// powerCutBare compares the control-plane-only cluster with bare microd:
// everything killed, every daemon started at once, time to the first write.
func (b *bench) powerCutBare(P, B *Cluster, reps int) error {
	ours, floor, ha := secs(), secs(), secs()
	for rep := 0; rep < reps; rep++ {
		want := map[string]bool{api.LayerClusterDB: true}
		if err := b.waitHA(P, want); err != nil {
			return err
		}
		b.step("clouddcore power cut %d", rep+1)
		for _, nd := range P.Nodes {
			nd.PowerOff(b.ctx)
		}
		t0 := time.Now()
		for _, nd := range P.Nodes {
			if err := nd.Restart(); err != nil {
				return err
			}
		}
		i := 0
		if _, err := waitFor(b.ctx, 3*time.Minute, "first write after a power cut", func() error {
			i++
			return b.cloudWrite(P.Node(1), fmt.Sprintf("pc%d-%d", rep, i))
		}); err != nil {
			return err
		}
		ours.AddDur(time.Since(t0))
		if _, err := waitFor(b.ctx, 3*time.Minute, "cluster database HA after a power cut", func() error {
			st, err := b.anyStatus(P)
			if err != nil {
				return err
			}
			return haBack(st, want)
		}); err != nil {
			return err
		}
		ha.AddDur(time.Since(t0))
		for _, nd := range B.Nodes {
			nd.PowerOff(b.ctx)
		}
		t0 = time.Now()
		for _, nd := range B.Nodes {
			if err := nd.Restart(); err != nil {
				return err
			}
		}
		i = 0
		if _, err := waitFor(b.ctx, 3*time.Minute, "microd first write after a power cut", func() error {
			i++
			return b.microWrite(B.Node(1), fmt.Sprintf("pc%d-%d", rep, i))
		}); err != nil {
			return err
		}
		floor.AddDur(time.Since(t0))
	}
	s := b.rep.Section("Power cut → healthy")
	s.Rows = append(s.Rows,
		Row{Figure: fmt.Sprintf("(a′) 3 × %s, clouddcore: first cluster API write", b.cp), Ours: ours, FloorName: "bare microd: first write (token)", Floor: floor},
		Row{Figure: fmt.Sprintf("(a′) 3 × %s, clouddcore: cluster database HA again", b.cp), Ours: ha})
	return nil
}

// phaseFailoverBare: fresh 3-node control-plane-only clusters and bare
// microd clusters, alternated; SIGKILL of the leader, time to the first
// write on a survivor.
func (b *bench) phaseFailoverBare() error {
	reps := envInt("CLOUDBENCH_FAIL_REPS", 5)
	ours, floor := ms(), ms()
	for rep := 0; rep < reps; rep++ {
		if err := func() error {
			c, err := b.lab.NewCluster(b.ctx, 3)
			defer c.Close()
			if err != nil {
				return err
			}
			if err := b.formCloudd(c, b.startCore, string(b.cp)); err != nil {
				return err
			}
			leader, err := b.leader(c)
			if err != nil {
				return err
			}
			survivor := c.Node(1)
			if leader == survivor {
				survivor = c.Node(2)
			}
			t0 := time.Now()
			leader.PowerOff(b.ctx)
			i := 0
			if _, err := waitFor(b.ctx, 2*time.Minute, "first write after leader loss", func() error {
				i++
				return b.cloudWrite(survivor, fmt.Sprintf("fo%d", i))
			}); err != nil {
				return err
			}
			ours.AddDur(time.Since(t0))
			b.step("failover clouddcore %d: %s", rep+1, time.Since(t0).Round(time.Millisecond))
			return nil
		}(); err != nil {
			return err
		}
		if err := func() error {
			c, err := b.lab.NewCluster(b.ctx, 3)
			defer c.Close()
			if err != nil {
				return err
			}
			if err := b.formMicrod(c); err != nil {
				return err
			}
			t0 := time.Now()
			c.Node(1).PowerOff(b.ctx)
			i := 0
			if _, err := waitFor(b.ctx, 2*time.Minute, "microd first write after leader loss", func() error {
				i++
				return b.microWrite(c.Node(2), fmt.Sprintf("fo%d", i))
			}); err != nil {
				return err
			}
			floor.AddDur(time.Since(t0))
			return nil
		}(); err != nil {
			return err
		}
	}
	s := b.rep.Section("Failover: SIGKILL of the node holding the dqlite leader")
	s.Rows = append(s.Rows, Row{
		Figure: fmt.Sprintf("(a′) fresh 3 × %s, clouddcore: first cluster API write", b.cp), Ours: ours,
		FloorName: "bare microd: first write (token)", Floor: floor,
		Note: "microd's leader is taken to be node1, the bootstrap member of a fresh cluster",
	})
	return nil
}
