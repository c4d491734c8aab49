package endpoint

import (
	"fmt"
	"net"
	"regexp"
	"strings"

	"github.com/cloudctl/cloudctl/roles/driver"
)

// Check timing. keepalived runs the check every CheckInterval seconds; a
// node gives the address up after CheckFall failures and may take it again
// after CheckRise successes. The verdict file counts as stale after
// VerdictMaxAge seconds without a rewrite (cloudd stuck or gone).
const (
	CheckInterval = 1
	CheckFall     = 2
	CheckRise     = 2
	VerdictMaxAge = 3
)

// keepalivedInput is everything keepalived.conf depends on.
type keepalivedInput struct {
	Des         Desired
	CheckScript string
}

// renderKeepalived writes keepalived's configuration: one VRRP instance with
// unicast peers (multicast may be filtered, and then every node would become
// MASTER), all nodes BACKUP with nopreempt, the health check tracked with no
// weight so that a failing check puts the node in FAULT (it never holds the
// address). Adverts are taken only from the listed peers (check_unicast_src)
// and only when they were not routed (sent with TTL 255, accepted with TTL
// 255): a host that is not a control node cannot make the holder give the
// address up. No secret appears in it.
func renderKeepalived(in keepalivedInput) string {
	d := in.Des
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by cloudd (floating endpoint); changes are overwritten.")
	w("global_defs {")
	w("  router_id cloudctl-%s", d.Self.Name)
	w("  script_user root")
	w("  enable_script_security")
	w("}")
	w("")
	w("vrrp_script cloudctl_health {")
	w("  script \"/bin/sh %s\"", in.CheckScript)
	w("  interval %d", CheckInterval)
	w("  timeout %d", CheckInterval+1)
	w("  fall %d", CheckFall)
	w("  rise %d", CheckRise)
	w("  init_fail")
	w("}")
	w("")
	w("vrrp_instance cloudctl {")
	w("  state BACKUP")
	w("  nopreempt")
	w("  interface %s", d.Interface)
	w("  virtual_router_id %d", d.RouterID)
	w("  priority %d", d.Self.Priority)
	w("  advert_int 1")
	w("  unicast_src_ip %s", d.Self.IP)
	w("  unicast_ttl 255")
	w("  check_unicast_src")
	w("  unicast_peer {")
	for _, p := range d.Peers {
		w("    %s min_ttl 255", p)
	}
	if len(d.Peers) == 0 {
		// The only control node: an empty list would make keepalived fall
		// back to multicast adverts on the segment. A loopback peer keeps
		// it in unicast mode, and its adverts never leave the host.
		w("    %s min_ttl 255", LonePeer)
	}
	w("  }")
	w("  virtual_ipaddress {")
	w("    %s dev %s", d.VIP, d.Interface)
	w("  }")
	w("  track_script {")
	w("    cloudctl_health")
	w("  }")
	w("}")
	return b.String()
}

// LonePeer is the unicast peer of a node that is the only control node.
const LonePeer = "127.0.0.1"

// renderCheckScript writes the script keepalived runs as the health check:
// it passes when cloudd wrote "ok" into the verdict file within the last
// VerdictMaxAge seconds. cloudd's health loop rewrites the file every
// second, so a stopped or stuck cloudd fails the check as surely as a
// failed database does. No secret is involved.
func renderCheckScript(verdict string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	b.WriteString("# Written by cloudd (floating endpoint); changes are overwritten.\n")
	b.WriteString("# Passes when cloudd judged this node healthy within the last seconds.\n")
	fmt.Fprintf(&b, "f='%s'\n", verdict)
	b.WriteString("read -r v 2>/dev/null <\"$f\" || exit 1\n")
	b.WriteString("[ \"$v\" = ok ] || exit 1\n")
	b.WriteString("m=$(stat -c %Y \"$f\") || exit 1\n")
	b.WriteString("now=$(date +%s)\n")
	fmt.Fprintf(&b, "[ $((now - m)) -le %d ]\n", VerdictMaxAge)
	return b.String()
}

// haproxyInput is everything haproxy.cfg depends on.
type haproxyInput struct {
	Des Desired
	// User and Group drop the workers' privileges when set.
	User, Group string
	// ClientPEM (this member's certificate and key) and CAFile (the cluster
	// certificate) let HAProxy run backends' HTTP checks on members' cloudd
	// (driver.HTTPCheck) over mutual TLS; without them backends are checked
	// with a connect. ClientPrint changes when the certificate does, so a
	// renewed one reaches HAProxy (a reload).
	ClientPEM, CAFile, ClientPrint string
}

// httpChecks reports whether every backend of f carries a usable HTTP
// check; a frontend with one backend lacking it falls back to connects.
func httpChecks(f driver.Frontend) bool {
	for _, be := range f.Backends {
		if be.Check == nil || !strings.HasPrefix(be.Check.Path, "/") || strings.ContainsAny(be.Check.Path, " \t\n#") {
			return false
		}
		if _, _, err := net.SplitHostPort(be.Check.Addr); err != nil || strings.ContainsAny(be.Check.Addr, " \t\n#") {
			return false
		}
	}
	return len(f.Backends) > 0
}

// checkBackend names the backend that runs the HTTP check of f's backend
// on node (HAProxy's http-check is per backend section, and cloudd wants
// each member's own address as the Host header).
func checkBackend(f, node string) string { return "check." + cfgName(f) + "." + cfgName(node) }

var nameRE = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

func cfgName(s string) string { return nameRE.ReplaceAllString(s, "_") }

// renderHAProxy writes HAProxy's configuration: TCP frontends bound on the
// floating address (every candidate binds it; only the holder receives
// traffic). A OneActive frontend sends every connection to its first
// healthy backend; the others are backups, and sessions are cut whenever
// the active backend changes, so writers never spread over two members.
func renderHAProxy(in haproxyInput) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by cloudd (floating endpoint); changes are overwritten.")
	if in.ClientPrint != "" {
		w("# client certificate %s", in.ClientPrint)
	}
	w("global")
	if in.User != "" {
		w("  user %s", in.User)
		w("  group %s", in.Group)
	}
	// Connections a reload leaves on the old worker end within this time, so
	// an old and a new worker never keep writers on two members for long.
	w("  hard-stop-after 30s")
	w("")
	w("defaults")
	w("  mode tcp")
	w("  timeout connect 2s")
	w("  timeout client 1h")
	w("  timeout server 1h")
	w("  default-server inter 1s fall 2 rise 2 on-marked-down shutdown-sessions on-marked-up shutdown-backup-sessions")
	for _, f := range in.Des.Frontends {
		name := cfgName(f.Name)
		w("")
		w("frontend %s", name)
		w("  bind %s:%d", in.Des.VIP.Addr(), f.Port)
		w("  default_backend %s", name)
		w("")
		w("backend %s", name)
		if !f.OneActive {
			w("  balance roundrobin")
		}
		tls := in.Des.TLSAddrs != nil
		for _, be := range f.Backends {
			tls = tls && in.Des.TLSAddrs[be.Addr]
		}
		checked := in.ClientPEM != "" && in.CAFile != "" && httpChecks(f)
		if checked {
			tls = false
		} else if tls {
			// A TLS API (cloudd, LXD): the check completes a handshake and
			// one HTTP request, so the server logs nothing; any HTTP answer
			// (even 401/403/404) shows the API serves.
			w("  option httpchk")
			w("  http-check send meth GET uri /1.0")
			w("  http-check expect rstatus ^[234]")
		}
		for i, be := range f.Backends {
			line := fmt.Sprintf("  server %s %s check", cfgName(be.Node), be.Addr)
			if checked {
				// The server follows its check backend's verdict.
				line = fmt.Sprintf("  server %s %s track %s/%s", cfgName(be.Node), be.Addr, checkBackend(f.Name, be.Node), cfgName(be.Node))
			}
			if tls {
				line += " check-ssl verify none"
			}
			if f.OneActive && i > 0 {
				line += " backup"
			}
			w("%s", line)
		}
		if !checked {
			continue
		}
		// The offering driver judges each backend on its member's cloudd (a
		// Galera member serves only while Synced): a request over mutual
		// TLS, this member's certificate as the client's, the server
		// verified against the cluster certificate, the member's address
		// as Host (cloudd refuses another).
		for _, be := range f.Backends {
			w("")
			w("backend %s", checkBackend(f.Name, be.Node))
			w("  option httpchk")
			w("  http-check send meth GET uri %s ver HTTP/1.1 hdr Host %s", be.Check.Path, be.Check.Addr)
			w("  http-check expect status 200")
			// cloudd under load may answer late: a slow answer is not a no.
			w("  timeout check 2s")
			w("  server %s %s check check-ssl verify required ca-file %s crt %s", cfgName(be.Node), be.Check.Addr, in.CAFile, in.ClientPEM)
		}
	}
	return b.String()
}

// usableFrontends keeps what HAProxy can serve of what the drivers offer:
// a frontend with an empty or duplicate name, a port out of range or taken
// by an earlier one, no backend, or a bad backend address is left out (and
// said why), so one bad offer never takes the others down.
func usableFrontends(fs []driver.Frontend) (ok []driver.Frontend, skipped []string) {
	names, ports := map[string]bool{}, map[int]string{}
	for _, f := range fs {
		if why := frontendProblem(f, names, ports); why != "" {
			skipped = append(skipped, fmt.Sprintf("frontend %q: %s", f.Name, why))
			continue
		}
		names[cfgName(f.Name)] = true
		ports[f.Port] = f.Name
		ok = append(ok, f)
	}
	return ok, skipped
}

func frontendProblem(f driver.Frontend, names map[string]bool, ports map[int]string) string {
	switch {
	case f.Name == "":
		return "no name"
	case names[cfgName(f.Name)]:
		return "another frontend has that name"
	case f.Port <= 0 || f.Port > 65535:
		return fmt.Sprintf("port %d out of range", f.Port)
	case ports[f.Port] != "":
		return fmt.Sprintf("port %d is taken by frontend %q", f.Port, ports[f.Port])
	case len(f.Backends) == 0:
		return "no backend"
	}
	for _, be := range f.Backends {
		if _, _, err := net.SplitHostPort(be.Addr); err != nil || strings.ContainsAny(be.Addr, " \t\n#") {
			return fmt.Sprintf("backend %s has a bad address %q", be.Node, be.Addr)
		}
	}
	return ""
}
