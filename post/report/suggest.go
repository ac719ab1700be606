package report

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/event"
)

// SuggestedPolicy is the allow-list that would let this run pass with
// egress-policy: block. See the package comment for what goes in it.
type SuggestedPolicy struct {
	// AllowedEndpoints is the host:port list of endpoints the run used
	// and reached (allowed, or audited in audit mode), in the policy
	// package's canonical order (names, then addresses).
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
	// WithBlock is the ready-to-paste `with:` block of the workflow step:
	// AllowedEndpoints, nothing from Review.
	WithBlock string `json:"with_block"`
	// Review lists endpoints the run tried and was refused (every
	// connection blocked, or a blocked DNS name): they may be what an
	// attacker wanted out, so they are for a person to review before
	// allowing, never in AllowedEndpoints or WithBlock. Empty in audit
	// mode, where nothing is refused.
	Review []SuggestedEndpoint `json:"review"`
}

// ReviewEndpoints returns the endpoints of Review, in order.
func (sp SuggestedPolicy) ReviewEndpoints() []string {
	out := make([]string, 0, len(sp.Review))
	for _, e := range sp.Review {
		out = append(out, e.Endpoint)
	}
	return out
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
	// reasonDirectIP explains an address entry for an address that some
	// name resolved to: not the connecting process's lookup, so not its name.
	reasonDirectIP = "connected by address: neither its process nor its parents looked up a name for it"
)

func suggest(r *Report) SuggestedPolicy {
	sp := SuggestedPolicy{AllowedEndpoints: []string{}, Entries: []SuggestedEndpoint{},
		ImplicitExcluded: []string{}, Rejected: []Rejected{}, Review: []SuggestedEndpoint{}}
	implicit := compileImplicit(r.ImplicitAllowed)
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
		addr, err := netip.ParseAddr(e.IP)
		if err == nil {
			addr = addr.Unmap().WithZone("")
		}
		if host == "" {
			if err != nil {
				reject(e.IP, reasonBadIP)
				continue
			}
			host = hostOf(addr)
		}
		if e.Port == 0 {
			reject(e.Protocol+" "+host, reasonNoPort)
			continue
		}
		ep := host + ":" + strconv.Itoa(int(e.Port))
		if implicit.match(domain, addr, e.Port) {
			if !excluded[ep] {
				excluded[ep] = true
				sp.ImplicitExcluded = append(sp.ImplicitExcluded, ep)
			}
			continue
		}
		reason := checkObserved(ep)
		if reason != "" {
			reject(ep, reason)
			continue
		}
		s := entries[ep]
		if s == nil {
			s = &SuggestedEndpoint{Endpoint: ep, Source: "flow"}
			entries[ep] = s
		}
		s.Count += e.Count
		if domain == "" && e.OtherDomainsTotal > 0 {
			s.Reason = reasonDirectIP
		}
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
		if implicit.match(name, netip.Addr{}, 443) {
			continue
		}
		reason := checkObserved(ep)
		if reason != "" {
			reject(ep, reason)
			continue
		}
		s := entries[ep]
		if s == nil {
			s = &SuggestedEndpoint{Endpoint: ep, Source: "dns", Reason: reasonDNSOnly,
				Verdicts: []event.Verdict{event.Blocked}}
			entries[ep] = s
		}
		s.Count += d.Count
	}
	keys := make([]string, 0, len(entries))
	for ep, s := range entries {
		slices.SortFunc(s.Verdicts, func(x, y event.Verdict) int { return cmp.Compare(verdictRank(x), verdictRank(y)) })
		keys = append(keys, ep)
	}
	for _, ep := range canonicalOrder(keys) {
		s := entries[ep]
		if s == nil {
			continue // cannot happen: every key passed checkObserved
		}
		if reached(s.Verdicts) {
			sp.Entries = append(sp.Entries, *s)
			sp.AllowedEndpoints = append(sp.AllowedEndpoints, s.Endpoint)
		} else {
			sp.Review = append(sp.Review, *s)
		}
	}
	sp.ImplicitExcluded = canonicalOrder(sp.ImplicitExcluded)
	sp.RejectedCount = len(sp.Rejected)
	sp.WithBlock = withBlock(sp.AllowedEndpoints)
	return sp
}

// reached reports whether some connection to an endpoint got through
// (allowed, or let through in audit mode).
func reached(vs []event.Verdict) bool {
	return slices.Contains(vs, event.Allowed) || slices.Contains(vs, event.Audit)
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
		if checkObserved(ep) != "" { // defence in depth
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

// checkObserved says why an endpoint built from observed (untrusted)
// data may not be suggested, or "" if it may: it must parse, with the
// grammar the Action enforces (egress/policy), as exactly one entry that
// is already in canonical form (what is pasted is what was seen) and not
// a wildcard.
func checkObserved(ep string) string {
	eps, err := policy.ParseEndpoints(ep)
	switch {
	case err == nil && len(eps) == 1 && eps[0].Wildcard:
		return reasonWildcard
	case err != nil || len(eps) != 1 || eps[0].String() != ep:
		return reasonGrammar
	}
	return ""
}

// canonicalOrder sorts distinct canonical endpoints (as checkObserved
// accepts them) in the policy package's order: names, then addresses.
func canonicalOrder(eps []string) []string {
	parsed, err := policy.ParseEndpoints(strings.Join(eps, " "))
	if err != nil || len(parsed) != len(eps) {
		return slices.Sorted(slices.Values(eps)) // not canonical: plain order
	}
	out := make([]string, len(parsed))
	for i, e := range parsed {
		out[i] = e.String()
	}
	return out
}

// implicitSet is the Start record's implicit endpoints, compiled by the
// policy package that enforces them.
type implicitSet struct {
	pol *policy.Policy
}

// compileImplicit compiles the Start record's implicit_allowed entries;
// entries that do not parse are ignored (they came from the agent, which
// printed them from parsed endpoints).
func compileImplicit(list []string) implicitSet {
	var eps []policy.Endpoint
	for _, s := range list {
		if e, err := policy.ParseEndpoints(s); err == nil {
			eps = append(eps, e...)
		}
	}
	return implicitSet{pol: policy.New(policy.Block, eps, false)}
}

// match reports whether a destination (domain may be "", addr invalid)
// is one the Action always allows, by the policy package's matching:
// "*.x.com" matches names below x.com at any depth, not x.com itself; an
// address entry matches the flow's address.
func (s implicitSet) match(domain string, addr netip.Addr, port uint16) bool {
	if domain != "" {
		ports, _ := s.pol.Ports(domain)
		if slices.Contains(ports, port) {
			return true
		}
	}
	return addr.IsValid() && s.pol.AllowsAddr(addr, port)
}
