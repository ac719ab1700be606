package resolver

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// Where the machine's resolver configuration lives.
const (
	ResolvConf            = "/etc/resolv.conf"
	ResolvedUpstreamsConf = "/run/systemd/resolve/resolv.conf"
)

// SystemUpstreams returns the DNS servers the machine used before we
// started: the nameservers of resolvConf, or, when those are all loopback
// stubs (systemd-resolved's 127.0.0.53), the real servers behind the stub
// from resolvedConf. Asking a local stub would loop: its own upstream
// queries are redirected back to us.
func SystemUpstreams(resolvConf, resolvedConf string) ([]netip.AddrPort, error) {
	b, err := os.ReadFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("resolver: read %s: %w", resolvConf, err)
	}
	ups := ParseResolvConf(b)
	if nonLoopback(ups) {
		return ups, nil
	}
	b, err = os.ReadFile(resolvedConf)
	if err != nil {
		return nil, fmt.Errorf("resolver: %s names only local stubs %v and %s cannot be read (%w); pass the upstream servers explicitly", resolvConf, ups, resolvedConf, err)
	}
	ups2 := ParseResolvConf(b)
	if !nonLoopback(ups2) {
		return nil, errors.New("resolver: no non-loopback DNS server in " + resolvConf + " or " + resolvedConf + "; pass the upstream servers explicitly")
	}
	return ups2, nil
}

func nonLoopback(ups []netip.AddrPort) bool {
	for _, u := range ups {
		if u.Addr().IsLoopback() {
			return false
		}
	}
	return len(ups) > 0
}

// ParseResolvConf returns the nameserver addresses of a resolv.conf, port
// 53, in file order. Malformed lines are skipped; IPv6 zones are kept.
func ParseResolvConf(b []byte) []netip.AddrPort {
	var out []netip.AddrPort
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil {
			continue
		}
		out = append(out, netip.AddrPortFrom(a.Unmap(), 53))
	}
	return out
}

// ParseResolvConfFile is ParseResolvConf of a file; nil if it cannot be read.
func ParseResolvConfFile(path string) []netip.AddrPort {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return ParseResolvConf(b)
}

// ParseUpstream parses a user-given upstream: an address, optionally with a
// port ("192.0.2.1", "192.0.2.1:5353", "[2001:db8::1]:53", "2001:db8::1").
func ParseUpstream(s string) (netip.AddrPort, error) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Port() == 0 {
			return netip.AddrPort{}, fmt.Errorf("upstream %q: port 0", s)
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("upstream %q: not an address or address:port", s)
	}
	return netip.AddrPortFrom(a.Unmap(), 53), nil
}
