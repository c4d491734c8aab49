package compute

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/roles/cephclient"
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
