package agent

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Where DHCP clients keep their leases: systemd-networkd (GitHub's Ubuntu
// runners) and ISC dhclient.
var leaseGlobs = []string{"/run/systemd/netif/leases/*", "/var/lib/dhcp/dhclient*.leases"}

// dhcpServers returns the servers of the machine's current DHCP leases, so
// the firewall lets lease renewals to them through (and nothing else on
// those ports). A missing or unreadable lease only means renewals go by
// broadcast.
func dhcpServers() []netip.Addr {
	var out []netip.Addr
	for _, g := range leaseGlobs {
		paths, _ := filepath.Glob(g)
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil {
				out = append(out, parseLeaseServers(b)...)
			}
		}
	}
	return out
}

// parseLeaseServers reads the server addresses out of a systemd-networkd
// lease (SERVER_ADDRESS=a.b.c.d) or a dhclient lease file
// (option dhcp-server-identifier a.b.c.d;). Lines it does not know are
// ignored.
func parseLeaseServers(b []byte) []netip.Addr {
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var v string
		if s, ok := strings.CutPrefix(line, "SERVER_ADDRESS="); ok {
			v = s
		} else if s, ok := strings.CutPrefix(line, "option dhcp-server-identifier "); ok {
			v = strings.TrimSuffix(s, ";")
		} else {
			continue
		}
		if a, err := netip.ParseAddr(strings.TrimSpace(v)); err == nil && !a.IsUnspecified() {
			out = append(out, a.Unmap())
		}
	}
	return out
}
