package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// Reading what an upstream answered: names, types and addresses.

// canonical lower-cases a query name and drops the trailing dot.
func canonical(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

func typeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}

func stripOPT(m *dns.Msg) {
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
}

// answerAddrs returns every address in the answer section (whatever owner
// name: the end of a CNAME chain counts), plus SVCB/HTTPS address hints,
// and the smallest TTL among them.
func answerAddrs(m *dns.Msg) ([]netip.Addr, uint32) {
	var addrs []netip.Addr
	var ttl uint32
	first := true
	note := func(h *dns.RR_Header, a ...netip.Addr) {
		addrs = append(addrs, a...)
		if first || h.Ttl < ttl {
			ttl, first = h.Ttl, false
		}
	}
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
				note(&rr.Hdr, a)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(rr.AAAA.To16()); ok {
				note(&rr.Hdr, a)
			}
		case *dns.HTTPS:
			note(&rr.Hdr, svcbHints(&rr.SVCB)...)
		case *dns.SVCB:
			note(&rr.Hdr, svcbHints(rr)...)
		}
	}
	return addrs, ttl
}

func svcbHints(rr *dns.SVCB) []netip.Addr {
	var out []netip.Addr
	for _, kv := range rr.Value {
		var ips []net.IP
		switch kv := kv.(type) {
		case *dns.SVCBIPv4Hint:
			ips = kv.Hint
		case *dns.SVCBIPv6Hint:
			ips = kv.Hint
		}
		for _, ip := range ips {
			if a, ok := netip.AddrFromSlice(ip); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// answerStrings lists the answer section's addresses and CNAME targets.
func answerStrings(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		case *dns.CNAME:
			out = append(out, canonical(rr.Target))
		}
	}
	return out
}
