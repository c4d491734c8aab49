package control

import (
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/cloudctl/cloudctl/manifests"
)

// NodeView is one member as the control decision sees it.
type NodeView struct {
	Name     string
	IP       string
	Control  bool
	JoinedAt time.Time
}

// ClusterView is the cluster state the control decision reads.
type ClusterView struct {
	Topology      string
	Manifest      *manifests.Manifest
	InstalledGiB  int
	Nodes         []NodeView
	DBHost        string
	Members       []string
	Formed        map[string]bool
	Recovery      map[string][]Position
	AdminPassword string
	Credentials   map[string]Credential
	Now           time.Time
	// Live is, per other control node answering now, its instances' wsrep status.
	Live map[string]map[string]string
	// CA is the control databases' CA (empty until recorded).
	CA ClusterCA
	// SealID names the key the secrets are sealed with (empty until
	// recorded). readView leaves AdminPassword, CA and each credential's
	// password empty and keeps their stored (sealed) values in sealed;
	// open fills them in on a node holding the key.
	SealID string
	sealed sealedValues
	// FloatingIP is the plan's floating address without its prefix length.
	FloatingIP string
	// ClientNetworks are extra networks (CIDR) the service accounts may
	// connect from, from the plan's settings.
	ClientNetworks []string
}

// GaleraPeers returns the Galera members: the recorded ones still holding the
// control role, topped up with the oldest other control nodes, the database
// host first. Fewer than three before formation means standalone.
func GaleraPeers(v ClusterView) []string {
	control := []NodeView{}
	for _, n := range v.Nodes {
		if n.Control {
			control = append(control, n)
		}
	}
	sort.SliceStable(control, func(i, j int) bool {
		if !control[i].JoinedAt.Equal(control[j].JoinedAt) {
			return control[i].JoinedAt.Before(control[j].JoinedAt)
		}
		return control[i].Name < control[j].Name
	})
	isControl := map[string]bool{}
	for _, n := range control {
		isControl[n.Name] = true
	}
	var out []string
	seen := map[string]bool{}
	add := func(n string) {
		if isControl[n] && !seen[n] && len(out) < GaleraMembers {
			out = append(out, n)
			seen[n] = true
		}
	}
	for _, m := range v.Members {
		add(m)
	}
	add(v.DBHost)
	for _, n := range control {
		add(n.Name)
	}
	return out
}

// anyFormed reports whether any instance's Galera cluster has formed.
func anyFormed(v ClusterView) bool {
	for _, f := range v.Formed {
		if f {
			return true
		}
	}
	return false
}

// DBHost returns the node that hosts the databases before they replicate:
// the recorded one, else the oldest control node.
func DBHost(v ClusterView) string {
	if v.DBHost != "" {
		return v.DBHost
	}
	if ps := GaleraPeers(v); len(ps) > 0 {
		return ps[0]
	}
	return ""
}

// ClientHosts are the MariaDB host patterns of the service accounts: every
// member's address (services and the floating endpoint's HAProxy run on
// members) and the plan's client networks as address/netmask.
func ClientHosts(v ClusterView) []string {
	set := map[string]bool{}
	for _, n := range v.Nodes {
		if ip := net.ParseIP(n.IP); ip != nil {
			set[ip.String()] = true
		}
	}
	for _, c := range v.ClientNetworks {
		_, ipn, err := net.ParseCIDR(strings.TrimSpace(c))
		if err != nil || ipn.IP.To4() == nil {
			continue
		}
		set[ipn.IP.String()+"/"+net.IP(ipn.Mask).String()] = true
	}
	out := make([]string, 0, len(set))
	for h := range set {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}

// Decide computes what node should run.
func Decide(v ClusterView, node string) (Desired, error) {
	des := Desired{Topology: v.Topology, AdminPassword: v.AdminPassword, Credentials: v.Credentials, Formed: v.Formed,
		PrimaryElsewhere: map[string]bool{}, Recovery: v.Recovery, CA: v.CA, ClientHosts: ClientHosts(v)}
	for _, n := range v.Nodes {
		if n.Name == node && n.IP != "" {
			des.CertIPs = append(des.CertIPs, n.IP)
		}
	}
	if v.FloatingIP != "" {
		des.CertIPs = append(des.CertIPs, v.FloatingIP)
	}
	if v.Topology == "" || v.Manifest == nil {
		return des, nil
	}
	insts, err := Layout(v.Topology, v.Manifest, v.InstalledGiB)
	if err != nil {
		return des, err
	}
	des.Instances = insts
	if v.DBHost == "" {
		if ps := GaleraPeers(v); len(ps) > 0 {
			v.DBHost = ps[0]
		}
	}
	peers := GaleraPeers(v)
	replicated := len(peers) >= GaleraMembers || anyFormed(v) && len(peers) > 0
	ip := map[string]string{}
	for _, n := range v.Nodes {
		ip[n.Name] = n.IP
	}
	if !replicated {
		des.Host = v.DBHost == node && len(peers) > 0 && peers[0] == node
		return des, nil
	}
	for _, p := range peers {
		if p == node {
			des.Host = true
		}
		des.Peers = append(des.Peers, Peer{Name: p, IP: ip[p]})
		if a := net.ParseIP(ip[p]); a != nil && !slices.Contains(des.GaleraAllow, a.String()) {
			des.GaleraAllow = append(des.GaleraAllow, a.String())
		}
	}
	sort.Strings(des.GaleraAllow)
	des.Seed = v.DBHost
	if !slices.Contains(peers, des.Seed) {
		des.Seed = peers[0]
	}
	// Only a peer answering now counts: database rows of a node that just
	// died still say Primary for a while.
	for peer, insts := range v.Live {
		if peer == node || !slices.Contains(peers, peer) {
			continue
		}
		for inst, ws := range insts {
			if ws == "Primary" {
				des.PrimaryElsewhere[inst] = true
			}
		}
	}
	return des, nil
}
