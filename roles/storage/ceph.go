package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// cephConn is a librados connection as client.admin, configured in memory
// (monitor addresses and the key from the cluster database): nothing is
// written to disk to open one.
//
// A connection is shared by Converge, Status, Guard and the endpoints;
// librados must never be called on a handle that was shut down (it
// dereferences it), so every call holds mu for reading and close waits
// for the calls in flight.
type cephConn struct {
	conn    *rados.Conn
	monHost string

	mu     sync.RWMutex
	closed bool
}

// errClosed is a call on a connection that was dropped.
var errClosed = errors.New("the Ceph connection was closed; try again")

// opTimeout bounds every monitor and OSD operation (seconds).
const opTimeout = "10"

func dial(ctx context.Context, monHost, adminKey string) (*cephConn, error) {
	type result struct {
		c   *rados.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := rados.NewConnWithUser("admin")
		if err != nil {
			ch <- result{err: err}
			return
		}
		for k, v := range map[string]string{
			"mon_host": monHost, "key": adminKey,
			"client_mount_timeout": opTimeout, "rados_mon_op_timeout": opTimeout, "rados_osd_op_timeout": opTimeout,
			"log_to_stderr": "false", "err_to_stderr": "false", "log_file": "",
		} {
			if err := c.SetConfigOption(k, v); err != nil {
				c.Shutdown()
				ch <- result{err: fmt.Errorf("set %s: %w", k, err)}
				return
			}
		}
		if err := c.Connect(); err != nil {
			c.Shutdown()
			ch <- result{err: err}
			return
		}
		ch <- result{c: c}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("connect to the Ceph monitors at %s: %w", monHost, r.err)
		}
		return &cephConn{conn: r.c, monHost: monHost}, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Shutdown()
			}
		}()
		return nil, fmt.Errorf("connect to the Ceph monitors at %s: %w", monHost, ctx.Err())
	}
}

// close shuts the connection down once no call is in flight.
func (c *cephConn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		c.conn.Shutdown()
	}
}

// call runs one librados command with ctx's deadline; an error names the
// command and carries Ceph's own status text. The connection's read lock is
// held until librados returns, even when the caller gave up waiting, so the
// connection is never shut down under a running command.
func (c *cephConn) call(ctx context.Context, what string, fn func(*rados.Conn) ([]byte, string, error)) ([]byte, error) {
	type result struct {
		buf []byte
		st  string
		err error
	}
	ch := make(chan result, 1)
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return nil, fmt.Errorf("ceph %s: %w", what, errClosed)
	}
	go func() {
		defer c.mu.RUnlock()
		var r result
		r.buf, r.st, r.err = fn(c.conn)
		ch <- r
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			if st := strings.TrimSpace(r.st); st != "" {
				return nil, fmt.Errorf("ceph %s: %w: %s", what, r.err, st)
			}
			return nil, fmt.Errorf("ceph %s: %w", what, r.err)
		}
		return r.buf, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("ceph %s: %w", what, ctx.Err())
	}
}

// mon runs one monitor command and decodes its JSON answer into out (when not nil).
func (c *cephConn) mon(ctx context.Context, cmd map[string]any, in []byte, out any) error {
	if _, ok := cmd["format"]; !ok {
		cmd["format"] = "json"
	}
	b, err := json.Marshal(cmd)
	if err != nil {
		return err
	}
	buf, err := c.call(ctx, fmt.Sprint(cmd["prefix"]), func(rc *rados.Conn) ([]byte, string, error) {
		if in != nil {
			return rc.MonCommandWithInputBuffer(b, in)
		}
		return rc.MonCommand(b)
	})
	if err != nil {
		return err
	}
	if out != nil && len(buf) > 0 {
		if raw, ok := out.(*[]byte); ok {
			*raw = buf
			return nil
		}
		if err := json.Unmarshal(buf, out); err != nil {
			return fmt.Errorf("ceph %s: decode the answer: %w", cmd["prefix"], err)
		}
	}
	return nil
}

// safeToDestroy asks the manager whether osd id holds no data any more
// (`osd safe-to-destroy`): every placement group it had is active+clean
// elsewhere. An error means not (yet) safe, or no manager answered. The
// manager judges from the placement-group statistics it last received, so
// callers flush them first (flushPGStats).
func (c *cephConn) safeToDestroy(ctx context.Context, id int) error {
	// Plain format: the manager answers EBUSY while it is not safe (with
	// a JSON format it lists the state and answers 0).
	b, err := json.Marshal(map[string]any{"prefix": "osd safe-to-destroy", "ids": []string{strconv.Itoa(id)}})
	if err != nil {
		return err
	}
	if _, err := c.call(ctx, "osd safe-to-destroy", func(rc *rados.Conn) ([]byte, string, error) {
		return rc.MgrCommand([][]byte{b})
	}); err != nil {
		return fmt.Errorf("osd.%d is not safe to destroy yet: %w", id, err)
	}
	return nil
}

// flushPGStats makes every running OSD report its placement-group
// statistics now and waits until the monitors have them, so that what
// follows (all PGs active+clean? safe to destroy?) is judged on the state
// after the last change and not on statistics from before it (they are
// otherwise sent every few seconds: an OSD marked out a moment ago still
// looks empty or clean).
func (c *cephConn) flushPGStats(ctx context.Context) error {
	var dump struct {
		OSDs []struct {
			ID int `json:"osd"`
			Up int `json:"up"`
		} `json:"osds"`
	}
	if err := c.mon(ctx, map[string]any{"prefix": "osd dump"}, nil, &dump); err != nil {
		return err
	}
	want := map[int]uint64{}
	for _, o := range dump.OSDs {
		if o.Up != 1 {
			continue
		}
		b, _ := json.Marshal(map[string]any{"prefix": "flush_pg_stats"})
		id := o.ID
		buf, err := c.call(ctx, "flush_pg_stats", func(rc *rados.Conn) ([]byte, string, error) {
			return rc.OsdCommand(id, [][]byte{b})
		})
		if err != nil {
			return fmt.Errorf("ask osd.%d for its placement-group statistics: %w", id, err)
		}
		seq, err := strconv.ParseUint(strings.TrimSpace(string(buf)), 10, 64)
		if err != nil {
			return fmt.Errorf("osd.%d answered %q to flush_pg_stats, not a sequence number", id, buf)
		}
		want[id] = seq
	}
	for id, seq := range want {
		for {
			// Plain format: with a JSON one the monitor answers nothing.
			var raw []byte
			if err := c.mon(ctx, map[string]any{"prefix": "osd last-stat-seq", "id": id, "format": "plain"}, nil, &raw); err != nil {
				return err
			}
			got, err := strconv.ParseUint(strings.TrimSpace(string(raw)), 10, 64)
			if err != nil {
				return fmt.Errorf("the monitor answered %q for osd.%d's last statistics, not a sequence number", raw, id)
			}
			if got >= seq {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("osd.%d's placement-group statistics did not arrive: %w", id, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// connCache keeps one connection per driver; it is dropped on errors and
// when the monitors change.
type connCache struct {
	mu sync.Mutex
	c  *cephConn
}

func (cc *connCache) get(ctx context.Context, monHost, key string) (*cephConn, error) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.c != nil && cc.c.monHost == monHost {
		return cc.c, nil
	}
	if cc.c != nil {
		go cc.c.close()
		cc.c = nil
	}
	c, err := dial(ctx, monHost, key)
	if err != nil {
		return nil, err
	}
	cc.c = c
	return c, nil
}

// drop forgets c; it is shut down once the calls in flight on it return.
func (cc *connCache) drop(c *cephConn) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.c == c && c != nil {
		go c.close()
		cc.c = nil
	}
}

func (cc *connCache) close() {
	cc.mu.Lock()
	c := cc.c
	cc.c = nil
	cc.mu.Unlock()
	if c != nil {
		c.close()
	}
}

// The answers of the monitor commands the driver reads.

type cephStatus struct {
	Health struct {
		Status string                     `json:"status"`
		Checks map[string]cephHealthCheck `json:"checks"`
	} `json:"health"`
	QuorumNames []string `json:"quorum_names"`
	MonMap      struct {
		NumMons int `json:"num_mons"`
	} `json:"monmap"`
	PGMap struct {
		NumPGs     int `json:"num_pgs"`
		PGsByState []struct {
			StateName string `json:"state_name"`
			Count     int    `json:"count"`
		} `json:"pgs_by_state"`
		BytesUsed  int64 `json:"bytes_used"`
		BytesAvail int64 `json:"bytes_avail"`
		BytesTotal int64 `json:"bytes_total"`
	} `json:"pgmap"`
	MgrMap struct {
		Available bool `json:"available"`
	} `json:"mgrmap"`
}

type cephHealthCheck struct {
	Severity string `json:"severity"`
	Summary  struct {
		Message string `json:"message"`
	} `json:"summary"`
}

// reasons are the health checks' messages, most severe first.
func (s cephStatus) reasons() []string {
	var errs, warns []string
	for _, c := range s.Health.Checks {
		if c.Severity == "HEALTH_ERR" {
			errs = append(errs, c.Summary.Message)
		} else {
			warns = append(warns, c.Summary.Message)
		}
	}
	sort.Strings(errs)
	sort.Strings(warns)
	return append(errs, warns...)
}

// allClean reports whether every PG is active+clean.
func (s cephStatus) allClean() bool {
	n := 0
	for _, p := range s.PGMap.PGsByState {
		if p.StateName == "active+clean" {
			n += p.Count
		}
	}
	return n == s.PGMap.NumPGs
}

type cephPool struct {
	Name    string         `json:"pool_name"`
	ID      int            `json:"pool_id"`
	Size    int            `json:"size"`
	MinSize int            `json:"min_size"`
	RuleID  int            `json:"crush_rule"`
	PGNum   int            `json:"pg_num"`
	AppMeta map[string]any `json:"application_metadata"`
}

type cephRule struct {
	ID   int    `json:"rule_id"`
	Name string `json:"rule_name"`
}

type cephOSDTree struct {
	Nodes []struct {
		ID       int     `json:"id"`
		Name     string  `json:"name"`
		Type     string  `json:"type"`
		Children []int   `json:"children"`
		Status   string  `json:"status"`
		Reweight float64 `json:"reweight"`
	} `json:"nodes"`
}

type cephDF struct {
	Pools []struct {
		Name  string `json:"name"`
		Stats struct {
			Stored    int64   `json:"stored"`
			Objects   int64   `json:"objects"`
			BytesUsed int64   `json:"bytes_used"`
			MaxAvail  int64   `json:"max_avail"`
			Percent   float64 `json:"percent_used"`
		} `json:"stats"`
	} `json:"pools"`
	Stats struct {
		TotalBytes     int64 `json:"total_bytes"`
		TotalAvail     int64 `json:"total_avail_bytes"`
		TotalUsedBytes int64 `json:"total_used_raw_bytes"`
	} `json:"stats"`
}

// osdState is one OSD as the OSD map sees it.
type osdState struct {
	ID   int
	Host string
	Up   bool
	In   bool
}

func (c *cephConn) osdStates(ctx context.Context) (map[int]osdState, error) {
	var tree cephOSDTree
	if err := c.mon(ctx, map[string]any{"prefix": "osd tree"}, nil, &tree); err != nil {
		return nil, err
	}
	host := map[int]string{}
	for _, n := range tree.Nodes {
		if n.Type == "host" {
			for _, ch := range n.Children {
				host[ch] = n.Name
			}
		}
	}
	out := map[int]osdState{}
	for _, n := range tree.Nodes {
		if n.Type != "osd" {
			continue
		}
		out[n.ID] = osdState{ID: n.ID, Host: host[n.ID], Up: n.Status == "up", In: n.Reweight > 0}
	}
	return out, nil
}

// pgBrief is one placement group as the manager last heard of it.
type pgBrief struct {
	PGID   string `json:"pgid"`
	State  string `json:"state"`
	Up     []int  `json:"up"`
	Acting []int  `json:"acting"`
}

// pgsBrief lists every placement group with its state and OSD sets (`pg
// dump pgs_brief`, a manager command: call it only while a manager is
// available, librados waits for one otherwise).
func (c *cephConn) pgsBrief(ctx context.Context) ([]pgBrief, error) {
	b, err := json.Marshal(map[string]any{"prefix": "pg dump", "dumpcontents": []string{"pgs_brief"}, "format": "json"})
	if err != nil {
		return nil, err
	}
	buf, err := c.call(ctx, "pg dump", func(rc *rados.Conn) ([]byte, string, error) {
		return rc.MgrCommand([][]byte{b})
	})
	if err != nil {
		return nil, err
	}
	// Pacific wraps the list; older managers answered the bare list.
	var wrapped struct {
		PGStats []pgBrief `json:"pg_stats"`
	}
	if err := json.Unmarshal(buf, &wrapped); err == nil {
		return wrapped.PGStats, nil
	}
	var bare []pgBrief
	if err := json.Unmarshal(buf, &bare); err != nil {
		return nil, fmt.Errorf("ceph pg dump: decode the answer: %w", err)
	}
	return bare, nil
}

// settledPGs counts the placement groups that are active+clean with every
// copy their pool asks for (acting set as large as the pool's size, and the
// same as the up set). Right after a pool's size changes the manager still
// reports each group's state from before the change, active+clean with one
// copy fewer, for a few seconds: a count of active+clean alone would call
// the cluster healthy while the new copies are not made yet, and losing a
// node then blocks writes to the groups left with fewer than min_size.
func settledPGs(pgs []pgBrief, sizes map[int]int) int {
	n := 0
	for _, p := range pgs {
		pool, _, ok := strings.Cut(p.PGID, ".")
		id, err := strconv.Atoi(pool)
		if !ok || err != nil || p.State != "active+clean" || !slices.Equal(p.Up, p.Acting) {
			continue
		}
		if size, known := sizes[id]; !known || len(p.Acting) < size {
			continue
		}
		n++
	}
	return n
}

func (c *cephConn) status(ctx context.Context) (cephStatus, error) {
	var s cephStatus
	err := c.mon(ctx, map[string]any{"prefix": "status"}, nil, &s)
	return s, err
}

func (c *cephConn) pools(ctx context.Context) ([]cephPool, error) {
	var ps []cephPool
	err := c.mon(ctx, map[string]any{"prefix": "osd pool ls", "detail": "detail"}, nil, &ps)
	return ps, err
}

func (c *cephConn) rules(ctx context.Context) (map[int]string, error) {
	var rs []cephRule
	if err := c.mon(ctx, map[string]any{"prefix": "osd crush rule dump"}, nil, &rs); err != nil {
		return nil, err
	}
	out := map[int]string{}
	for _, r := range rs {
		out[r.ID] = r.Name
	}
	return out, nil
}

func (c *cephConn) df(ctx context.Context) (cephDF, error) {
	var d cephDF
	err := c.mon(ctx, map[string]any{"prefix": "df", "detail": "detail"}, nil, &d)
	return d, err
}

// notFound reports whether a monitor command failed because what it names
// does not exist (an entity, an OSD): for a deletion, that is done.
func notFound(err error) bool {
	return errors.Is(err, rados.ErrNotFound) || strings.Contains(err.Error(), "does not exist")
}
