package control

import (
	"strings"
	"testing"
	"time"

	"github.com/cloudctl/cloudctl/manifests"
)

func manifest(t *testing.T) *manifests.Manifest {
	t.Helper()
	m, err := manifests.Default()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLayout(t *testing.T) {
	m := manifest(t)
	single, err := Layout(Single, m, 16)
	if err != nil || len(single) != 1 || len(single[0].Services) != 8 || single[0].Port != 3306 || single[0].GaleraPort != 4567 || single[0].SSTPort != 4569 {
		t.Fatalf("single: %+v %v", single, err)
	}
	multi, err := Layout(Multi, m, 64)
	if err != nil || len(multi) != 8 {
		t.Fatalf("multi: %v", err)
	}
	ports := map[int]bool{}
	for i, in := range multi {
		for _, p := range []int{in.Port, in.GaleraPort, in.ISTPort, in.SSTPort} {
			if ports[p] {
				t.Fatalf("port %d used twice", p)
			}
			ports[p] = true
		}
		if in.Name != "mysql-"+m.ControlPlane.Services[i] || len(in.Services) != 1 {
			t.Fatalf("instance %d: %+v", i, in)
		}
		// 25 % of 64 GiB over 8 instances = 2 GiB each.
		if in.BufferPoolMiB != 2048 {
			t.Fatalf("buffer pool %d MiB", in.BufferPoolMiB)
		}
	}
	if _, err := Layout("double", m, 8); err == nil {
		t.Fatal("unknown topology accepted")
	}
	if sm := ServiceInstance(multi); sm["placement"].Name != "mysql-placement" {
		t.Fatalf("service map: %+v", sm)
	}
}

func view(nodes ...NodeView) ClusterView {
	return ClusterView{Topology: Single, Nodes: nodes, Formed: map[string]bool{}, Now: time.Now()}
}

func at(i int) time.Time { return time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC) }

func TestDecideStandaloneUntilThreeControlNodes(t *testing.T) {
	m := manifest(t)
	v := view(NodeView{Name: "a", IP: "10.0.0.1", Control: true, JoinedAt: at(1)}, NodeView{Name: "b", IP: "10.0.0.2", JoinedAt: at(2)},
		NodeView{Name: "c", IP: "10.0.0.3", Control: true, JoinedAt: at(3)})
	v.Manifest = m
	for node, host := range map[string]bool{"a": true, "b": false, "c": false} {
		des, err := Decide(v, node)
		if err != nil || des.Host != host || des.Peers != nil {
			t.Fatalf("%s: host %v peers %v err %v", node, des.Host, des.Peers, err)
		}
	}
	// A recorded database host keeps hosting even if an older node gains the control role.
	v.DBHost = "c"
	v.Nodes[1].Control = true
	v.Nodes[0].Control = false
	if des, _ := Decide(v, "c"); !des.Host {
		t.Fatal("recorded database host lost its instances")
	}
	if des, _ := Decide(v, "b"); des.Host {
		t.Fatal("a second control node hosts a second, unreplicated copy")
	}
}

func TestDecideGalera(t *testing.T) {
	m := manifest(t)
	v := view(NodeView{Name: "a", IP: "10.0.0.1", Control: true, JoinedAt: at(1)}, NodeView{Name: "b", IP: "10.0.0.2", Control: true, JoinedAt: at(2)},
		NodeView{Name: "c", IP: "10.0.0.3", Control: true, JoinedAt: at(3)}, NodeView{Name: "d", IP: "10.0.0.4", Control: true, JoinedAt: at(4)})
	v.Manifest, v.DBHost = m, "b"
	des, err := Decide(v, "a")
	if err != nil || !des.Host || len(des.Peers) != 3 || des.Seed != "b" {
		t.Fatalf("a: %+v %v", des, err)
	}
	// The database host comes first, then the oldest control nodes; the fourth stands by.
	if des.Peers[0].Name != "b" || des.Peers[1].Name != "a" || des.Peers[2].Name != "c" {
		t.Fatalf("peers: %+v", des.Peers)
	}
	// Galera accepts the members' addresses only: not the fourth node's.
	if strings.Join(des.GaleraAllow, ",") != "10.0.0.1,10.0.0.2,10.0.0.3" {
		t.Fatalf("allowlist: %v", des.GaleraAllow)
	}
	if d4, _ := Decide(v, "d"); d4.Host {
		t.Fatal("a fourth control node runs a Galera member")
	}
	// When a member leaves, the standby takes its place; recorded members stay.
	v.Members = []string{"b", "a", "c"}
	v.Formed["mysql"] = true
	v.Nodes = v.Nodes[1:] // a is gone
	if d4, _ := Decide(v, "d"); !d4.Host || len(d4.Peers) != 3 {
		t.Fatalf("standby did not step in: %+v", d4)
	} else if strings.Join(d4.GaleraAllow, ",") != "10.0.0.2,10.0.0.3,10.0.0.4" {
		t.Fatalf("the allowlist after a left and d stepped in: %v", d4.GaleraAllow)
	}
	// Only live peers make a Primary count.
	v.Live = map[string]map[string]string{"b": {"mysql": "Primary"}, "d": {"mysql": "Primary"}}
	if dc, _ := Decide(v, "c"); !dc.PrimaryElsewhere["mysql"] {
		t.Fatal("live Primary ignored")
	}
	v.Live = map[string]map[string]string{"b": {"mysql": "non-Primary"}}
	if dc, _ := Decide(v, "c"); dc.PrimaryElsewhere["mysql"] {
		t.Fatal("non-Primary counted")
	}
}

func TestDecideKeepsReplicatingWithTwoLeft(t *testing.T) {
	v := view(NodeView{Name: "a", IP: "10.0.0.1", Control: true, JoinedAt: at(1)}, NodeView{Name: "b", IP: "10.0.0.2", Control: true, JoinedAt: at(2)})
	v.Manifest, v.DBHost, v.Members = manifest(t), "a", []string{"a", "b", "c"}
	v.Formed["mysql"] = true
	des, _ := Decide(v, "b")
	if !des.Host || len(des.Peers) != 2 {
		t.Fatalf("after a removal the survivors must stay a Galera cluster: %+v", des)
	}
}

func TestRecoveryWinner(t *testing.T) {
	rs := []Position{{Node: "b", Seqno: 10}, {Node: "a", Seqno: 12}, {Node: "c", Seqno: 12}}
	if _, ok := RecoveryWinner(rs[:2], 3); ok {
		t.Fatal("decided before every member reported")
	}
	w, ok := RecoveryWinner(rs, 3)
	if !ok || w.Node != "a" {
		t.Fatalf("winner %+v (ties go to the first name)", w)
	}
	rs[0].Seqno = 99
	if w, _ := RecoveryWinner(rs, 3); w.Node != "b" {
		t.Fatalf("highest seqno must win: %+v", w)
	}
}

func TestRenderConfig(t *testing.T) {
	in := Instance{Name: "mysql", Port: 3306, GaleraPort: 4567, ISTPort: 4568, SSTPort: 4569, BufferPoolMiB: 512}
	p := instancePaths("/state/control", in)
	standalone := renderConfig(configInput{Inst: in, Paths: p, NodeName: "a", IP: "10.0.0.1", MaxConnections: 300})
	for _, want := range []string{"user=mysql", "port=3306", "bind-address=10.0.0.1", "innodb_buffer_pool_size=512M", "wsrep_on=OFF", "socket=/state/control/mysql/mysqld.sock"} {
		if !strings.Contains(standalone, want) {
			t.Errorf("standalone config lacks %q", want)
		}
	}
	g := renderConfig(configInput{Inst: in, Paths: p, NodeName: "a", IP: "10.0.0.1", Provider: "/usr/lib/galera/libgalera_smm.so",
		Peers: []Peer{{"a", "10.0.0.1"}, {"b", "10.0.0.2"}, {"c", "10.0.0.3"}}, MaxConnections: 300, Allow: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}})
	for _, want := range []string{"wsrep_on=ON", "wsrep_allowlist=10.0.0.1,10.0.0.2,10.0.0.3", "wsrep_cluster_address=gcomm://10.0.0.1:4567,10.0.0.2:4567,10.0.0.3:4567",
		"ist.recv_addr=10.0.0.1:4568", "wsrep_sst_receive_address=10.0.0.1:4569", "wsrep_sst_method=rsync", "wsrep_cluster_name=cloudctl-mysql"} {
		if !strings.Contains(g, want) {
			t.Errorf("galera config lacks %q", want)
		}
	}
	if strings.Contains(strings.ToLower(g), "password") {
		t.Error("a secret in the defaults-file")
	}
}

func TestGrastate(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/grastate.dat"
	content := "# GALERA saved state\nversion: 2.1\nuuid:    6f1c2c8e-1111-11ef-8c1e-aaaaaaaaaaaa\nseqno:   1234\nsafe_to_bootstrap: 0\n"
	if err := writeFile(path, content); err != nil {
		t.Fatal(err)
	}
	uuid, seqno, err := readGrastate(path)
	if err != nil || seqno != 1234 || !strings.HasPrefix(uuid, "6f1c2c8e") {
		t.Fatalf("%s %d %v", uuid, seqno, err)
	}
}
