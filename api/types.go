package api

import "time"

// Node is one cluster member as cloudctl shows it. JSON names are stable.
type Node struct {
	Name    string   `json:"name"`
	Address string   `json:"address"`
	Roles   []string `json:"roles"`
	Region  string   `json:"region,omitempty"`
	Zone    string   `json:"zone,omitempty"`
	// Status is "online", "offline" or "unknown" (the database could not be read).
	Status string `json:"status"`
	// DqliteRole is this member's role in the cluster database (dqlite):
	// "voter", "stand-by", "spare", "pending", or "" when unknown.
	DqliteRole string `json:"dqlite_role"`
	// Leader is true for the dqlite leader.
	Leader   bool      `json:"leader"`
	JoinedAt time.Time `json:"joined_at"`
}

// HA describes whether a layer survives the loss of one member.
type HA struct {
	// Enabled is true when the layer tolerates losing one member.
	Enabled bool `json:"enabled"`
	// ControlNodes is the number of nodes with the control role.
	ControlNodes int `json:"control_nodes"`
	// Required is the number of control nodes HA needs (3).
	Required int `json:"required"`
	// Voters is the number of dqlite voters.
	Voters int `json:"voters"`
	// Summary is the one line cloudctl prints, e.g. "HA: no — 2 of 3 control nodes".
	Summary string `json:"summary"`
}

// Status is the answer of GET /1.0/status.
type Status struct {
	Cluster string `json:"cluster"`
	// Local is the name of the node that answered.
	Local   string `json:"local"`
	Members []Node `json:"members"`
	HA      HA     `json:"ha"`
	// Layers are the cluster database's layer, then one per role present
	// (control databases, storage, compute, floating endpoint).
	Layers []Layer `json:"layers"`
	// Warnings are things a person should look at (offline members, lost voters).
	Warnings []string `json:"warnings"`
	Version  string   `json:"version"`
}

// RolesChange is the body of PATCH /1.0/nodes/{name}/roles.
type RolesChange struct {
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// NodeRemoval answers DELETE /1.0/nodes/{name}: the node was removed, or
// its removal waits for it to give up a role first (Waiting, the role; Reason
// says what moves). Asking again continues the removal.
type NodeRemoval struct {
	Removed bool   `json:"removed"`
	Waiting string `json:"waiting,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// TokenRequest is the body of POST /1.0/tokens: record a join token's metadata.
type TokenRequest struct {
	Name string `json:"name"`
	// TTLSeconds is the token lifetime; 0 means the default (1 h).
	TTLSeconds int64 `json:"ttl_seconds"`
	// SecretSHA256 identifies the microcluster secret without storing it twice.
	SecretSHA256 string `json:"secret_sha256,omitempty"`
}

// Token states.
const (
	TokenPending = "pending"
	TokenUsed    = "used"
	TokenRevoked = "revoked"
	TokenExpired = "expired"
)

// Token is one join token as listed by `cloudctl cluster tokens list`.
type Token struct {
	Name      string    `json:"name"`
	State     string    `json:"state"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Token is the string to hand to the joining node; only for pending tokens.
	Token string `json:"token,omitempty"`
	// UsedBy names the node that used the token (state used).
	UsedBy string `json:"used_by,omitempty"`
}

// JoinIntent is the body of POST /1.0/join-intent (local socket only), which
// `cloudctl cluster join` sends to its own cloudd just before the join: the
// node's name and the init config the join carries, kept until the join is
// recorded so an interrupted join can be cleared or finished.
type JoinIntent struct {
	Name       string            `json:"name"`
	InitConfig map[string]string `json:"init_config"`
}

// TokenCheck is the body of POST /1.0/tokens/check, sent by a joining node
// before it joins, to learn whether its token is still good.
type TokenCheck struct {
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

// TokenCheckResult is the answer of POST /1.0/tokens/check.
type TokenCheckResult struct {
	// Valid is true when the token can be used now.
	Valid bool `json:"valid"`
	// Reason is one of: ok, unknown, used, revoked, expired, superseded, wrong-name.
	Reason    string    `json:"reason"`
	Cluster   string    `json:"cluster"`
	ExpiresAt time.Time `json:"expires_at"`
	// UsedBy names the member that consumed the token.
	UsedBy string `json:"used_by,omitempty"`
	// RetryAt is set on a token redeemed by a join that has not finished:
	// when the cluster gives the token back if that join never comes.
	RetryAt time.Time `json:"retry_at,omitzero"`
	// Secret is, in the answer of POST /1.0/token-redeem only, the
	// single-use microcluster secret the joiner joins with.
	Secret string `json:"secret,omitempty"`
	// Resumed is set when the token was redeemed by this same joiner (the
	// certificate it presents) for a join that never reached the cluster:
	// the join may be run again at once, and its redemption is made anew.
	Resumed bool `json:"resumed,omitempty"`
}

// Plan is the record of how the cluster was set up, kept in the cluster
// database. The bootstrap package produces it; later issues extend it.
type Plan struct {
	Version int    `json:"version"`
	Cluster string `json:"cluster"`
	// Bootstrap is the name of the first node.
	Bootstrap string `json:"bootstrap"`
	// MySQLTopology is "single" or "multi"; fixed at bootstrap.
	MySQLTopology string `json:"mysql_topology,omitempty"`
	// MySQLTopologyReason is the fact behind the choice, e.g. "64 GiB installed".
	MySQLTopologyReason string `json:"mysql_topology_reason,omitempty"`
	// FloatingAddress is the optional VRRP address in front of the control endpoints.
	FloatingAddress string `json:"floating_address,omitempty"`
	// Settings are other site-wide choices.
	Settings map[string]string `json:"settings,omitempty"`
}

// DiskChoice is one disk a node gives to storage.
type DiskChoice struct {
	Path string `json:"path"`
	// Wipe is the explicit consent to erase a signature found on the disk.
	Wipe bool `json:"wipe,omitempty"`
}

// NodeInit is what a node records about itself when it bootstraps or joins.
// It travels in microcluster's init config under InitConfigKey.
type NodeInit struct {
	Roles  []string `json:"roles"`
	Region string   `json:"region,omitempty"`
	Zone   string   `json:"zone,omitempty"`
	// Token is the name the join token was issued for (join only).
	TokenName string `json:"token_name,omitempty"`
	// Manifest is a manifest overlay (YAML) applied over the default on
	// bootstrap; the effective manifest is kept in the cluster database.
	Manifest string `json:"manifest,omitempty"`
	// Disks are this node's OSD disks (storage role).
	Disks []DiskChoice `json:"disks,omitempty"`
	// Plan is set on bootstrap only.
	Plan *Plan `json:"plan,omitempty"`
}

// InitConfigKey is the microcluster init-config key carrying a JSON NodeInit.
const InitConfigKey = "cloudctl.node"

// DefaultPort is cloudd's cluster port.
const DefaultPort = 7443

// DefaultTokenTTL is a join token's lifetime when none is given.
const DefaultTokenTTL = time.Hour

// Labels is the body of PATCH /1.0/nodes/{name}/labels.
type Labels struct {
	Region *string `json:"region,omitempty"`
	Zone   *string `json:"zone,omitempty"`
}

// DBMember is one node's copy of a MariaDB instance.
type DBMember struct {
	Node string `json:"node"`
	// State: stopped, starting, running, waiting, recovering, failed, stale (no recent report).
	State string `json:"state"`
	// WsrepStatus is "Primary", "non-Primary", "Disconnected", or "" when standalone.
	WsrepStatus string    `json:"wsrep_status"`
	Size        int       `json:"size"`
	Provisioned bool      `json:"provisioned"`
	Comment     string    `json:"comment,omitempty"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// DBInstance is one MariaDB instance across the control nodes.
type DBInstance struct {
	Name     string   `json:"name"`
	Services []string `json:"services"`
	Port     int      `json:"port"`
	// Replication is "standalone" or "galera".
	Replication string `json:"replication"`
	// Expected is how many members it should have; Size is how many are in the Primary component.
	Expected int        `json:"expected"`
	Size     int        `json:"size"`
	Primary  bool       `json:"primary"`
	Members  []DBMember `json:"members"`
	// Degraded says what is wrong, or is empty.
	Degraded string `json:"degraded,omitempty"`
}

// DBService is one control-plane service's database.
type DBService struct {
	Service  string `json:"service"`
	Instance string `json:"instance"`
	Database string `json:"database"`
	User     string `json:"user"`
	// Endpoints are the ip:port addresses serving it.
	Endpoints   []string `json:"endpoints"`
	Replication string   `json:"replication"`
	// Floating is the floating endpoint (floating address and the HAProxy
	// frontend's port) when it exists and answers; clients should use it.
	Floating string `json:"floating,omitempty"`
}

// Databases is the answer of GET /1.0/databases.
type Databases struct {
	Topology  string       `json:"topology"`
	Reason    string       `json:"reason,omitempty"`
	Host      string       `json:"host,omitempty"`
	Instances []DBInstance `json:"instances"`
	Services  []DBService  `json:"services"`
	// EndpointNote says why services have no floating endpoint (no floating
	// address, nobody holds it): clients then use the members' own addresses
	// and the endpoint is not highly available; or that the floating
	// endpoint is held by the only control node (not highly available).
	EndpointNote string `json:"endpoint_note,omitempty"`
}

// DBCredentials is the answer of GET /1.0/databases/{service}/credentials (local socket only).
type DBCredentials struct {
	Service   string   `json:"service"`
	Database  string   `json:"database"`
	User      string   `json:"user"`
	Password  string   `json:"password"`
	Endpoints []string `json:"endpoints"`
	// Floating is the floating endpoint when it exists and answers.
	Floating string `json:"floating,omitempty"`
	// Note says why there is no floating endpoint, or that it is not highly
	// available (see Databases.EndpointNote).
	Note string `json:"note,omitempty"`
	// DSN is a go-sql-driver/mysql data source name for the floating
	// endpoint, or else the first endpoint, with tls=DBTLSConfigName: the
	// client registers a TLS configuration under that name that trusts CA
	// (mysql.RegisterTLSConfig).
	DSN string `json:"dsn"`
	// CA is the PEM certificate of the CA that signed the servers'
	// certificates; servers accept TLS connections only.
	CA string `json:"ca"`
}

// DBTLSConfigName is the go-sql-driver/mysql TLS configuration name the
// DSNs of `database credentials` use.
const DBTLSConfigName = "cloudctl"

// DBCheckRequest is the body of POST /1.0/databases/check (local socket
// only): the services to check, or every one when empty.
type DBCheckRequest struct {
	Services []string `json:"services"`
}

// DBCheck is one service checked at one endpoint: cloudd connected with the
// service's own credentials and wrote and read back a row.
type DBCheck struct {
	Service  string `json:"service"`
	Endpoint string `json:"endpoint"`
	Rows     int64  `json:"rows"`
	TookNS   int64  `json:"took_ns"`
	// Error is set when the check failed.
	Error string `json:"error,omitempty"`
}

// FloatingAddress is the body of PUT /1.0/plan/floating-address: the
// address to hold ("10.0.0.100" or "10.0.0.100/24"), or "" to remove it.
type FloatingAddress struct {
	Address string `json:"floating_address"`
}
