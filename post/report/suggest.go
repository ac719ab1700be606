package report

import (
	"cmp"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/harden-runner/harden-runner/event"
)

// SuggestedPolicy is the allow-list that would let this run pass with
// egress-policy: block. See the package comment for what goes in it.
type SuggestedPolicy struct {
	// AllowedEndpoints is the host:port list, sorted by host then port.
	AllowedEndpoints []string `json:"allowed_endpoints"`
	// Entries explain AllowedEndpoints, in the same order.
	Entries []SuggestedEndpoint `json:"entries"`
	// ImplicitExcluded lists endpoints the run used that the Action allows
	// anyway (they matched an implicit_allowed entry).
	ImplicitExcluded []string `json:"implicit_excluded"`
	// Rejected lists observed destinations left out because they cannot be
	// written as a safe host:port entry; the values are untrusted data.
	Rejected      []Rejected `json:"rejected"`
	RejectedCount int        `json:"rejected_count"`
	// WithBlock is the ready-to-paste `with:` block of the workflow step.
	WithBlock string `json:"with_block"`
}

// SuggestedEndpoint is one entry of the suggested allow-list and why.
type SuggestedEndpoint struct {
	Endpoint string          `json:"endpoint"`
	Source   string          `json:"source"` // "flow" or "dns"
	Verdicts []event.Verdict `json:"verdicts,omitempty"`
	Count    int             `json:"count"` // connections, or DNS queries for source "dns"
	Reason   string          `json:"reason,omitempty"`
}

// Rejected is an observed destination that was not suggested.
type Rejected struct {
	Value  string `json:"value"`
	Reason string `json:"reason"`
}

// Reasons used in the suggested policy.
const (
	reasonDNSOnly  = "dns only, port assumed"
	reasonGrammar  = "not a valid host:port"
	reasonWildcard = "observed name has a * label"
	reasonNoPort   = "protocol without ports cannot be allowed by a host:port entry"
	reasonBadIP    = "flow address is not an IP address"
)

func suggest(r *Report) SuggestedPolicy {
	sp := SuggestedPolicy{AllowedEndpoints: []string{}, Entries: []SuggestedEndpoint{},
		ImplicitExcluded: []string{}, Rejected: []Rejected{}}
	implicit := compilePatterns(r.ImplicitAllowed)
	entries := map[string]*SuggestedEndpoint{}
	excluded := map[string]bool{}
	rejected := map[Rejected]bool{}
	reject := func(value, reason string) {
		rj := Rejected{Value: value, Reason: reason}
		if !rejected[rj] {
			rejected[rj] = true
			sp.Rejected = append(sp.Rejected, rj)
		}
	}
	flowHosts := map[string]bool{}
	for _, e := range r.Egress {
		domain := normName(e.Domain)
		if domain != "" {
			flowHosts[domain] = true
		}
		host := domain
		if host == "" {
			a, err := netip.ParseAddr(e.IP)
			if err != nil {
				reject(e.IP, reasonBadIP)
				continue
			}
			host = hostOf(a)
		}
		if e.Port == 0 {
			reject(e.Protocol+" "+host, reasonNoPort)
			continue
		}
		ep := host + ":" + strconv.Itoa(int(e.Port))
		if implicit.match(domain, e.IP, e.Port) {
			if !excluded[ep] {
				excluded[ep] = true
				sp.ImplicitExcluded = append(sp.ImplicitExcluded, ep)
			}
			continue
		}
		if reason := checkObserved(ep); reason != "" {
			reject(ep, reason)
			continue
		}
		s := entries[ep]
		if s == nil {
			s = &SuggestedEndpoint{Endpoint: ep, Source: "flow"}
			entries[ep] = s
		}
		s.Count += e.Count
		if !slices.Contains(s.Verdicts, e.Verdict) {
			s.Verdicts = append(s.Verdicts, e.Verdict)
		}
	}
	for _, d := range r.DNS {
		name := normName(d.Name)
		if d.Verdict != event.Blocked || (d.Type != "A" && d.Type != "AAAA") || flowHosts[name] {
			continue
		}
		ep := name + ":443"
		if implicit.match(name, "", 443) {
			continue
		}
		if reason := checkObserved(ep); reason != "" {
			reject(ep, reason)
			continue
		}
		s := entries[ep]
		if s == nil {
			s = &SuggestedEndpoint{Endpoint: ep, Source: "dns", Reason: reasonDNSOnly}
			entries[ep] = s
		}
		s.Count += d.Count
	}
	for _, s := range entries {
		slices.SortFunc(s.Verdicts, func(x, y event.Verdict) int { return cmp.Compare(verdictRank(x), verdictRank(y)) })
		sp.Entries = append(sp.Entries, *s)
	}
	sort.Slice(sp.Entries, func(i, j int) bool { return endpointLess(sp.Entries[i].Endpoint, sp.Entries[j].Endpoint) })
	for _, s := range sp.Entries {
		sp.AllowedEndpoints = append(sp.AllowedEndpoints, s.Endpoint)
	}
	sort.Slice(sp.ImplicitExcluded, func(i, j int) bool {
		return endpointLess(sp.ImplicitExcluded[i], sp.ImplicitExcluded[j])
	})
	sp.RejectedCount = len(sp.Rejected)
	sp.WithBlock = withBlock(sp.AllowedEndpoints)
	return sp
}

// withBlock renders the step's with: block. Every endpoint has passed
// checkObserved, so none can break out of the YAML block scalar.
func withBlock(eps []string) string {
	var b strings.Builder
	b.WriteString("with:\n  egress-policy: block\n")
	if len(eps) == 0 {
		b.WriteString("  allowed-endpoints: \"\"\n")
		return b.String()
	}
	b.WriteString("  allowed-endpoints: >\n")
	for _, ep := range eps {
		if parseEndpoint(ep, false) == nil { // defence in depth
			continue
		}
		b.WriteString("    ")
		b.WriteString(ep)
		b.WriteByte('\n')
	}
	return b.String()
}

// normName lower-cases a DNS name and drops one trailing dot.
func normName(s string) string { return strings.TrimSuffix(strings.ToLower(s), ".") }

// hostOf writes an address as the host part of an endpoint.
func hostOf(a netip.Addr) string {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

func endpointLess(x, y string) bool {
	hx, px := splitEndpoint(x)
	hy, py := splitEndpoint(y)
	if hx != hy {
		return hx < hy
	}
	nx, _ := strconv.Atoi(px)
	ny, _ := strconv.Atoi(py)
	if nx != ny {
		return nx < ny
	}
	return x < y
}

func splitEndpoint(s string) (host, port string) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.HasSuffix(s, "]") {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// checkObserved says why an endpoint built from observed (untrusted) data
// may not be suggested, or "" if it may.
func checkObserved(ep string) string {
	e := parseEndpoint(ep, true)
	switch {
	case e == nil:
		return reasonGrammar
	case e.wildcard:
		return reasonWildcard
	}
	return ""
}

// endpoint is a parsed host:port.
type endpoint struct {
	host     string     // lower case, without brackets or the "*." of a wildcard
	addr     netip.Addr // valid when the host is an IP literal
	wildcard bool       // "*.host": subdomains of host at any depth
	port     uint16     // 0: any port (only in patterns)
}

// parseEndpoint parses the strict endpoint grammar
//
//	endpoint = host ":" port
//	host     = ["*."] label *("." label) | IPv4 | "[" IPv6 "]"
//	label    = 1*63( ALPHA | DIGIT | "-" | "_" )
//	port     = 1..65535 in decimal, no leading zero
//
// with the name at most 253 bytes. With needPort false the ":port" may be
// missing or "*" (any port); that form is only for implicit patterns.
// It returns nil if s does not match.
func parseEndpoint(s string, needPort bool) *endpoint {
	host, port := s, ""
	if i := strings.LastIndexByte(s, ':'); i >= 0 && !strings.HasSuffix(s, "]") {
		host, port = s[:i], s[i+1:]
	} else if needPort {
		return nil
	}
	e := &endpoint{}
	switch {
	case port == "" && !needPort:
	case port == "*" && !needPort:
	default:
		if len(port) == 0 || len(port) > 5 || port[0] == '0' {
			return nil
		}
		n := 0
		for i := 0; i < len(port); i++ {
			if port[i] < '0' || port[i] > '9' {
				return nil
			}
			n = n*10 + int(port[i]-'0')
		}
		if n > 65535 {
			return nil
		}
		e.port = uint16(n)
	}
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return nil
		}
		a, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return nil
		}
		e.addr, e.host = a, a.String()
		return e
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if !a.Is4() {
			return nil // IPv6 must be bracketed
		}
		e.addr, e.host = a, a.String()
		return e
	}
	if rest, ok := strings.CutPrefix(host, "*."); ok {
		e.wildcard = true
		host = rest
	}
	if host == "" || len(host) > 253 {
		return nil
	}
	for _, label := range strings.Split(host, ".") {
		if len(label) == 0 || len(label) > 63 {
			return nil
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return nil
			}
		}
	}
	e.host = strings.ToLower(host)
	return e
}

// patterns are compiled implicit endpoints.
type patterns []*endpoint

func compilePatterns(list []string) patterns {
	var ps patterns
	for _, s := range list {
		if e := parseEndpoint(strings.TrimSuffix(strings.TrimSpace(s), "."), false); e != nil {
			ps = append(ps, e)
		}
	}
	return ps
}

// match reports whether a destination (domain may be "", ip may be "")
// matches any pattern. "*.x.com" matches names below x.com at any depth,
// not x.com itself; an IP pattern matches the flow's address.
func (ps patterns) match(domain, ip string, port uint16) bool {
	var addr netip.Addr
	if a, err := netip.ParseAddr(ip); err == nil {
		addr = a.Unmap().WithZone("")
	}
	domain = normName(domain)
	for _, p := range ps {
		if p.port != 0 && p.port != port {
			continue
		}
		switch {
		case p.addr.IsValid():
			if addr.IsValid() && p.addr.Unmap() == addr {
				return true
			}
		case domain == "":
		case p.wildcard:
			if strings.HasSuffix(domain, "."+p.host) {
				return true
			}
		case domain == p.host:
			return true
		}
	}
	return false
}
