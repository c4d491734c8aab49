package storage

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/cephclient"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/driver/drivertest"
	"github.com/cloudctl/cloudctl/roles/seal"
)

// clusterOf makes one env per node over one cluster database; each node has
// a directory of its own. The first node is the first storage node.
func clusterOf(t *testing.T, nodes ...driver.Node) []*driver.Env {
	t.Helper()
	first := testEnv(t, nil, nodes[0], nodes...)
	out := []*driver.Env{first}
	for _, n := range nodes[1:] {
		e := *first
		e.Local, e.Dir = n, t.TempDir()
		out = append(out, &e)
	}
	return out
}

// postPeers answers POSTs with post (a guard forwarded to a node that
// runs Ceph), and GETs of the seal holder with holder, and nothing else.
type postPeers struct {
	post   func(node, path string, in any) error
	holder sealHolder
}

func (p postPeers) Get(ctx context.Context, node, path string, out any) error {
	if path != sealHolderPath {
		return fmt.Errorf("no GET %s on %s in this test", path, node)
	}
	*out.(*sealHolder) = p.holder
	return nil
}

func (p postPeers) Post(ctx context.Context, node, path string, in, out any) error {
	return p.post(node, path, in)
}

// serve answers as the storage drivers of envs would, each caller known by
// its certificate (Caller).
func serve(t *testing.T, caller string, envs ...*driver.Env) drivertest.Peers {
	ds := map[string]*Driver{}
	byName := map[string]*driver.Env{}
	for _, e := range envs {
		ds[e.Local.Name], byName[e.Local.Name] = New(), e
	}
	return func(node, path string) (any, error) {
		e, ok := byName[node]
		if !ok {
			return nil, fmt.Errorf("connection refused")
		}
		d := ds[node]
		req := driver.Request{Caller: caller}
		switch {
		case path == SealKeyPath:
			return d.handleSealKey(t.Context(), e, req)
		case path == sealHolderPath:
			return d.handleSealHolder(t.Context(), e, req)
		case path == layerPath:
			return d.handleLayer(t.Context(), e, req)
		case strings.HasPrefix(path, cephclient.KeyPath+"/"):
			req.Vars = map[string]string{"name": strings.TrimPrefix(path, cephclient.KeyPath+"/")}
			return d.handleClientKey(t.Context(), e, req)
		}
		return nil, fmt.Errorf("unexpected path %s", path)
	}
}

// converged runs the secrets part of Converge on env and returns the state
// opened, and the key.
func converged(t *testing.T, env *driver.Env) (state, *seal.Key) {
	t.Helper()
	st, err := readState(t.Context(), env.DB)
	if err != nil {
		t.Fatal(err)
	}
	k, err := New().secrets(t.Context(), env, &st)
	if err != nil {
		t.Fatal(err)
	}
	return st, k
}

// dbFile is the bytes of env's cluster database file.
func dbFile(t *testing.T, env *driver.Env) []byte {
	t.Helper()
	var file string
	err := env.DB.Transaction(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `PRAGMA database_list`).Scan(new(int), new(string), &file)
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func putClient(t *testing.T, env *driver.Env, key string) {
	t.Helper()
	c := cephclient.Client{Name: cephclient.LXD, Purpose: "instances", Pool: "cloud-rbd", Key: key, FSID: "f", MonHost: "m", UpdatedAt: time.Now()}
	if err := cephclient.Put(t.Context(), env.DB, c); err != nil {
		t.Fatal(err)
	}
}

// The first storage node makes the key (0600) and the Ceph secrets, sealed:
// no byte of the database file holds the mon. or client.admin key, nor a
// Ceph user's key, in the clear.
func TestCephSecretsSealedAtRest(t *testing.T) {
	env := clusterOf(t, node("node1", 1, roles.Storage))[0]
	st, k := converged(t, env)
	if !validKey(st.Secrets.MonKey) || !validKey(st.Secrets.AdminKey) || st.Secrets.FSID == "" {
		t.Fatalf("secrets not opened: fsid %q, valid keys %v %v", st.Secrets.FSID, validKey(st.Secrets.MonKey), validKey(st.Secrets.AdminKey))
	}
	fi, err := os.Stat(filepath.Join(env.Dir, seal.File))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("storage seal key file: %v %v", fi, err)
	}
	rs, _ := readState(t.Context(), env.DB)
	if rs.SealID != storageSeal().ID(k) || !seal.IsSealed(rs.stored.MonKey) || !seal.IsSealed(rs.stored.AdminKey) {
		t.Fatalf("stored: key %q, sealed %v %v", rs.SealID, seal.IsSealed(rs.stored.MonKey), seal.IsSealed(rs.stored.AdminKey))
	}
	if rs.Secrets.MonKey != "" || rs.Secrets.AdminKey != "" {
		t.Fatal("a read of the tables opened the keys")
	}
	lxdKey, _ := NewKey(time.Now())
	sealed, err := k.Seal(cephclient.SealRow(cephclient.LXD), lxdKey)
	if err != nil {
		t.Fatal(err)
	}
	putClient(t, env, sealed)
	b := dbFile(t, env)
	if !bytes.Contains(b, []byte(seal.Prefix)) {
		t.Fatal("the database file holds no sealed value: this check would see nothing")
	}
	for what, s := range map[string]string{"mon. key": st.Secrets.MonKey, "admin key": st.Secrets.AdminKey, "key of client.lxd-remote": lxdKey} {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("the database file holds the %s in the clear", what)
		}
	}
	// A storage key is not a control key: another label, another id.
	if storageSeal().ID(k) == (seal.Kind{Label: "cloudctl control seal key\x00"}).ID(k) {
		t.Fatal("the storage key's id is the control label's")
	}
}

// Secrets an older version stored in the clear (storage_config and
// ceph_clients) are sealed in place at the next convergence of a storage
// node, and keep their values.
func TestClearCephSecretsSealed(t *testing.T) {
	env := clusterOf(t, node("node1", 1, roles.Storage))[0]
	mon, _ := NewKey(time.Now())
	admin, _ := NewKey(time.Now())
	lxdKey, _ := NewKey(time.Now())
	err := env.DB.Transaction(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		for k, v := range map[string]string{keyFSID: "fsid-1", keyMonKey: mon, keyAdminKey: admin} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO storage_config (key, value) VALUES (?, ?)`, k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	putClient(t, env, lxdKey)
	// Before the migration, a read path opens the clear values without a key.
	before, _ := readState(t.Context(), env.DB)
	if err := openHere(env, &before); err != nil || before.Secrets.AdminKey != admin {
		t.Fatalf("clear secrets before sealing: %v", err)
	}
	st, k := converged(t, env)
	if st.Secrets.MonKey != mon || st.Secrets.AdminKey != admin || st.Secrets.FSID != "fsid-1" {
		t.Fatal("the values changed when they were sealed")
	}
	rs, _ := readState(t.Context(), env.DB)
	if rs.SealID != storageSeal().ID(k) || !seal.IsSealed(rs.stored.MonKey) || !seal.IsSealed(rs.stored.AdminKey) {
		t.Fatal("still in the clear")
	}
	rec, _, _ := cephclient.Get(t.Context(), env.DB, cephclient.LXD)
	if got, err := storageSeal().Open(k, cephclient.SealRow(cephclient.LXD), rec.Key, false); err != nil || got != lxdKey {
		t.Fatalf("the Ceph user's key: sealed %v, opens: %v", seal.IsSealed(rec.Key), err)
	}
	b := dbFile(t, env)
	for _, s := range []string{mon, admin, lxdKey} {
		if bytes.Contains(b, []byte(s)) {
			// SQLite may keep a freed page's old bytes; the live rows are
			// checked above. The integration test reads dqlite's files.
			t.Log("a key is still in a free page of the SQLite file")
		}
	}
}

// Once a key is recorded, a Ceph key written in the clear (by anything
// that can write the cluster database) is refused, not taken and sealed.
func TestClearCephSecretRefusedOnceSealed(t *testing.T) {
	env := clusterOf(t, node("node1", 1, roles.Storage))[0]
	converged(t, env)
	chosen, _ := NewKey(time.Now())
	err := env.DB.Transaction(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE storage_config SET value = ? WHERE key = ?`, chosen, keyAdminKey)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := readState(t.Context(), env.DB)
	if _, err := New().secrets(t.Context(), env, &st); err == nil || !strings.Contains(err.Error(), "the storage secret admin_key is stored in the clear although the secrets are sealed") {
		t.Fatalf("a forged clear admin key: %v", err)
	}
	if st.Secrets.AdminKey == chosen {
		t.Fatal("the forged key was taken")
	}
	st, _ = readState(t.Context(), env.DB)
	if err := openHere(env, &st); err == nil || st.Secrets.AdminKey == chosen {
		t.Fatalf("a read path took the forged key: %v", err)
	}
}

// Only a member that runs Ceph (a storage node, or a control node holding a
// monitor) gets the storage seal key, and only over the cluster API.
func TestStorageSealKeyHandler(t *testing.T) {
	s, c, m := roles.Storage, roles.Control, roles.Compute
	envs := clusterOf(t, node("node1", 1, s), node("node2", 2, c), node("node3", 3, m), node("node4", 4, s))
	_, k := converged(t, envs[0])
	d := New()
	for _, tc := range []struct {
		name string
		req  driver.Request
		code int
		why  string
	}{
		{"local socket", driver.Request{Local: true}, http.StatusForbidden, "over the cluster API"},
		{"no member's certificate", driver.Request{}, http.StatusForbidden, "over the cluster API"},
		{"a compute node", driver.Request{Caller: "node3"}, http.StatusForbidden, "node3 is not one"},
		{"not a member", driver.Request{Caller: "node9"}, http.StatusForbidden, "node9 is not one"},
		{"a storage node", driver.Request{Caller: "node4"}, 0, ""},
		{"a control node holding a monitor", driver.Request{Caller: "node2"}, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := d.handleSealKey(t.Context(), envs[0], tc.req)
			if tc.code != 0 {
				if err == nil || driver.StatusCode(err) != tc.code || !strings.Contains(err.Error(), tc.why) {
					t.Fatalf("want %d (%s), got %v (%v)", tc.code, tc.why, err, out)
				}
				return
			}
			r, ok := out.(sealKeyReply)
			if err != nil || !ok || !bytes.Equal(r.Key, k[:]) || r.ID != storageSeal().ID(k) {
				t.Fatalf("%s: %v %v", tc.name, out, err)
			}
		})
	}
	// With three storage nodes the control node holds no monitor: refused.
	n5 := node("node5", 5, s)
	e := *envs[0]
	e.Nodes = append(append([]driver.Node(nil), e.Nodes...), n5)
	if _, err := d.handleSealKey(t.Context(), &e, driver.Request{Caller: "node2"}); driver.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("a control node without a monitor: %v", err)
	}
	// A node holding another key than the recorded one hands nothing out,
	// and says so (an empty key: a definite "not here").
	wrong, _ := seal.NewKey()
	if err := storageSeal().Write(envs[0].Dir, wrong); err != nil {
		t.Fatal(err)
	}
	if out, err := d.handleSealKey(t.Context(), envs[0], driver.Request{Caller: "node4"}); err != nil || len(out.(sealKeyReply).Key) != 0 {
		t.Fatalf("a node with a stale key: %v %v", out, err)
	}
}

// A node that starts running Ceph fetches the key from one that holds it,
// checks it against the recorded id, and keeps it 0600; a wrong key from a
// peer is refused and not kept.
func TestStorageAcquireKeyFetch(t *testing.T) {
	envs := clusterOf(t, node("node1", 1, roles.Storage), node("node2", 2, roles.Storage))
	s1, k1 := converged(t, envs[0])
	wrong, _ := seal.NewKey()
	envs[1].Peers = drivertest.Peers(func(node, path string) (any, error) {
		return sealKeyReply{ID: storageSeal().ID(wrong), Key: wrong[:]}, nil
	})
	st, _ := readState(t.Context(), envs[1].DB)
	if _, err := New().secrets(t.Context(), envs[1], &st); err == nil || !strings.Contains(err.Error(), "not the recorded") {
		t.Fatalf("a wrong key from a peer: %v", err)
	}
	if _, err := os.Stat(filepath.Join(envs[1].Dir, seal.File)); err == nil {
		t.Fatal("a wrong key was kept")
	}
	envs[1].Peers = serve(t, "node2", envs[0])
	s2, k2 := converged(t, envs[1])
	if storageSeal().ID(k2) != storageSeal().ID(k1) || s2.Secrets != s1.Secrets {
		t.Fatal("node2 opened other secrets")
	}
	if fi, err := os.Stat(filepath.Join(envs[1].Dir, seal.File)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("fetched key file: %v %v", fi, err)
	}
	// With no member holding it, the node says to restore the key file.
	e3 := *envs[1]
	e3.Dir, e3.Peers = t.TempDir(), drivertest.Peers(func(node, path string) (any, error) { return sealKeyReply{}, nil })
	st, _ = readState(t.Context(), e3.DB)
	if _, err := New().secrets(t.Context(), &e3, &st); err == nil || !strings.Contains(err.Error(), "which no member holds any more: restore "+filepath.Join(e3.Dir, seal.File)) {
		t.Fatalf("a key nobody holds: %v", err)
	}
}

// Two storage nodes sealing an older version's clear secrets at once: one
// key is recorded, the other node drops its own and fetches that one.
func TestStorageSealKeyRace(t *testing.T) {
	envs := clusterOf(t, node("node1", 1, roles.Storage), node("node2", 2, roles.Storage))
	err := envs[0].DB.Transaction(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		for k, v := range map[string]string{keyFSID: "fsid-1", keyMonKey: "AQmon", keyAdminKey: "AQadmin"} {
			if _, err := tx.ExecContext(ctx, `INSERT INTO storage_config (key, value) VALUES (?, ?)`, k, v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := New().acquireKey(t.Context(), envs[1], "") // node2 makes a key, records nothing yet
	if err != nil {
		t.Fatal(err)
	}
	_, k1 := converged(t, envs[0]) // node1 records first
	if err := recordKey(t.Context(), envs[1], k2, false); err == nil || !strings.Contains(err.Error(), "recorded the storage seal key "+storageSeal().ID(k1)+" first") {
		t.Fatalf("the second key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(envs[1].Dir, seal.File)); err == nil {
		t.Fatal("the losing key was kept")
	}
	envs[1].Peers = serve(t, "node2", envs[0])
	if st, k := converged(t, envs[1]); storageSeal().ID(k) != storageSeal().ID(k1) || st.Secrets.AdminKey != "AQadmin" {
		t.Fatal("node2 did not take the recorded key")
	}
}

// A Ceph user's key is handed, opened, only to a node of the role it is
// for, only over the cluster API, and only by a node holding the storage
// seal key; the compute role fetches it through cephclient.FetchKey.
func TestClientKey(t *testing.T) {
	envs := clusterOf(t, node("node1", 1, roles.Storage), node("node2", 2, roles.Compute), node("node3", 3, roles.Storage), node("node4", 4, roles.Control))
	_, k := converged(t, envs[0])
	lxdKey, _ := NewKey(time.Now())
	sealed, _ := k.Seal(cephclient.SealRow(cephclient.LXD), lxdKey)
	putClient(t, envs[0], sealed)
	d := New()
	ask := func(env *driver.Env, req driver.Request) (any, error) {
		req.Vars = map[string]string{"name": cephclient.LXD}
		return d.handleClientKey(t.Context(), env, req)
	}
	for _, tc := range []struct {
		name string
		req  driver.Request
		code int
		why  string
	}{
		{"local socket", driver.Request{Local: true}, http.StatusForbidden, "over the cluster API"},
		{"no member's certificate", driver.Request{}, http.StatusForbidden, "over the cluster API"},
		{"a storage node", driver.Request{Caller: "node3"}, http.StatusForbidden, "handed only to compute nodes, and node3 is not one"},
		{"a control node", driver.Request{Caller: "node4"}, http.StatusForbidden, "node4 is not one"},
		{"not a member", driver.Request{Caller: "node9"}, http.StatusForbidden, "node9 is not one"},
	} {
		if out, err := ask(envs[0], tc.req); driver.StatusCode(err) != tc.code || !strings.Contains(fmt.Sprint(err), tc.why) {
			t.Errorf("%s: want %d (%s), got %v (%v)", tc.name, tc.code, tc.why, err, out)
		}
	}
	out, err := ask(envs[0], driver.Request{Caller: "node2"})
	if r, ok := out.(cephclient.KeyReply); err != nil || !ok || r.Key != lxdKey || r.Name != cephclient.LXD {
		t.Fatalf("the compute node: %v %v", out, err)
	}
	if _, err := d.handleClientKey(t.Context(), envs[0], driver.Request{Caller: "node2", Vars: map[string]string{"name": "admin"}}); driver.StatusCode(err) != http.StatusNotFound {
		t.Fatalf("another user's key: %v", err)
	}
	// node3 has not fetched the storage seal key: it says so, and the
	// compute node's fetch goes on to node1.
	if _, err := ask(envs[2], driver.Request{Caller: "node2"}); driver.StatusCode(err) != http.StatusServiceUnavailable {
		t.Fatalf("a storage node without the key: %v", err)
	}
	envs[1].Peers = serve(t, "node2", envs[2], envs[0])
	if got, err := cephclient.FetchKey(t.Context(), envs[1], cephclient.LXD); err != nil || got != lxdKey {
		t.Fatalf("FetchKey: %v", err)
	}
	// A node that is not a compute node fetches nothing.
	envs[3].Peers = serve(t, "node4", envs[0])
	if _, err := cephclient.FetchKey(t.Context(), envs[3], cephclient.LXD); err == nil || !strings.Contains(err.Error(), "node4 is not one") {
		t.Fatalf("FetchKey from a control node: %v", err)
	}
	// A key put in the clear after sealing is refused, not handed out.
	putClient(t, envs[0], lxdKey)
	// (A storage node's next round writes it again, sealed: the caller is
	// told to come back, and the log says why.)
	if _, err := ask(envs[0], driver.Request{Caller: "node2"}); driver.StatusCode(err) != http.StatusServiceUnavailable || !strings.Contains(err.Error(), "a storage node writes it again") || strings.Contains(err.Error(), lxdKey) {
		t.Fatalf("a clear key once sealed: %v", err)
	}
}

// A node that holds no storage seal key cannot reach Ceph: its status asks
// a node that runs Ceph, and a guard or a disk removal there says where to
// run it.
func TestWithoutKey(t *testing.T) {
	envs := clusterOf(t, node("node1", 1, roles.Storage), node("node2", 2, roles.Compute))
	_, key := converged(t, envs[0])
	now := time.Now()
	if err := recordMonitor(t.Context(), envs[0].DB, "node1", "10.0.0.1", now); err != nil {
		t.Fatal(err)
	}
	if err := recordOSD(t.Context(), envs[0].DB, osdRow{ID: 0, Node: "node1", Path: "loop:4GiB", UUID: "u", FileBacked: true, State: osdReady}, now); err != nil {
		t.Fatal(err)
	}
	d := New()
	want := api.Layer{Name: Name, Title: "Storage (Ceph)", Built: true, Health: api.HealthOK, HA: api.HANo, Reason: "from node1"}
	envs[1].Peers = drivertest.Peers(func(node, path string) (any, error) {
		if node != "node1" || path != layerPath {
			return nil, fmt.Errorf("unexpected %s %s", node, path)
		}
		return want, nil
	})
	if got := d.Status(t.Context(), envs[1]); got.Reason != "from node1" || got.Health != api.HealthOK {
		t.Fatalf("status without the key: %+v", got)
	}
	envs[1].Peers = drivertest.Peers(func(node, path string) (any, error) { return nil, fmt.Errorf("connection refused") })
	if got := d.Status(t.Context(), envs[1]); got.Health != api.HealthError || !strings.Contains(got.Reason, "node1: connection refused") {
		t.Fatalf("status without the key, nobody answering: %+v", got)
	}
	if _, err := d.handleLayer(t.Context(), envs[1], driver.Request{Caller: "node1"}); driver.StatusCode(err) != http.StatusServiceUnavailable {
		t.Fatalf("the layer asked of a node without the key: %v", err)
	}
	if _, err := d.handleLayer(t.Context(), envs[0], driver.Request{Local: true}); driver.StatusCode(err) != http.StatusForbidden {
		t.Fatalf("the layer asked on the local socket: %v", err)
	}
	// The guard without the key asks a node that runs Ceph; nobody
	// answering is a refusal that --force overrides.
	err := d.Guard(t.Context(), envs[1], driver.Change{Kind: driver.RemoveNode, Node: "node1"})
	if err == nil || !strings.Contains(err.Error(), "try again when node1 answers, or use --force") {
		t.Fatalf("guard without the key, nobody answering: %v", err)
	}
	// node1's refusal is the refusal, word for word; its yes is the yes.
	refusal := "removing node1 would leave pool(s) volumes below their size: only 1 host(s) with OSDs would remain; add a storage node first or use --force to lower the size to 1"
	var posted []driver.Change
	post := func(node, path string, in any) error {
		if node != "node1" || path != guardPath {
			return fmt.Errorf("unexpected POST %s %s", node, path)
		}
		posted = append(posted, in.(driver.Change))
		if in.(driver.Change).Force {
			return nil
		}
		return driver.Errorf(http.StatusConflict, "%s", refusal)
	}
	// A node that holds another key is not asked to guard.
	envs[1].Peers = postPeers{post: post, holder: sealHolder{Holder: "node1", ID: "another"}}
	ch := driver.Change{Kind: driver.RemoveNode, Node: "node1"}
	if err := d.Guard(t.Context(), envs[1], ch); err == nil || !strings.Contains(err.Error(), "node1: does not hold the storage seal key") || len(posted) != 0 {
		t.Fatalf("guard forwarded to a node holding another key: %v (posted %v)", err, posted)
	}
	envs[1].Peers = postPeers{post: post, holder: sealHolder{Holder: "node1", ID: storageSeal().ID(key)}}
	if err := d.Guard(t.Context(), envs[1], ch); err == nil || err.Error() != refusal {
		t.Fatalf("guard forwarded to node1: %v", err)
	}
	ch.Force = true
	if err := d.Guard(t.Context(), envs[1], ch); err != nil {
		t.Fatalf("forced guard forwarded to node1: %v", err)
	}
	if len(posted) != 2 || posted[0].Node != "node1" || posted[0].Kind != driver.RemoveNode || !posted[1].Force {
		t.Fatalf("posted %+v", posted)
	}
	// What node1 answers a member that asks it to guard a change, short of
	// asking Ceph (no Ceph runs here).
	body := func(c any) *strings.Reader { b, _ := json.Marshal(c); return strings.NewReader(string(b)) }
	for _, tc := range []struct {
		env  *driver.Env
		req  driver.Request
		code int
	}{
		{envs[0], driver.Request{Local: true, Body: body(driver.Change{Kind: driver.RemoveNode, Node: "node1"})}, http.StatusForbidden},
		{envs[0], driver.Request{Caller: "node2", Body: strings.NewReader("{")}, http.StatusBadRequest},
		{envs[0], driver.Request{Caller: "node2", Body: body(driver.Change{Kind: "wipe", Node: "node1"})}, http.StatusBadRequest},
		{envs[0], driver.Request{Caller: "node2", Body: body(driver.Change{Kind: driver.RemoveNode, Node: "node9"})}, http.StatusBadRequest},
		{envs[0], driver.Request{Caller: "node2", Body: body(driver.Change{Kind: driver.RemoveRole, Node: "node1", Role: roles.Compute})}, http.StatusOK},
		{envs[0], driver.Request{Caller: "node2", Body: body(driver.Change{Kind: driver.RemoveNode, Node: "node2"})}, http.StatusOK},
		{envs[1], driver.Request{Caller: "node1", Body: body(driver.Change{Kind: driver.RemoveNode, Node: "node1"})}, http.StatusServiceUnavailable},
	} {
		_, err := d.handleGuard(t.Context(), tc.env, tc.req)
		if code := driver.StatusCode(err); (err == nil && tc.code != http.StatusOK) || (err != nil && code != tc.code) {
			t.Errorf("handleGuard on %s, %+v: %v (status %d), want %d", tc.env.Local.Name, tc.req, err, code, tc.code)
		}
	}
	_, err = d.removeDisk(t.Context(), envs[1], driver.Request{Local: true, Query: map[string][]string{"node": {"node1"}, "path": {"loop:4GiB"}}})
	if driver.StatusCode(err) != http.StatusConflict || !strings.Contains(err.Error(), "run this on node1") {
		t.Fatalf("disk removal without the key: %v", err)
	}
}

// A node that stops running Ceph keeps its copy of the key until another
// node that runs Ceph confirms it holds the recorded key, and serves it
// meanwhile; then it deletes it and its admin keyring (and nothing else).
func TestLeftDeletesStorageSealKey(t *testing.T) {
	envs := clusterOf(t, node("node1", 1, roles.Storage), node("node2", 2, roles.Storage))
	e1, e2 := envs[0], envs[1]
	_, k := converged(t, e1)
	l := layout{dir: e1.Dir}
	if _, err := writeFile(l.adminKeyring(), []byte("[client.admin]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(e1.Dir, "keep")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// node1 leaves the storage role.
	n1 := node("node1", 1, roles.Compute)
	for _, e := range envs {
		e.Nodes = []driver.Node{n1, e2.Local}
	}
	e1.Local = n1
	d1 := New()
	e1.Peers = serve(t, "node1", e2)
	if err := d1.Left(t.Context(), e1); err == nil || !strings.Contains(err.Error(), "no node that runs Ceph confirms it holds the key yet") {
		t.Fatalf("Left before node2 holds the key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e1.Dir, seal.File)); err != nil {
		t.Fatalf("the only copy was deleted: %v", err)
	}
	// node2 fetches the key from node1, which runs no Ceph any more.
	e2.Peers = serve(t, "node2", e1)
	if _, k2 := converged(t, e2); storageSeal().ID(k2) != storageSeal().ID(k) {
		t.Fatal("node2 did not fetch the key from the former storage node")
	}
	for i := 0; i < 2; i++ {
		if err := d1.Left(t.Context(), e1); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{filepath.Join(e1.Dir, seal.File), l.adminKeyring()} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s is still there once node2 holds the key", p)
		}
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("Left removed another file: %v", err)
	}
}

// A node that stops running Ceph keeps its daemons' directories while the
// cluster still records its monitor or an OSD of it, and deletes them, with
// their keyrings and a file-backed OSD's data, once both are forgotten; it
// keeps what holds no key (ceph.conf, logs). Left holds no seal key here.
func TestLeftForgetsDaemonsOnceCephDoes(t *testing.T) {
	envs := clusterOf(t, node("node1", 1, roles.Storage), node("node2", 2, roles.Storage))
	e1 := envs[0]
	l := layout{dir: e1.Dir}
	files := []string{
		filepath.Join(l.monData("node1"), "keyring"),
		filepath.Join(l.mgrData("node1"), "keyring"),
		filepath.Join(l.osdData(7), "keyring"),
		filepath.Join(l.osdData(7), "block"),
		l.adminKeyring(),
	}
	for _, f := range append([]string{l.conf(), filepath.Join(l.logs(), "ceph-mon.node1.log")}, files...) {
		if _, err := writeFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := t.Context()
	if err := recordMonitor(ctx, e1.DB, "node1", "10.0.0.1", e1.Now()); err != nil {
		t.Fatal(err)
	}
	if err := recordOSD(ctx, e1.DB, osdRow{ID: 7, Node: "node1", Path: "loop:4GiB", State: osdDraining}, e1.Now()); err != nil {
		t.Fatal(err)
	}
	// node1 leaves the storage role.
	n1 := node("node1", 1, roles.Compute)
	e1.Nodes = []driver.Node{n1, envs[1].Local}
	e1.Local = n1
	d1 := New()
	left := func(want bool) {
		t.Helper()
		if err := d1.Left(ctx, e1); err != nil {
			t.Fatal(err)
		}
		for _, f := range files[:4] {
			if _, err := os.Stat(f); (err == nil) != want {
				t.Fatalf("%s exists: %v, want %v", f, err == nil, want)
			}
		}
	}
	left(true)
	if err := deleteMonitor(ctx, e1.DB, "node1"); err != nil {
		t.Fatal(err)
	}
	left(true) // its OSD is still recorded
	if err := deleteOSD(ctx, e1.DB, 7); err != nil {
		t.Fatal(err)
	}
	left(false)
	left(false)
	if _, err := os.Stat(l.adminKeyring()); err == nil {
		t.Fatal("the admin keyring is still there")
	}
	for _, f := range []string{l.conf(), filepath.Join(l.logs(), "ceph-mon.node1.log")} {
		if _, err := os.Stat(f); err != nil {
			t.Fatalf("Left removed %s, which holds no key: %v", f, err)
		}
	}
}
