package control

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/driver/drivertest"
	"github.com/cloudctl/cloudctl/roles/seal"
)

func TestSealOpen(t *testing.T) {
	k, err := seal.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := seal.NewKey()
	s, err := k.Seal(keyAdminPassword, "hunter2")
	if err != nil {
		t.Fatal(err)
	}
	if !seal.IsSealed(s) || strings.Contains(s, "hunter2") {
		t.Fatalf("sealed value %q", s)
	}
	if got, err := controlSeal().Open(k, keyAdminPassword, s, false); err != nil || got != "hunter2" {
		t.Fatalf("open: %q, %v", got, err)
	}
	if _, err := controlSeal().Open(k, credentialRow("identity"), s, false); err == nil {
		t.Fatal("a value sealed for one row opened as another")
	}
	if _, err := controlSeal().Open(other, keyAdminPassword, s, false); err == nil {
		t.Fatal("a value opened with another key")
	}
	raw := []byte(s)
	raw[len(raw)-3] ^= 1
	if _, err := controlSeal().Open(k, keyAdminPassword, string(raw), false); err == nil {
		t.Fatal("a tampered value opened")
	}
	var none *sealKey
	if _, err := controlSeal().Open(none, keyAdminPassword, s, true); err == nil {
		t.Fatal("a sealed value opened without a key")
	}
	if got, err := controlSeal().Open(none, keyAdminPassword, "clear", true); err != nil || got != "clear" {
		t.Fatalf("a value stored in the clear by an older version: %q, %v", got, err)
	}
	if _, err := controlSeal().Open(k, keyAdminPassword, "clear", false); err == nil {
		t.Fatal("a value in the clear was taken although a key is recorded")
	}
	s2, _ := k.Seal(keyAdminPassword, "hunter2")
	if s2 == s {
		t.Fatal("two seals of one value are equal (nonce reused)")
	}
}

// convergeSecrets is the secrets part of Converge: read, get the key, open, record.
func convergeSecrets(t *testing.T, env *driver.Env) (ClusterView, *sealKey) {
	t.Helper()
	v, err := readView(t.Context(), env)
	if err != nil {
		t.Fatal(err)
	}
	k, err := New().secrets(t.Context(), env, &v)
	if err != nil {
		t.Fatal(err)
	}
	if err := ensureState(t.Context(), env, &v, k); err != nil {
		t.Fatal(err)
	}
	return v, k
}

// The database holds every secret sealed: no row and no byte of the
// database file holds a password or the CA key in the clear.
func TestSecretsSealedAtRest(t *testing.T) {
	env, db := testEnv(t)
	v, k := convergeSecrets(t, env)
	if v.AdminPassword == "" || v.CA.KeyPEM == "" || v.Credentials["identity"].Password == "" {
		t.Fatalf("secrets not opened: %+v", v)
	}
	fi, err := os.Stat(filepath.Join(env.Dir, seal.File))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seal key file: %v %v", fi, err)
	}
	rv, _ := readView(t.Context(), env)
	if rv.SealID != controlSeal().ID(k) {
		t.Fatalf("recorded key %q, want %q", rv.SealID, controlSeal().ID(k))
	}
	if rv.sealed.clear() {
		t.Fatalf("a secret is stored in the clear: %+v", rv.sealed)
	}
	var file string
	err = db.Transaction(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `PRAGMA database_list`).Scan(new(int), new(string), &file)
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(seal.Prefix)) {
		t.Fatal("the database file holds no sealed value: this check would see nothing")
	}
	secrets := map[string]string{"admin password": v.AdminPassword, "CA key": strings.Split(v.CA.KeyPEM, "\n")[1]}
	for svc, c := range v.Credentials {
		secrets["password of "+svc] = c.Password
	}
	for what, s := range secrets {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("the database file holds the %s in the clear", what)
		}
	}
}

// Secrets an older version stored in the clear are sealed in place, and
// keep their values.
func TestClearSecretsSealed(t *testing.T) {
	env, db := testEnv(t)
	ca, err := NewCA(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	enc, _ := ca.encode()
	err = db.Transaction(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		for _, q := range [][]any{
			{`INSERT INTO control_config (key, value) VALUES (?, ?)`, keyAdminPassword, "oldadmin"},
			{`INSERT INTO control_config (key, value) VALUES (?, ?)`, keyCA, enc},
			{`INSERT INTO control_credentials (service, username, password, created_at) VALUES (?, ?, ?, ?)`, "identity", "identity", "oldpw", time.Now()},
		} {
			if _, err := tx.ExecContext(ctx, q[0].(string), q[1:]...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v, k := convergeSecrets(t, env)
	if v.AdminPassword != "oldadmin" || v.Credentials["identity"].Password != "oldpw" || v.CA.KeyPEM != ca.KeyPEM {
		t.Fatalf("values changed: admin %q identity %q", v.AdminPassword, v.Credentials["identity"].Password)
	}
	rv, _ := readView(t.Context(), env)
	if rv.sealed.clear() || rv.SealID != controlSeal().ID(k) {
		t.Fatalf("still in the clear: %+v (key %q)", rv.sealed, rv.SealID)
	}
}

// peerKeys is the cluster API of other control nodes, for acquireKey.
type peerKeys map[string]func() (any, error)

func (p peerKeys) Get(ctx context.Context, node, path string, out any) error {
	if path != SealKeyPath {
		return fmt.Errorf("unexpected path %s", path)
	}
	h, ok := p[node]
	if !ok {
		return errors.New("connection refused")
	}
	r, err := h()
	if err != nil {
		return err
	}
	b, _ := json.Marshal(r)
	return json.Unmarshal(b, out)
}

func (p peerKeys) Post(ctx context.Context, node, path string, in, out any) error {
	return fmt.Errorf("no POST %s on %s in this test", path, node)
}

// twoControl makes node2 join env's cluster as a control node, with a
// directory of its own; node1 stays env's local node.
func twoControl(t *testing.T, env *driver.Env) *driver.Env {
	n2 := driver.Node{Name: "node2", IP: "10.0.0.2", Roles: []roles.Role{roles.Control}, JoinedAt: time.Unix(2, 0)}
	env.Nodes = append(env.Nodes, n2)
	e2 := *env
	e2.Local, e2.Dir = n2, t.TempDir()
	return &e2
}

// A control node without the key fetches it from another control node,
// checks it against the recorded id, and keeps it 0600.
func TestAcquireKeyFetch(t *testing.T) {
	env, _ := testEnv(t)
	v1, k1 := convergeSecrets(t, env)
	e2 := twoControl(t, env)
	d1 := New()
	wrong, _ := seal.NewKey()
	e2.Peers = peerKeys{"node1": func() (any, error) { return sealKeyReply{ID: controlSeal().ID(wrong), Key: wrong[:]}, nil }}
	v2, _ := readView(t.Context(), e2)
	if _, err := New().secrets(t.Context(), e2, &v2); err == nil || !strings.Contains(err.Error(), "not the recorded") {
		t.Fatalf("a wrong key from a peer: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e2.Dir, seal.File)); err == nil {
		t.Fatal("a wrong key was kept")
	}
	e2.Peers = peerKeys{"node1": func() (any, error) {
		return d1.handleSealKey(t.Context(), env, driver.Request{Caller: "node2"})
	}}
	v2, k2 := convergeSecrets(t, e2)
	if controlSeal().ID(k2) != controlSeal().ID(k1) || v2.AdminPassword != v1.AdminPassword || v2.Credentials["image"].Password != v1.Credentials["image"].Password {
		t.Fatalf("node2 opened other secrets: key %s vs %s", controlSeal().ID(k2), controlSeal().ID(k1))
	}
	fi, err := os.Stat(filepath.Join(e2.Dir, seal.File))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("fetched key file: %v %v", fi, err)
	}
	// A stale key of its own (another cluster's) is replaced too.
	if err := controlSeal().Write(e2.Dir, wrong); err != nil {
		t.Fatal(err)
	}
	if _, k := convergeSecrets(t, e2); controlSeal().ID(k) != controlSeal().ID(k1) {
		t.Fatal("a stale key was used")
	}
}

// Only a member holding the control role gets the key, and only over the
// cluster API.
func TestSealKeyHandler(t *testing.T) {
	env, _ := testEnv(t)
	_, k := convergeSecrets(t, env)
	n3 := driver.Node{Name: "node3", IP: "10.0.0.3", Roles: []roles.Role{roles.Compute, roles.Storage}}
	env.Nodes = append(env.Nodes, n3)
	twoControl(t, env)
	d := New()
	for _, tc := range []struct {
		name string
		req  driver.Request
		code int
	}{
		{"local socket", driver.Request{Local: true}, http.StatusForbidden},
		{"no member's certificate", driver.Request{}, http.StatusForbidden},
		{"a compute and storage node", driver.Request{Caller: "node3"}, http.StatusForbidden},
		{"not a member", driver.Request{Caller: "node9"}, http.StatusForbidden},
		{"a control node", driver.Request{Caller: "node2"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := d.handleSealKey(t.Context(), env, tc.req)
			if tc.code != 0 {
				if err == nil || driver.StatusCode(err) != tc.code {
					t.Fatalf("want %d, got %v (%v)", tc.code, err, out)
				}
				return
			}
			r, ok := out.(sealKeyReply)
			if err != nil || !ok || !bytes.Equal(r.Key, k[:]) || r.ID != controlSeal().ID(k) {
				t.Fatalf("a control node: %v %v", out, err)
			}
		})
	}
	// A node holding another key than the recorded one hands nothing out,
	// and says so (an empty key: a definite "not here").
	wrong, _ := seal.NewKey()
	if err := controlSeal().Write(env.Dir, wrong); err != nil {
		t.Fatal(err)
	}
	if out, err := d.handleSealKey(t.Context(), env, driver.Request{Caller: "node2"}); err != nil || len(out.(sealKeyReply).Key) != 0 {
		t.Fatalf("a node with a stale key: %v %v", out, err)
	}
}

// Two control nodes making the first key at once: one is recorded, the
// other drops its own and fetches that one.
func TestSealKeyRace(t *testing.T) {
	env, _ := testEnv(t)
	e2 := twoControl(t, env)
	v2, err := readView(t.Context(), e2)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := New().secrets(t.Context(), e2, &v2) // node2 makes a key, records nothing yet
	if err != nil {
		t.Fatal(err)
	}
	_, k1 := convergeSecrets(t, env) // node1 records first
	if err := ensureState(t.Context(), e2, &v2, k2); err == nil || !strings.Contains(err.Error(), "recorded the seal key "+controlSeal().ID(k1)+" first") {
		t.Fatalf("the second key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e2.Dir, seal.File)); err == nil {
		t.Fatal("the losing key was kept")
	}
	d1 := New()
	e2.Peers = peerKeys{"node1": func() (any, error) {
		return d1.handleSealKey(t.Context(), env, driver.Request{Caller: "node2"})
	}}
	if _, k := convergeSecrets(t, e2); controlSeal().ID(k) != controlSeal().ID(k1) {
		t.Fatal("node2 did not take the recorded key")
	}
}

// When every control node that held the key has left, the secrets cannot
// be opened again: a new control node makes them anew instead of waiting.
func TestSealKeyGone(t *testing.T) {
	env, _ := testEnv(t)
	v1, k1 := convergeSecrets(t, env)
	// node1 is gone; node2 is the only control member and has no key.
	n2 := driver.Node{Name: "node2", IP: "10.0.0.2", Roles: []roles.Role{roles.Control}, JoinedAt: time.Unix(2, 0)}
	e2 := *env
	e2.Local, e2.Nodes, e2.Dir = n2, []driver.Node{n2}, t.TempDir()
	e2.Peers = peerKeys{}
	v2, k2 := convergeSecrets(t, &e2)
	if controlSeal().ID(k2) == controlSeal().ID(k1) || v2.AdminPassword == "" || v2.AdminPassword == v1.AdminPassword || v2.SealID != "" && v2.SealID != controlSeal().ID(k2) {
		t.Fatalf("secrets not made anew: key %s (was %s)", controlSeal().ID(k2), controlSeal().ID(k1))
	}
	rv, _ := readView(t.Context(), &e2)
	if rv.SealID != controlSeal().ID(k2) {
		t.Fatalf("recorded key %s, want %s", rv.SealID, controlSeal().ID(k2))
	}
	// With another control member that is only unreachable, it waits.
	e3 := *env
	n3 := driver.Node{Name: "node3", IP: "10.0.0.3", Roles: []roles.Role{roles.Control}, JoinedAt: time.Unix(3, 0)}
	e3.Local, e3.Nodes, e3.Dir, e3.Peers = n3, []driver.Node{n2, n3}, t.TempDir(), peerKeys{}
	v3, _ := readView(t.Context(), &e3)
	if _, err := New().secrets(t.Context(), &e3, &v3); err == nil || !strings.Contains(err.Error(), "node2: connection refused") {
		t.Fatalf("an unreachable holder: %v", err)
	}
	if rv, _ := readView(t.Context(), &e3); rv.SealID != controlSeal().ID(k2) {
		t.Fatal("secrets were forgotten while a holder is a member")
	}
}

// The credentials are answered only where the key is: a node without the
// control role names the control nodes.
func TestCredentialsOnlyWithKey(t *testing.T) {
	env, _ := testEnv(t)
	convergeSecrets(t, env)
	n3 := driver.Node{Name: "node3", IP: "10.0.0.3", Roles: []roles.Role{roles.Compute}}
	env.Nodes = append(env.Nodes, n3)
	e3 := *env
	e3.Local, e3.Dir = n3, t.TempDir()
	v, err := readView(t.Context(), &e3)
	if err != nil {
		t.Fatal(err)
	}
	err = openHere(&e3, &v)
	if driver.StatusCode(err) != http.StatusConflict || !strings.Contains(err.Error(), "run this on node1") {
		t.Fatalf("credentials on a compute node: %v", err)
	}
	if v.AdminPassword != "" {
		t.Fatal("opened without the key")
	}
	v, _ = readView(t.Context(), env)
	if err := openHere(env, &v); err != nil || v.Credentials["identity"].Password == "" {
		t.Fatalf("credentials on the control node: %v", err)
	}
}

// clear reports whether a secret is stored in the clear.
func (s sealedValues) clear() bool {
	if (s.admin != "" && !seal.IsSealed(s.admin)) || (s.ca != "" && !seal.IsSealed(s.ca)) {
		return true
	}
	for _, c := range s.creds {
		if c != "" && !seal.IsSealed(c) {
			return true
		}
	}
	return false
}

// Once a key is recorded, a secret written in the clear (by anything that
// can write the cluster database) is refused, not taken and sealed.
func TestClearSecretRefusedOnceSealed(t *testing.T) {
	env, db := testEnv(t)
	convergeSecrets(t, env)
	err := db.Transaction(t.Context(), func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE control_credentials SET password = 'chosen' WHERE service = 'identity'`)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := readView(t.Context(), env)
	if _, err := New().secrets(t.Context(), env, &v); err == nil || !strings.Contains(err.Error(), "stored in the clear although the secrets are sealed") {
		t.Fatalf("a forged clear password: %v", err)
	}
	if v.Credentials["identity"].Password == "chosen" {
		t.Fatal("the forged password was taken")
	}
}

// A lone control node whose key is gone but which holds control databases
// refuses to make new secrets (its databases need the old ones), and says
// to restore the key; forgetting checks the key it forgets is still the
// recorded one.
func TestSealKeyGoneWithData(t *testing.T) {
	env, _ := testEnv(t)
	_, k := convergeSecrets(t, env)
	if err := os.Remove(filepath.Join(env.Dir, seal.File)); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(env.Dir, "mysql", "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	env.Peers = peerKeys{}
	v, _ := readView(t.Context(), env)
	if _, err := New().secrets(t.Context(), env, &v); err == nil || !strings.Contains(err.Error(), "restore "+filepath.Join(env.Dir, seal.File)) {
		t.Fatalf("a lone node with databases and no key: %v", err)
	}
	if rv, _ := readView(t.Context(), env); rv.SealID != controlSeal().ID(k) || rv.sealed.admin == "" {
		t.Fatal("the secrets were forgotten although this node's databases need them")
	}
	if err := forgetSecrets(t.Context(), env, "another-id"); err != nil {
		t.Fatal(err)
	}
	if rv, _ := readView(t.Context(), env); rv.SealID != controlSeal().ID(k) || len(rv.sealed.creds) == 0 {
		t.Fatal("forgetSecrets deleted the secrets of another key")
	}
}

// A node that left the control role keeps its copy of the key until a
// control node confirms it holds the recorded key, and serves it to a new
// control node meanwhile; then it deletes it (and nothing else).
func TestLeftDeletesSealKey(t *testing.T) {
	env, _ := testEnv(t)
	_, k := convergeSecrets(t, env)
	// node1 leaves the control role; node2 takes it.
	env.Local.Roles = []roles.Role{roles.Compute}
	env.Nodes[0] = env.Local
	e2 := twoControl(t, env)
	d1, d2 := New(), New()
	other := filepath.Join(env.Dir, "keep")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	env.Peers = drivertest.Peers(func(node, path string) (any, error) {
		if node != "node2" || path != "control/local" {
			return nil, fmt.Errorf("unexpected %s %s", node, path)
		}
		return d2.handleLocal(t.Context(), e2, driver.Request{})
	})
	if err := d1.Left(t.Context(), env); err == nil || !strings.Contains(err.Error(), "no control node confirms") {
		t.Fatalf("Left before node2 holds the key: %v", err)
	}
	if _, err := os.Stat(filepath.Join(env.Dir, seal.File)); err != nil {
		t.Fatalf("the only copy was deleted: %v", err)
	}
	// node2 fetches the key from node1, which is no control node any more.
	e2.Peers = drivertest.Peers(func(node, path string) (any, error) {
		if node != "node1" || path != SealKeyPath {
			return nil, fmt.Errorf("unexpected %s %s", node, path)
		}
		return d1.handleSealKey(t.Context(), env, driver.Request{Caller: "node2"})
	})
	v2, err := readView(t.Context(), e2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d2.Converge(t.Context(), e2, func(driver.Step) {}); err == nil {
		t.Log("node2 converged") // it may fail later (no MariaDB here); the key is what counts
	}
	if got, err := controlSeal().Load(e2.Dir); err != nil || got == nil || controlSeal().ID(got) != controlSeal().ID(k) || v2.SealID != controlSeal().ID(k) {
		t.Fatalf("node2 did not fetch the key from the former control node: %v %v", got, err)
	}
	for i := 0; i < 2; i++ {
		if err := d1.Left(t.Context(), env); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(env.Dir, seal.File)); err == nil {
		t.Fatal("the seal key is still there once node2 holds it")
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("Left removed another file: %v", err)
	}
}
