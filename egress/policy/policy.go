// Package policy parses the egress inputs of the Action (`egress-policy`,
// `allowed-endpoints`, compatible with StepSecurity Harden-Runner) and
// compiles them into an immutable Policy that the DNS resolver asks which
// ports a name may be reached on, and from which the firewall takes its
// static address sets. It is pure: no I/O, no logging, no package state.
package policy

import (
	"cmp"
	"iter"
	"slices"
)

// Policy is the compiled, immutable egress policy. It is safe for
// concurrent use; a nil *Policy is not valid. Build one with New.
type Policy struct {
	mode  Mode
	exact map[string]match // name -> ports
	wild  map[string]match // domain D of "*.D" -> ports
	// The entries, each group in canonical order: user names, user
	// addresses, implicit names, implicit addresses. Addresses are packed
	// (addrEntry): a policy of 100,000 of them is what large ones are.
	names     []Endpoint
	addrs     []addrEntry
	userNames int           // names[:userNames] are the user's
	userAddrs int           // addrs[:userAddrs] are the user's
	ranges    []packedRange // the address entries, merged (MergeRanges)
}

// match is what one map key allows.
type match struct {
	ports []uint16 // sorted, unique
	user  bool     // at least one of the ports came from a user entry
}

// New compiles a policy from the user's entries (from ParseEndpoints) and,
// if includeImplicit, the built-in list (Implicit). User entries are taken as
// the user's (Implicit is cleared); an implicit entry equal to a user entry is
// dropped. Entries built by hand are normalized the way ParseEndpoints would
// (lower-case name, no trailing dot, a leading "*." turned into Wildcard,
// masked prefix); an entry with neither a Host nor a valid Prefix is ignored.
// New does not keep user.
func New(mode Mode, user []Endpoint, includeImplicit bool) *Policy {
	p := &Policy{mode: mode, exact: map[string]match{}, wild: map[string]match{}}
	users := Canonical(slices.Clone(user))
	var implicit []Endpoint
	if includeImplicit {
		for _, e := range Implicit() {
			n, ok := normalize(e)
			if !ok {
				continue
			}
			if _, dup := slices.BinarySearchFunc(users, n, compareEndpoints); !dup {
				n.Implicit = true
				implicit = append(implicit, n)
			}
		}
		implicit = sortUnique(implicit)
	}
	// Sorting and compacting rather than a set of seen entries: a policy
	// of 100,000 entries is then one slice, not a map beside it. Names
	// sort before addresses, so each group splits in two.
	addrs := 0
	for _, e := range users {
		addrs += boolInt(e.Host == "")
	}
	for _, e := range implicit {
		addrs += boolInt(e.Host == "")
	}
	p.names = make([]Endpoint, 0, len(users)+len(implicit)-addrs)
	p.addrs = make([]addrEntry, 0, addrs)
	ranges := make([]AddrRange, 0, addrs)
	for i, group := range [][]Endpoint{users, implicit} {
		split, _ := slices.BinarySearchFunc(group, Endpoint{}, func(e, _ Endpoint) int {
			return cmp.Compare(boolInt(e.Host == ""), 1)
		})
		p.names = append(p.names, group[:split]...)
		for _, e := range group[split:] {
			p.addrs = append(p.addrs, packEntry(e))
			ranges = append(ranges, PrefixRange(e.Prefix, e.Port))
		}
		if i == 0 {
			p.userNames, p.userAddrs = len(p.names), len(p.addrs)
		}
	}
	for _, e := range p.names {
		m := p.exact
		if e.Wildcard {
			m = p.wild
		}
		cur := m[e.Host]
		if i, found := slices.BinarySearch(cur.ports, e.Port); !found {
			cur.ports = slices.Insert(cur.ports, i, e.Port)
		}
		cur.user = cur.user || !e.Implicit
		m[e.Host] = cur
	}
	// MergeRanges works in place: copy out what is left, so that the
	// unmerged list (one range per entry) is not kept alive behind it.
	merged := MergeRanges(ranges)
	p.ranges = make([]packedRange, len(merged))
	for i, r := range merged {
		p.ranges[i] = packRange(r)
	}
	return p
}

// Canonical returns eps normalized the way New takes them (see New), in
// canonical order, without repeats, with Implicit cleared. It works in
// place: the result shares eps's array.
func Canonical(eps []Endpoint) []Endpoint {
	out := eps[:0]
	for _, e := range eps {
		if n, ok := normalize(e); ok {
			out = append(out, n)
		}
	}
	return slices.Clip(sortUnique(out))
}

// sortUnique sorts eps in canonical order and drops repeats, in place.
func sortUnique(eps []Endpoint) []Endpoint {
	slices.SortFunc(eps, compareEndpoints)
	return slices.Compact(eps)
}

// normalize returns e the way ParseEndpoints would have produced it, with
// Implicit cleared; ok is false if e names nothing.
func normalize(e Endpoint) (Endpoint, bool) {
	e.Implicit = false
	if e.Host == "" {
		if !e.Prefix.IsValid() {
			return Endpoint{}, false
		}
		if e.Prefix.Addr().Zone() != "" {
			return Endpoint{}, false
		}
		n, _ := addrEndpoint(e.Prefix, e.Port)
		return n, true
	}
	host := asciiLower(e.Host)
	if len(host) > 0 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	if len(host) > 2 && host[0] == '*' && host[1] == '.' {
		host, e.Wildcard = host[2:], true
	}
	if host == "" {
		return Endpoint{}, false
	}
	return Endpoint{Host: host, Wildcard: e.Wildcard, Port: e.Port}, true
}

// Mode returns the egress policy the Policy was built with.
func (p *Policy) Mode() Mode { return p.mode }

// Ports returns the ports, sorted, on which the DNS name may be reached, or
// nil if no entry allows it. name may be in any case and may end in a dot.
// implicit is true when only built-in entries matched. Ports answers by the
// entries alone, in either mode; what Audit does with a nil answer is the
// caller's business. The result is a new slice, the only allocation.
//
// name is matched label by label as the wire carries it: it must be a host
// name, labels of 1-63 letters, digits, '-' or '_' (kept for SRV-like names
// such as _dmarc) joined by dots, or nothing matches it. That is the
// canonical form: miekg/dns's text form writes a label that holds a dot, a
// backslash, a space, NUL or any other byte as an escape (`x\.allowed`,
// `\000`), so such a label never matches an entry, exact or wildcard, and
// `x\.allowed.test` (one label "x.allowed" under "test") is not under
// allowed.test. TLS SNI and HTTP Host names are checked by the same rule.
func (p *Policy) Ports(name string) (ports []uint16, implicit bool) {
	var buf [maxName + 1]byte
	n := len(name)
	if n > 0 && name[n-1] == '.' {
		n--
	}
	if n == 0 || n > maxName {
		return nil, false
	}
	// Lower-case into buf and refuse empty, over-long and non-host-name
	// labels; map lookups keyed by string(buf[...]) do not allocate.
	label := 0
	for i := 0; i < n; i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		case c == '.':
			if label == 0 {
				return nil, false
			}
			label = -1
		default:
			return nil, false // an escape (`\.`, `\000`) or a byte no host name has
		}
		if label++; label > maxLabel {
			return nil, false
		}
		buf[i] = c
	}
	if label == 0 {
		return nil, false
	}

	var (
		hits  [8][]uint16 // the first matches; more are found again below
		nhits int
		total int
		user  bool
	)
	if m, ok := p.exact[string(buf[:n])]; ok {
		hits[0], nhits, total, user = m.ports, 1, len(m.ports), m.user
	}
	if len(p.wild) > 0 {
		for i := 0; i < n; i++ {
			if buf[i] != '.' {
				continue
			}
			if m, ok := p.wild[string(buf[i+1:n])]; ok {
				if nhits < len(hits) {
					hits[nhits] = m.ports
				}
				nhits++
				total += len(m.ports)
				user = user || m.user
			}
		}
	}
	if nhits == 0 {
		return nil, false
	}
	out := make([]uint16, 0, total)
	if nhits <= len(hits) {
		for _, ps := range hits[:nhits] {
			out = append(out, ps...)
		}
	} else {
		// A name under more wildcards than hits holds: walk again rather
		// than allocate a second slice.
		out = append(out, p.exact[string(buf[:n])].ports...)
		for i := 0; i < n; i++ {
			if buf[i] == '.' {
				out = append(out, p.wild[string(buf[i+1:n])].ports...)
			}
		}
	}
	if nhits > 1 {
		slices.Sort(out)
		out = slices.Compact(out)
	}
	return out, !user
}

// Prefixes yields the address and CIDR entries, user entries then implicit
// ones, each group in canonical order: the firewall's static sets.
func (p *Policy) Prefixes() iter.Seq[Endpoint] {
	return func(yield func(Endpoint) bool) {
		for _, e := range p.addrs {
			if !yield(e.endpoint()) {
				return
			}
		}
	}
}

// Endpoints yields every entry, user entries then implicit ones, each group
// in canonical order, without duplicates. Nothing is copied: a policy of
// 100,000 entries is held once however many parts read it.
func (p *Policy) Endpoints() iter.Seq[Endpoint] {
	return func(yield func(Endpoint) bool) {
		groups := [2]struct {
			names []Endpoint
			addrs []addrEntry
		}{
			{p.names[:p.userNames], p.addrs[:p.userAddrs]},
			{p.names[p.userNames:], p.addrs[p.userAddrs:]},
		}
		for _, g := range groups {
			for _, e := range g.names {
				if !yield(e) {
					return
				}
			}
			for _, e := range g.addrs {
				if !yield(e.endpoint()) {
					return
				}
			}
		}
	}
}

// Len returns the number of entries Endpoints yields.
func (p *Policy) Len() int { return len(p.names) + len(p.addrs) }
