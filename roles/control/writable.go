package control

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/cloudctl/cloudctl/roles/driver"
)

// WritablePath is the cluster API path (under /1.0/) that answers 200 while
// this member's copy of instance {name} may take writes. The control role
// offers it as the floating endpoint's backend check (driver.HTTPCheck):
// HAProxy then sends a database's clients only to a member that is Synced,
// never to one joining, donating or desynced.
const WritablePath = "control/instances/{name}/writable"

func writablePath(instance string) string {
	return "/1.0/control/instances/" + instance + "/writable"
}

// Writable is the answer of GET /1.0/control/instances/{name}/writable.
type Writable struct {
	Instance string `json:"instance"`
	Writable bool   `json:"writable"`
	// Reason says why not (or "standalone" for an unreplicated copy).
	Reason string `json:"reason,omitempty"`
}

// WritableVerdict judges a member from its wsrep status variables. A
// Galera member takes writes only when it is Synced
// (wsrep_local_state=4), ready (wsrep_ready=ON) and in the Primary
// component; an unreplicated copy (galera false) whenever it answers.
func WritableVerdict(galera bool, vars map[string]string) (bool, string) {
	if !galera {
		return true, "standalone"
	}
	if s := vars["wsrep_cluster_status"]; s != "Primary" {
		return false, fmt.Sprintf("not in the Primary component (wsrep_cluster_status %s)", orUnknown(s))
	}
	if s := vars["wsrep_local_state"]; s != "4" {
		return false, fmt.Sprintf("not Synced (wsrep_local_state %s, %s)", orUnknown(s), orUnknown(vars["wsrep_local_state_comment"]))
	}
	if s := vars["wsrep_ready"]; s != "ON" {
		return false, fmt.Sprintf("not ready (wsrep_ready %s)", orUnknown(s))
	}
	return true, ""
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// hosted is what the writable check needs of an instance this node hosts,
// recorded by Converge (the check is a light endpoint: no cluster read).
type hosted struct {
	sock, password string
	galera         bool
}

// writers holds the hosted instances and one admin connection pool per
// instance, reused across checks (HAProxy checks every second).
type writers struct {
	mu    sync.Mutex
	insts map[string]hosted
	dbs   map[string]*sql.DB
}

// set records the instances this node hosts now; pools of others close.
func (w *writers) set(insts map[string]hosted) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, db := range w.dbs {
		if h, ok := insts[name]; !ok || h != w.insts[name] {
			db.Close()
			delete(w.dbs, name)
		}
	}
	w.insts = insts
}

func (w *writers) db(name string) (*sql.DB, hosted, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h, ok := w.insts[name]
	if !ok {
		return nil, h, false, nil
	}
	if db := w.dbs[name]; db != nil {
		return db, h, true, nil
	}
	db, err := openAdmin(h.sock, h.password)
	if err != nil {
		return nil, h, true, err
	}
	if w.dbs == nil {
		w.dbs = map[string]*sql.DB{}
	}
	w.dbs[name] = db
	return db, h, true, nil
}

func (w *writers) close() { w.set(nil) }

// writable asks the local instance.
func (w *writers) writable(ctx context.Context, name string) (Writable, error) {
	out := Writable{Instance: name}
	db, h, ok, err := w.db(name)
	if !ok {
		return out, driver.Errorf(http.StatusServiceUnavailable, "this node hosts no copy of %s", name)
	}
	if err != nil {
		return out, driver.Errorf(http.StatusServiceUnavailable, "%s: %v", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	vars, err := wsrepVars(ctx, db)
	if err != nil {
		return out, driver.Errorf(http.StatusServiceUnavailable, "%s does not answer: %v", name, err)
	}
	out.Writable, out.Reason = WritableVerdict(h.galera, vars)
	if !out.Writable {
		return out, driver.Errorf(http.StatusServiceUnavailable, "%s: %s", name, out.Reason)
	}
	return out, nil
}

func wsrepVars(ctx context.Context, db *sql.DB) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_cluster_status','wsrep_local_state','wsrep_local_state_comment','wsrep_ready')")
	if err != nil {
		return nil, fmt.Errorf("read wsrep status: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("read wsrep status: %w", err)
		}
		out[k] = v
	}
	return out, rows.Err()
}

func (d *Driver) handleWritable(ctx context.Context, env *driver.Env, req driver.Request) (any, error) {
	return d.writers.writable(ctx, req.Vars["name"])
}

// hostedInstances is what Converge records for the writable check.
func hostedInstances(dir string, des Desired) map[string]hosted {
	if !des.Host {
		return nil
	}
	out := map[string]hosted{}
	for _, in := range des.Instances {
		out[in.Name] = hosted{sock: instancePaths(dir, in).sock, password: des.AdminPassword, galera: len(des.Peers) > 0}
	}
	return out
}
