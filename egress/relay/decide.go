package relay

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/harden-runner/harden-runner/egress/policy"
)

// kind is what the first bytes of a connection turned out to be.
type kind int

const (
	kindOther     kind = iota // neither TLS nor HTTP/1: no name to check
	kindTLS                   // a ClientHello
	kindHTTP                  // an HTTP/1 request head
	kindMalformed             // started as TLS or HTTP but did not parse
)

func (k kind) String() string {
	switch k {
	case kindTLS:
		return "tls"
	case kindHTTP:
		return "http"
	case kindMalformed:
		return "malformed"
	}
	return "other"
}

// sniffed is what the relay read from a connection before deciding.
type sniffed struct {
	kind kind
	name string // SNI or Host, "" if none; an IP literal counts as none
	err  error  // why kindMalformed
}

// decider holds what a verdict depends on; decide is pure given it.
type decider struct {
	pol      *policy.Policy
	resolved func(name string, a netip.Addr) bool
	namesOf  func(a netip.Addr) []string
}

// decide says whether a connection to dst that began as s may go through,
// and if not, why. The rules:
//   - dst within an address/CIDR entry for its port: allowed, whatever it carries;
//   - TLS or HTTP naming a host: allowed only if the policy allows that name
//     on dst's port and our resolver answered that name with dst's address;
//   - TLS without SNI, HTTP without Host, or naming an IP: only the first rule;
//   - anything else (SSH, a server-first protocol...): allowed if dst's
//     address was the answer for some name the policy allows on that port.
func (d *decider) decide(s sniffed, dst netip.AddrPort) (bool, string) {
	a, port := dst.Addr().Unmap(), dst.Port()
	if d.pol.AllowsAddr(a, port) {
		return true, ""
	}
	switch {
	case s.kind == kindMalformed:
		return false, fmt.Sprintf("malformed %v", s.err)
	case s.kind != kindOther && s.name == "":
		if s.kind == kindTLS {
			return false, "TLS without a server name (SNI) to an address no entry names"
		}
		return false, "HTTP without a Host name to an address no entry names"
	case s.kind != kindOther:
		ports, _ := d.pol.Ports(s.name)
		if !slices.Contains(ports, port) {
			return false, fmt.Sprintf("%s is not allowed on port %d", displayName(s.name), port)
		}
		if !d.resolved(s.name, a) {
			return false, fmt.Sprintf("%s was not answered with %s by the agent's resolver", displayName(s.name), a)
		}
		return true, ""
	}
	for _, n := range d.namesOf(a) {
		if ports, _ := d.pol.Ports(n); slices.Contains(ports, port) {
			return true, ""
		}
	}
	return false, fmt.Sprintf("no allowed name on port %d was answered with %s", port, a)
}

// displayName is a name fit for the journal: as is if it could be a host
// name, else Go-quoted and cut to 255 bytes (the relay reads at most 64 KiB
// of SNI; the journal need not).
func displayName(n string) string {
	ok := len(n) <= 253
	for i := 0; ok && i < len(n); i++ {
		c := n[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':'
	}
	if ok {
		return n
	}
	if len(n) > 255 {
		n = n[:255]
	}
	return strconv.Quote(n)
}

// nameOrNone drops a name that is an IP literal: connecting to an address
// by its own literal proves nothing about a name.
func nameOrNone(n string) string {
	if _, err := netip.ParseAddr(n); err == nil {
		return ""
	}
	return n
}
