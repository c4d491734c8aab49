// Package compute is the compute role's driver: an LXD cluster across the
// compute nodes. cloudd runs Debian's lxd under its supervisor with LXD_DIR
// in the role's directory and configures it only through LXD's Go client:
// the API on the node's cluster address, a managed bridge network, a `local`
// dir storage pool as the default profile's root disk, images never
// auto-updated. The oldest compute node enables LXD clustering; later ones
// join with a join token cloudd fetches from a member over its own cluster
// API. Leaving the role evacuates the node's instances and leaves the LXD
// cluster. `cloudctl compute access` hands out LXD trust tokens.
package compute

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	lxdapi "github.com/canonical/lxd/shared/api"

	"github.com/cloudctl/cloudctl/api"
	"github.com/cloudctl/cloudctl/hwprobe"
	"github.com/cloudctl/cloudctl/roles"
	"github.com/cloudctl/cloudctl/roles/driver"
)

// Names of what the driver creates in LXD.
const (
	// PoolName is the per-member dir pool holding root disks.
	PoolName = "local"
	// NetworkName is the managed bridge every instance's eth0 joins.
	NetworkName = "cloudbr0"
	// ProfileName is the profile new instances get.
	ProfileName = "default"
	// TokenExpiry is LXD's core.remote_token_expiry: how long a trust token
	// from `cloudctl compute access` stays valid.
	TokenExpiry = "1H"
	// JoinTokenExpiry is LXD's cluster.join_token_expiry: join tokens are
	// used at once by cloudd, never shown.
	JoinTokenExpiry = "10M"
)

// serverConfig is the LXD server configuration cloudd wants on a member.
// core.https_address is per member; the rest are cluster-wide.
func serverConfig(ip string, port int) map[string]string {
	return map[string]string{
		"core.https_address":          net.JoinHostPort(ip, strconv.Itoa(port)),
		"images.auto_update_interval": "0",
		"core.remote_token_expiry":    TokenExpiry,
		"cluster.join_token_expiry":   JoinTokenExpiry,
	}
}

// configChanges returns the keys of want whose value differs in have.
func configChanges(have map[string]any, want map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range want {
		if fmt.Sprint(have[k]) != v || have[k] == nil {
			out[k] = v
		}
	}
	return out
}

// PeerState is what one compute node's cloudd says about its LXD (the
// compute/state endpoint): its own facts and, when it is a cluster member,
// the cluster as its LXD sees it.
type PeerState struct {
	Node string `json:"node"`
	// Running: LXD runs and answers; Clustered: it is an LXD cluster member.
	Running   bool `json:"running"`
	Clustered bool `json:"clustered"`
	// Left: this node holds no LXD state (never had any, or removed it
	// after leaving the role).
	Left    bool   `json:"left"`
	Address string `json:"address,omitempty"`
	Error   string `json:"error,omitempty"`
	// VMs is true when the node offers virtual machines; VMReason says why not.
	VMs      bool   `json:"vms"`
	VMReason string `json:"vm_reason,omitempty"`
	// RBD is false when the kernel's rbd module is absent (/sys/bus/rbd).
	RBD bool `json:"rbd"`
	// ReadySeconds is how long LXD took from start to ready here.
	ReadySeconds float64 `json:"ready_seconds,omitempty"`
	// JoinSeconds is how long this member's join (or bootstrap) took.
	JoinSeconds float64 `json:"join_seconds,omitempty"`
	// RSSKiB is LXD's resident memory.
	RSSKiB int64 `json:"rss_kib,omitempty"`
	// Cluster is the cluster as this member's LXD sees it.
	Cluster *ClusterView `json:"cluster,omitempty"`
	// Remote is the remote (Ceph) pool on this member, when the storage
	// role handed the compute role a Ceph user.
	Remote *RemoteState `json:"remote,omitempty"`
}

// ClusterView is the LXD cluster as one member sees it.
type ClusterView struct {
	Members   []Member       `json:"members"`
	Pools     []Pool         `json:"pools"`
	Instances map[string]int `json:"instances"`
	// Names are the instance names per member.
	Names map[string][]string `json:"names,omitempty"`
}

// Member is one LXD cluster member.
type Member struct {
	Name    string   `json:"name"`
	URL     string   `json:"url"`
	Status  string   `json:"status"`
	Message string   `json:"message,omitempty"`
	Roles   []string `json:"roles"`
}

// Pool is one LXD storage pool.
type Pool struct {
	Name   string `json:"name"`
	Driver string `json:"driver"`
	Status string `json:"status"`
}

// JoinInfo is what a member hands a joining node (compute/join endpoint):
// an LXD join token for it, the cluster certificate and where to join.
type JoinInfo struct {
	Token       string                          `json:"token"`
	Address     string                          `json:"address"`
	Certificate string                          `json:"certificate"`
	MemberKeys  []lxdapi.ClusterMemberConfigKey `json:"member_config"`
}

// Action is what the clustering decision says to do.
type Action int

// Clustering actions.
const (
	// Settled: the local LXD is a cluster member already.
	Settled Action = iota
	// Bootstrap: enable clustering here (the first compute node).
	Bootstrap
	// Join: join through the member named in the decision.
	Join
	// Wait: nothing to do yet (the reason says why).
	Wait
)

// Decision is the clustering decision for the local node.
type Decision struct {
	Action Action
	// Via is the member to ask for a join token (Join).
	Via    string
	Reason string
}

// decideCluster decides how the local LXD gets into the LXD cluster.
// computeNodes are the compute nodes oldest first; peers are the states the
// other compute nodes reported (unreachable ones are absent).
func decideCluster(local string, localClustered bool, computeNodes []string, peers []PeerState) Decision {
	if localClustered {
		return Decision{Action: Settled}
	}
	for _, p := range peers {
		if p.Node != local && p.Clustered && p.Running {
			return Decision{Action: Join, Via: p.Node}
		}
	}
	if len(computeNodes) == 0 || computeNodes[0] == local {
		return Decision{Action: Bootstrap}
	}
	return Decision{Action: Wait, Reason: fmt.Sprintf("waiting for %s (the first compute node) to form the LXD cluster", computeNodes[0])}
}

// memberConfig fills the per-member keys a joining member must provide: the
// local pool's source is this node's pool directory, the remote pool's the
// OSD pool; other keys (optional ones such as bridge.external_interfaces)
// stay empty.
func memberConfig(keys []lxdapi.ClusterMemberConfigKey, poolSource, remoteSource string) []lxdapi.ClusterMemberConfigKey {
	out := make([]lxdapi.ClusterMemberConfigKey, 0, len(keys))
	for _, k := range keys {
		if k.Entity == "storage-pool" && k.Name == PoolName && k.Key == "source" {
			k.Value = poolSource
		}
		if k.Entity == "storage-pool" && k.Name == RemotePoolName && k.Key == "source" && remoteSource != "" {
			k.Value = remoteSource
		}
		out = append(out, k)
	}
	return out
}

// vmVerdict says whether a node offers VMs: hwprobe's KVM verdict must be
// yes and LXD's qemu driver must be operational.
func vmVerdict(kvm hwprobe.KVM, lxdDrivers string) (bool, string) {
	if kvm.Verdict != hwprobe.KVMYes {
		why := kvm.Reason
		if why == "" {
			why = "KVM verdict " + kvm.Verdict
		}
		return false, "containers only: no KVM (" + why + ")"
	}
	for _, d := range strings.Split(lxdDrivers, "|") {
		if strings.TrimSpace(strings.ToLower(d)) == "qemu" {
			return true, ""
		}
	}
	return false, "containers only: KVM is available but LXD's qemu driver is not operational here (see the LXD log, e.g. vhost_vsock kernel module not loaded)"
}

// accessAddress is where `lxc remote add` should connect: the floating
// address when the plan has one, else this node's cluster address.
func accessAddress(plan api.Plan, localIP string, port int) string {
	host := localIP
	if plan.FloatingAddress != "" {
		host = plan.FloatingAddress
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if h, _, ok := strings.Cut(host, "/"); ok {
			host = h
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// retargetToken rewrites a certificate add token so lxc connects to addr
// (the floating address) first; the other addresses stay as fallbacks.
func retargetToken(token, addr string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		return "", fmt.Errorf("decode LXD trust token: %w", err)
	}
	var t lxdapi.CertificateAddToken
	if err := json.Unmarshal(raw, &t); err != nil {
		return "", fmt.Errorf("decode LXD trust token: %w", err)
	}
	addrs := []string{addr}
	for _, a := range t.Addresses {
		if a != addr {
			addrs = append(addrs, a)
		}
	}
	t.Addresses = addrs
	return t.String(), nil
}

// haVerdict applies LXD's rule: its database is highly available with three
// voters online.
func haVerdict(v *ClusterView) (string, string) {
	if v == nil {
		return api.HANo, "no LXD cluster member answers"
	}
	voters, online := 0, 0
	for _, m := range v.Members {
		if m.Status == "Online" {
			online++
			if isVoter(m.Roles) {
				voters++
			}
		}
	}
	switch {
	case len(v.Members) < 3:
		return api.HANo, fmt.Sprintf("LXD's database needs three voters; the LXD cluster has %d member(s)", len(v.Members))
	case voters >= 3:
		return api.HAYes, ""
	default:
		return api.HADegraded, fmt.Sprintf("LXD's database needs three voters online; %d of %d members online, %d voter(s)", online, len(v.Members), voters)
	}
}

func isVoter(roles []string) bool {
	for _, r := range roles {
		if r == "database" || r == "database-leader" {
			return true
		}
	}
	return false
}

// guardRemoval says whether node can leave the LXD cluster without losing
// instances: they can be moved when another member that keeps the compute
// role (in compute) is online and the node gives up its compute role
// (which evacuates); removing a node with instances outright would lose
// them.
func guardRemoval(kind driver.ChangeKind, node string, v *ClusterView, compute map[string]bool) error {
	if v == nil {
		return nil
	}
	if _, blocked := leadership(v.Members, node, compute); blocked != nil {
		return fmt.Errorf("%w, then try again", blocked)
	}
	names := v.Names[node]
	if len(names) == 0 {
		return nil
	}
	var targets []string
	for _, m := range v.Members {
		if m.Name != node && m.Status == "Online" && compute[m.Name] {
			targets = append(targets, m.Name)
		}
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	if len(targets) > 0 {
		if kind == driver.RemoveNode {
			return driver.LeaveRoleFirst{Role: roles.Compute, Err: fmt.Errorf("%s runs %d LXD instance(s) (%s): they move to %s as it gives up its compute role first", node, len(names), strings.Join(sorted, ", "), strings.Join(targets, ", "))}
		}
		return nil
	}
	return fmt.Errorf("%s runs %d LXD instance(s) (%s) and no other compute node is online to take them: move, stop or delete them, or add a compute node first", node, len(names), strings.Join(sorted, ", "))
}

// guardLeaving answers the removal of a node that gave up its compute role,
// from its own compute state (own, nil when its cloudd does not answer) or
// else the LXD cluster as the other members see it (v): it may go once it
// holds no LXD state (removed last, after leaving the LXD cluster with its
// instances moved and stopping LXD); before, removing it would cut that
// short. When nothing answers it waits too (--force overrides, as for any
// guard).
func guardLeaving(node string, own *PeerState, v *ClusterView) error {
	if own != nil {
		switch {
		case own.Left:
			return nil
		case !own.Running:
			// LXD not answering says nothing: it may be restarting in the
			// middle of the evacuation (and it runs on after leaving,
			// until its state is removed).
			return driver.LeaveRoleFirst{Role: roles.Compute, Err: fmt.Errorf("%s still holds LXD state and its LXD does not answer yet", node)}
		case own.Clustered:
			n := 0
			if own.Cluster != nil {
				n = len(own.Cluster.Names[node])
			}
			return driver.LeaveRoleFirst{Role: roles.Compute, Err: fmt.Errorf("%s is still leaving the LXD cluster (moving its %d instance(s) to other compute nodes)", node, n)}
		default:
			return driver.LeaveRoleFirst{Role: roles.Compute, Err: fmt.Errorf("%s left the LXD cluster and is stopping its LXD", node)}
		}
	}
	if v == nil {
		// Transient while LXD restarts (after leaving its cluster, LXD
		// restarts standalone): keep waiting. A node that stays silent is
		// offline, and removing an offline node needs --force anyway.
		return driver.LeaveRoleFirst{Role: roles.Compute, Err: fmt.Errorf("waiting for %s's LXD, or another compute node's, to answer: whether %s still holds instances cannot be told yet", node, node)}
	}
	for _, m := range v.Members {
		if m.Name == node {
			return driver.LeaveRoleFirst{Role: roles.Compute, Err: fmt.Errorf("%s is still leaving the LXD cluster (moving its %d instance(s) to other compute nodes)", node, len(v.Names[node]))}
		}
	}
	return nil
}

// decodeJoinToken reads an LXD cluster join token.
func decodeJoinToken(token string) (*lxdapi.ClusterMemberJoinToken, error) {
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		return nil, fmt.Errorf("decode LXD join token: %w", err)
	}
	var t lxdapi.ClusterMemberJoinToken
	if err := json.Unmarshal(raw, &t); err != nil {
		return nil, fmt.Errorf("decode LXD join token: %w", err)
	}
	if t.Secret == "" || len(t.Addresses) == 0 || t.Fingerprint == "" {
		return nil, fmt.Errorf("LXD join token lacks its secret, addresses or fingerprint")
	}
	return &t, nil
}

// certFingerprint is the SHA-256 fingerprint of a PEM certificate, as LXD shows it.
func certFingerprint(certPEM string) (string, error) {
	b, _ := pem.Decode([]byte(certPEM))
	if b == nil {
		return "", fmt.Errorf("LXD cluster certificate is not PEM")
	}
	sum := sha256.Sum256(b.Bytes)
	return hex.EncodeToString(sum[:]), nil
}

// joinPut is the request that makes a standalone LXD join the cluster.
// LXD 5.0 takes the whole join token as the cluster password (newer
// clients send the whole token, which 5.0 does not know); the certificate
// must match the token's fingerprint.
func joinPut(name, serverAddr, poolSource, remoteSource string, ji JoinInfo) (lxdapi.ClusterPut, error) {
	tok, err := decodeJoinToken(ji.Token)
	if err != nil {
		return lxdapi.ClusterPut{}, err
	}
	fp, err := certFingerprint(ji.Certificate)
	if err != nil {
		return lxdapi.ClusterPut{}, err
	}
	if fp != tok.Fingerprint {
		return lxdapi.ClusterPut{}, fmt.Errorf("LXD cluster certificate %s does not match the join token's fingerprint %s", fp, tok.Fingerprint)
	}
	addr := ji.Address
	if addr == "" {
		addr = tok.Addresses[0]
	}
	return lxdapi.ClusterPut{
		Cluster:            lxdapi.Cluster{ServerName: name, Enabled: true, MemberConfig: memberConfig(ji.MemberKeys, poolSource, remoteSource)},
		ClusterAddress:     addr,
		ClusterCertificate: ji.Certificate,
		ServerAddress:      serverAddr,
		ClusterPassword:    ji.Token,
	}, nil
}
