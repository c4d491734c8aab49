package control

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Peer is one Galera member: a control node and its address.
type Peer struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
}

// configInput is everything one instance's defaults-file depends on.
type configInput struct {
	Inst     Instance
	Paths    paths
	NodeName string
	IP       string
	// Peers is nil for a standalone instance.
	Peers          []Peer
	Provider       string
	MaxConnections int
	// TLS are the node's certificate files (tlsFiles).
	TLS tlsPaths
	// Allow are the addresses Galera accepts (Desired.GaleraAllow).
	Allow []string
}

// renderConfig writes the MariaDB defaults-file. No secret appears in it.
func renderConfig(in configInput) string {
	var b strings.Builder
	w := func(k string, v any) { fmt.Fprintf(&b, "%s=%v\n", k, v) }
	b.WriteString("# Written by cloudd; changes are overwritten.\n[mysqld]\n")
	w("user", "mysql")
	w("datadir", in.Paths.data)
	w("socket", in.Paths.sock)
	w("pid-file", in.Paths.pid)
	w("log-error", in.Paths.errlog)
	w("port", in.Inst.Port)
	w("bind-address", in.IP)
	w("skip-name-resolve", "ON")
	w("innodb_buffer_pool_size", strconv.Itoa(in.Inst.BufferPoolMiB)+"M")
	w("max_connections", in.MaxConnections)
	w("character-set-server", "utf8mb4")
	w("collation-server", "utf8mb4_general_ci")
	// Galera needs these; they are harmless standalone and keep the data
	// format the same when the instance becomes replicated.
	w("binlog_format", "ROW")
	w("default_storage_engine", "InnoDB")
	w("innodb_autoinc_lock_mode", 2)
	// Clients over TCP must use TLS with the cluster CA's certificates; the
	// unix socket (cloudd's own admin account) counts as secure.
	w("ssl_ca", in.TLS.ca)
	w("ssl_cert", in.TLS.cert)
	w("ssl_key", in.TLS.key)
	w("require_secure_transport", "ON")
	w("tls_version", "TLSv1.2,TLSv1.3")
	if len(in.Peers) > 0 {
		addrs := make([]string, len(in.Peers))
		for i, p := range in.Peers {
			addrs[i] = net.JoinHostPort(p.IP, strconv.Itoa(in.Inst.GaleraPort))
		}
		w("wsrep_on", "ON")
		w("wsrep_provider", in.Provider)
		w("wsrep_cluster_name", "cloudctl-"+in.Inst.Name)
		w("wsrep_cluster_address", "gcomm://"+strings.Join(addrs, ","))
		w("wsrep_node_name", in.NodeName)
		w("wsrep_node_address", net.JoinHostPort(in.IP, strconv.Itoa(in.Inst.GaleraPort)))
		// Replication and IST over TLS: Galera accepts only peers whose
		// certificate the cluster's CA signed (socket.ssl_ca).
		w("wsrep_provider_options", fmt.Sprintf(`"gmcast.listen_addr=tcp://%s;ist.recv_addr=%s;gcache.size=64M;pc.wait_prim_timeout=PT30S;socket.ssl=YES;socket.ssl_ca=%s;socket.ssl_cert=%s;socket.ssl_key=%s"`,
			net.JoinHostPort(in.IP, strconv.Itoa(in.Inst.GaleraPort)), net.JoinHostPort(in.IP, strconv.Itoa(in.Inst.ISTPort)), in.TLS.ca, in.TLS.cert, in.TLS.key))
		if len(in.Allow) > 0 {
			// Read at start: it seeds the allowlist table of a new
			// cluster's first member, and it is what Galera checks while
			// a joiner's own table is not open yet (during its state
			// transfer). Once open, the table (syncAllowlist) decides.
			w("wsrep_allowlist", strings.Join(in.Allow, ","))
		}
		w("wsrep_sst_method", "rsync")
		w("wsrep_sst_receive_address", net.JoinHostPort(in.IP, strconv.Itoa(in.Inst.SSTPort)))
		w("wsrep_slave_threads", 2)
		// rsync SST through stunnel: both ends present the node certificate
		// and verify the other's chain against the CA.
		b.WriteString("[sst]\n")
		w("tca", in.TLS.ca)
		w("tcert", in.TLS.cert)
		w("tkey", in.TLS.key)
		w("ssl-mode", "VERIFY_CA")
	} else {
		w("wsrep_on", "OFF")
	}
	return b.String()
}
