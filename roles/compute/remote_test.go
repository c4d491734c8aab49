package compute

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lxdapi "github.com/canonical/lxd/shared/api"
	_ "github.com/mattn/go-sqlite3"

	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/cephclient"
	"github.com/cloudctl/cloudctl/roles/driver"
	"github.com/cloudctl/cloudctl/roles/driver/drivertest"
)

func TestDecideRemote(t *testing.T) {
	tests := []struct {
		name                   string
		storage                int
		found                  bool
		local, creator, status string
		configured             bool
		want                   RemoteAction
	}{
		{"no storage role", 0, false, "node1", "node1", "", false, RemoteNone},
		{"storage, user not yet recorded", 1, false, "node1", "node1", "", false, RemoteWaitUser},
		{"creator, pool missing", 1, true, "node1", "node1", "", false, RemoteCreate},
		{"creator, pool pending per member", 1, true, "node1", "node1", "Pending", false, RemoteCreate},
		{"creator, creation failed part way: retried without config", 1, true, "node1", "node1", "Errored", true, RemoteRetry},
		{"creator, pool created", 1, true, "node1", "node1", "Created", true, RemoteFilesOnly},
		{"other member", 1, true, "node2", "node1", "", false, RemoteFilesOnly},
		{"no member online to create", 1, true, "node2", "", "", false, RemoteFilesOnly},
		{"user recorded, storage role gone", 0, true, "node1", "node1", "Created", true, RemoteFilesOnly},
	}
	for _, tt := range tests {
		if got := decideRemote(tt.storage, tt.found, tt.local, tt.creator, tt.status, tt.configured); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRemoteStatusSentences(t *testing.T) {
	rs := &RemoteState{Pool: "cloud-rbd", User: "client.lxd-remote", Status: "Created", Configured: true}
	if got := remoteDetail("node2", rs, false); got != "remote pool created (ceph, OSD pool cloud-rbd as client.lxd-remote); volumes need the rbd kernel module, absent on node2" {
		t.Fatalf("detail %q", got)
	}
	if got := remoteDetail("node2", rs, true); strings.Contains(got, "rbd kernel module") {
		t.Fatalf("rbd present, detail %q", got)
	}
	if got := remoteDetail("node2", &RemoteState{Pool: "p", User: "client.u"}, true); !strings.Contains(got, "not created yet") || !strings.Contains(got, "config not written") {
		t.Fatalf("pending detail %q", got)
	}
	if remoteDetail("node2", nil, false) != "" {
		t.Fatal("detail without a remote pool")
	}
	states := []PeerState{
		{Node: "node1", Running: true, RBD: true, Remote: rs},
		{Node: "node2", Running: true, Remote: rs},
		{Node: "node3", Running: true, Remote: rs},
		{Node: "node4"},
	}
	if got := rbdNote(states); got != "remote pool created; volumes need the rbd kernel module, absent on node2, node3" {
		t.Fatalf("note %q", got)
	}
	if got := rbdNote(states[:1]); got != "" {
		t.Fatalf("rbd present everywhere, note %q", got)
	}
	if got := rbdNote([]PeerState{{Node: "node1", Running: true}}); got != "" {
		t.Fatalf("no remote pool, note %q", got)
	}
}

func TestRemoteConfigAndJoin(t *testing.T) {
	cfg := remoteConfig(cephclient.Client{Name: cephclient.LXD, Pool: "cloud-rbd"})
	if cfg["ceph.user.name"] != "lxd-remote" || cfg["ceph.osd.pool_name"] != "cloud-rbd" || cfg["ceph.cluster_name"] != "ceph" {
		t.Fatalf("config %v", cfg)
	}
	if _, ok := cfg["source"]; ok {
		t.Fatal("source is member-specific in LXD: not in the cluster-wide config")
	}
	keys := []lxdapi.ClusterMemberConfigKey{
		{Entity: "storage-pool", Name: PoolName, Key: "source"},
		{Entity: "storage-pool", Name: RemotePoolName, Key: "source"},
	}
	got := memberConfig(keys, "/pool", "cloud-rbd")
	if got[0].Value != "/pool" || got[1].Value != "cloud-rbd" {
		t.Fatalf("member config %+v", got)
	}
}

func TestWriteCephFiles(t *testing.T) {
	p := pathsIn(filepath.Join(t.TempDir(), "state", "compute"))
	c := cephclient.Client{Name: cephclient.LXD, Pool: "cloud-rbd", Key: "SECRET", FSID: "f", MonHost: "[v2:10.0.0.1:3300,v1:10.0.0.1:6789]"}
	for i := 0; i < 2; i++ {
		if err := writeCephFiles(p, c); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(p.cephKeyring)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keyring %v %v", fi, err)
	}
	di, err := os.Stat(p.cephDir)
	if err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("dir %v %v", di, err)
	}
	conf, _ := os.ReadFile(p.cephConf)
	if strings.Contains(string(conf), "SECRET") || !strings.Contains(string(conf), "keyring = "+p.cephKeyring) {
		t.Fatalf("conf:\n%s", conf)
	}
}

// A node that left the compute role (no LXD database left) deletes the
// Ceph user's keyring and client conf; one still leaving (its LXD database
// there) keeps them, and so does every later call (idempotent).
func TestLeftDeletesCephKeyring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "compute")
	p := pathsIn(dir)
	c := cephclient.Client{Name: cephclient.LXD, Pool: "cloud-rbd", Key: "SECRET", FSID: "f", MonHost: "m"}
	if err := writeCephFiles(p, c); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(p.lxdDir, "database"), 0o700); err != nil {
		t.Fatal(err)
	}
	env := &driver.Env{Dir: dir, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	d := New()
	if err := d.Left(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.cephKeyring); err != nil {
		t.Fatalf("the keyring of a node still leaving LXD went: %v", err)
	}
	if err := os.RemoveAll(p.lxdDir); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := d.Left(t.Context(), env); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(p.cephDir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the Ceph files of a node that left: %v", err)
	}
}

// keyPeers answers cephclient.KeyPath as storage nodes would, counting calls.
type keyPeers struct {
	calls *int
	key   string
	err   error
}

func (p keyPeers) Get(ctx context.Context, node, path string, out any) error {
	*p.calls++
	if path != cephclient.KeyPath+"/"+cephclient.LXD {
		return fmt.Errorf("unexpected path %s", path)
	}
	if p.err != nil {
		return p.err
	}
	b, _ := json.Marshal(cephclient.KeyReply{Name: cephclient.LXD, Key: p.key})
	return json.Unmarshal(b, out)
}

func (p keyPeers) Post(ctx context.Context, node, path string, in, out any) error {
	return fmt.Errorf("no POST %s on %s in this test", path, node)
}

// The compute node writes the key a storage node hands over, never the
// stored (sealed) value; it asks again only when that value changes, and
// keeps the keyring it wrote when no storage node answers.
func TestCephUserFetchesTheKey(t *testing.T) {
	cdb := drivertest.NewDB(t)
	if err := cdb.Transaction(t.Context(), cephclient.Schema); err != nil {
		t.Fatal(err)
	}
	const plain = "AQAAAAAAAAAAABAABwcHBwcHBwcHBwcHBwcHBw=="
	rec := cephclient.Client{Name: cephclient.LXD, Purpose: "instances", Pool: "cloud-rbd", Key: "sealed1:first", FSID: "f", MonHost: "m", UpdatedAt: time.Now()}
	if err := cephclient.Put(t.Context(), cdb, rec); err != nil {
		t.Fatal(err)
	}
	calls := 0
	env := &driver.Env{
		Local: driver.Node{Name: "node2", Roles: []roles.Role{roles.Compute}},
		Nodes: []driver.Node{{Name: "node1", Roles: []roles.Role{roles.Storage}}, {Name: "node2", Roles: []roles.Role{roles.Compute}}},
		DB:    cdb, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	p := pathsIn(filepath.Join(t.TempDir(), "compute"))
	d := New()

	// No storage node answers and no keyring yet: the round fails.
	env.Peers = keyPeers{calls: &calls, err: errors.New("connection refused")}
	if _, _, err := d.cephUser(t.Context(), env, p); err == nil || !strings.Contains(err.Error(), "node1") {
		t.Fatalf("without a key: %v", err)
	}
	env.Peers = keyPeers{calls: &calls, key: plain}
	for i := 0; i < 2; i++ {
		c, found, err := d.cephUser(t.Context(), env, p)
		if err != nil || !found || c.Key != plain {
			t.Fatalf("cephUser: %v %v", found, err)
		}
	}
	if calls != 2 {
		t.Fatalf("%d calls to storage nodes, want 2 (one failed, one fetch, then the cached key)", calls)
	}
	kr, _ := os.ReadFile(p.cephKeyring)
	if !strings.Contains(string(kr), "key = "+plain) || strings.Contains(string(kr), "sealed1:") {
		t.Fatalf("keyring:\n%s", kr)
	}
	// The stored value changes: asked again; nobody answers: the keyring
	// written before stays.
	rec.Key = "sealed1:second"
	if err := cephclient.Put(t.Context(), cdb, rec); err != nil {
		t.Fatal(err)
	}
	env.Peers = keyPeers{calls: &calls, err: errors.New("connection refused")}
	if _, found, err := d.cephUser(t.Context(), env, p); err != nil || !found {
		t.Fatalf("with a keyring written before: %v %v", found, err)
	}
	if calls != 3 {
		t.Fatalf("not asked again after the stored key changed: %d calls", calls)
	}
	if kr2, _ := os.ReadFile(p.cephKeyring); !bytes.Equal(kr2, kr) {
		t.Fatal("the keyring changed without a key")
	}
	// A storage node answering something that is not a cephx key is refused.
	env.Peers = keyPeers{calls: &calls, key: "AQ==\n[client.admin]"}
	if _, _, err := d.cephUser(t.Context(), env, p); err != nil {
		t.Fatal(err)
	}
	if kr2, _ := os.ReadFile(p.cephKeyring); !bytes.Equal(kr2, kr) {
		t.Fatal("an invalid key was written")
	}
}
