package bootstrap

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/cloudctl/cloudctl/api"
)

func validName(name string) error { return api.ValidNodeName(name) }

// DefaultName is the node name used when none is given: the short hostname, lowercased.
func DefaultName() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return strings.ToLower(strings.SplitN(h, ".", 2)[0])
}

// WithPort adds the default cloudd port to a bare host.
func WithPort(addr string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(addr, fmt.Sprint(api.DefaultPort))
}

// DefaultAddress picks the address for cluster traffic: the first IPv4
// address of the interface holding the default route, else the first
// non-loopback address of an up interface. It reads the routing table only.
func DefaultAddress() (string, error) {
	if ifname := defaultRouteInterface("/proc/net/route"); ifname != "" {
		if ifc, err := net.InterfaceByName(ifname); err == nil {
			if ip := firstIPv4(ifc); ip != "" {
				return ip, nil
			}
		}
	}
	ifcs, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("list network interfaces: %w", err)
	}
	for _, ifc := range ifcs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		if ip := firstIPv4(&ifc); ip != "" {
			return ip, nil
		}
	}
	return "", fmt.Errorf("this machine has no usable network address: configure one, or pass --address")
}

func firstIPv4(ifc *net.Interface) string {
	addrs, err := ifc.Addrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() && !ipn.IP.IsLinkLocalUnicast() {
			return ipn.IP.String()
		}
	}
	return ""
}

func defaultRouteInterface(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 2 && fields[1] == "00000000" && fields[0] != "Iface" {
			return fields[0]
		}
	}
	return ""
}
