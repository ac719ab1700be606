package policy

import (
	"cmp"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// DefaultPort is the port of an entry that names none.
const DefaultPort = 443

// Endpoint is one allowed destination: a DNS name (exact, or every name
// under a domain) or an address prefix, on one port. Endpoints are values;
// the zero Endpoint allows nothing.
// Its JSON form is its fields (package settings hands endpoints to the
// daemon so, parsed once).
type Endpoint struct {
	Host     string       `json:"host,omitempty"`     // lower-case name without trailing dot, without "*." for wildcards; "" for address entries
	Wildcard bool         `json:"wildcard,omitempty"` // "*.Host": any subdomain at any depth, not Host itself
	Prefix   netip.Prefix `json:"prefix,omitzero"`    // address entries (a single address is a /32 or /128); invalid for names
	Port     uint16       `json:"port"`
	Implicit bool         `json:"implicit,omitempty"` // from the built-in list, not from the user
}

// IsAddr reports whether e is an address or CIDR entry rather than a name.
func (e Endpoint) IsAddr() bool { return e.Host == "" && e.Prefix.IsValid() }

// String returns the canonical form of e, which ParseEndpoints parses back
// to e: "host:port", "*.host:port", "203.0.113.0/24:443", "203.0.113.7:443",
// "[2001:db8::1]:443", "[2001:db8::/32]:443". An Endpoint with neither a
// Host nor a valid Prefix prints as "invalid:port".
func (e Endpoint) String() string {
	port := strconv.Itoa(int(e.Port))
	switch {
	case e.Host != "" && e.Wildcard:
		return "*." + e.Host + ":" + port
	case e.Host != "":
		return e.Host + ":" + port
	case !e.Prefix.IsValid():
		return "invalid:" + port
	}
	s := e.Prefix.String()
	if e.Prefix.IsSingleIP() {
		s = e.Prefix.Addr().String()
	}
	if e.Prefix.Addr().Is6() {
		return "[" + s + "]:" + port
	}
	return s + ":" + port
}

// compareEndpoints is the canonical order: names before addresses; names by
// host, the exact name before its wildcard; addresses IPv4 first, by address
// then prefix length; then by port. Implicit is not compared.
func compareEndpoints(a, b Endpoint) int {
	if c := cmp.Compare(boolInt(a.Host == ""), boolInt(b.Host == "")); c != 0 {
		return c
	}
	if a.Host != "" {
		if c := strings.Compare(a.Host, b.Host); c != 0 {
			return c
		}
		if c := cmp.Compare(boolInt(a.Wildcard), boolInt(b.Wildcard)); c != 0 {
			return c
		}
	} else {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()); c != 0 {
			return c
		}
	}
	return cmp.Compare(a.Port, b.Port)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// EntryError is one `allowed-endpoints` entry that could not be parsed.
// ParseEndpoints joins one EntryError per bad entry with errors.Join.
type EntryError struct {
	Entry  string // the entry as the user wrote it
	Reason string // why it was refused, e.g. "port 99999 is out of range 1-65535"
}

// Error returns `allowed-endpoints: entry "ENTRY": REASON`.
func (e *EntryError) Error() string {
	return fmt.Sprintf("allowed-endpoints: entry %q: %s", e.Entry, e.Reason)
}

// isSeparator reports whether r separates entries: white space or a comma,
// so YAML `|` blocks (newlines), `>` blocks (spaces) and comma lists all work.
func isSeparator(r rune) bool { return r == ',' || unicode.IsSpace(r) }

// splitEntries yields the `allowed-endpoints` input's entries, without
// a slice of them (a 100,000-entry input would be 1.6 MB more to start).
func splitEntries(s string) iter.Seq[string] { return strings.FieldsFuncSeq(s, isSeparator) }

// ParseEndpoints parses the `allowed-endpoints` input: entries of the forms
// host[:port], *.domain[:port], IPv4[/len][:port], [IPv6[/len]][:port] or a
// bare IPv6[/len] (without a port), separated by any mix of white space and
// commas; the port defaults to 443. Names are lower-cased and lose a trailing
// dot, prefixes are masked, duplicates are merged, and the result is in
// canonical order. Empty input gives no entries and no error. If any entry is
// bad, the error joins one *EntryError per bad entry and no entries are
// returned.
func ParseEndpoints(s string) ([]Endpoint, error) {
	n := 0
	for range splitEntries(s) {
		n++
	}
	var (
		out  = make([]Endpoint, 0, n)
		errs []error
	)
	for entry := range splitEntries(s) {
		if coveredResultsStorage(entry) {
			continue
		}
		e, reason := parseEntry(entry)
		if reason != "" {
			errs = append(errs, &EntryError{Entry: entry, Reason: reason})
			continue
		}
		out = append(out, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return slices.Clip(sortUnique(out)), nil
}

// coveredResultsStorage reports whether entry is StepSecurity's pattern
// for GitHub's results storage, productionresultssa*.blob.core.windows.net
// (port 443 or none). Lists written for Harden-Runner carry it; our built-in
// list names those accounts one by one (see implicit.go), so the entry is
// accepted and has nothing left to add. Any other mid-label '*' is refused.
func coveredResultsStorage(entry string) bool {
	e := strings.TrimSuffix(asciiLower(entry), ":443")
	e = strings.TrimSuffix(e, ".")
	return e == "productionresultssa*.blob.core.windows.net"
}

// parseEntry parses one entry; a non-empty reason says why it is refused.
func parseEntry(entry string) (Endpoint, string) {
	if i := strings.Index(entry, "://"); i >= 0 {
		return Endpoint{}, fmt.Sprintf("URL schemes (%q) are not allowed; write host:port", entry[:i+3])
	}
	if strings.HasPrefix(entry, "[") {
		return parseBracketed(entry)
	}
	if strings.Count(entry, ":") >= 2 {
		return parseBareIPv6(entry)
	}
	host, portStr, hasPort := strings.Cut(entry, ":")
	port := uint16(DefaultPort)
	if hasPort {
		var reason string
		if port, reason = parsePort(portStr); reason != "" {
			return Endpoint{}, reason
		}
	}
	if host == "" {
		return Endpoint{}, "empty host"
	}
	if strings.Contains(host, "/") {
		if p, err := netip.ParsePrefix(host); err == nil {
			return addrEndpoint(p, port)
		}
		if looksNumeric(host[:strings.IndexByte(host, '/')]) {
			return Endpoint{}, fmt.Sprintf("%q is not a valid CIDR prefix", host)
		}
		return Endpoint{}, "URL paths are not allowed; write host:port"
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return addrEndpoint(netip.PrefixFrom(a, a.BitLen()), port)
	}
	return parseName(host, port)
}

// parseBracketed parses "[IPv6]", "[IPv6/len]", optionally followed by ":port".
func parseBracketed(entry string) (Endpoint, string) {
	end := strings.IndexByte(entry, ']')
	if end < 0 {
		return Endpoint{}, `"[" without a closing "]"`
	}
	inside, rest := entry[1:end], entry[end+1:]
	port := uint16(DefaultPort)
	switch {
	case rest == "":
	case rest[0] == ':':
		var reason string
		if port, reason = parsePort(rest[1:]); reason != "" {
			return Endpoint{}, reason
		}
	default:
		return Endpoint{}, fmt.Sprintf(`unexpected %q after "]"; write [address]:port`, rest)
	}
	if inside == "" {
		return Endpoint{}, "empty host"
	}
	p, reason := parseIPv6(inside)
	if reason != "" {
		return Endpoint{}, reason
	}
	if p.Addr().Is4() {
		return Endpoint{}, "brackets are only for IPv6 addresses; write an IPv4 address without them"
	}
	return addrEndpoint(p, port)
}

// parseBareIPv6 parses an unbracketed entry with two or more colons, which
// can only be an IPv6 address or prefix without a port.
func parseBareIPv6(entry string) (Endpoint, string) {
	p, reason := parseIPv6(entry)
	if reason != "" {
		return Endpoint{}, reason + "; an IPv6 address with a port is written [address]:port"
	}
	return addrEndpoint(p, DefaultPort)
}

// parseIPv6 parses an address or prefix written inside brackets or bare.
func parseIPv6(s string) (netip.Prefix, string) {
	if strings.Contains(s, "%") {
		return netip.Prefix{}, fmt.Sprintf("%q has an IPv6 zone, which is not allowed", s)
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Sprintf("%q is not a valid CIDR prefix", s)
		}
		return p, ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Sprintf("%q is not a valid IP address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), ""
}

// addrEndpoint masks p, turns IPv4-mapped IPv6 into IPv4 (the firewall sees
// IPv4 traffic as IPv4), and builds the endpoint.
func addrEndpoint(p netip.Prefix, port uint16) (Endpoint, string) {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return Endpoint{Prefix: p.Masked(), Port: port}, ""
}

// parsePort parses a decimal port 1-65535.
func parsePort(s string) (uint16, string) {
	if s == "" {
		return 0, "empty port after \":\""
	}
	if strings.Contains(s, "/") {
		return 0, "URL paths are not allowed; write host:port"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Sprintf("port %q is not a number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Sprintf("port %s is out of range 1-65535", s)
	}
	return uint16(n), ""
}

// looksNumeric reports whether s has only digits and dots, i.e. the user
// meant an IPv4 address.
func looksNumeric(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// maxName is the longest DNS name in text form, without the trailing dot.
const maxName = 253

// maxLabel is the longest DNS label.
const maxLabel = 63

// parseName validates and normalizes a DNS name or "*."-wildcard.
func parseName(host string, port uint16) (Endpoint, string) {
	for i := 0; i < len(host); i++ {
		if host[i] >= 0x80 {
			return Endpoint{}, "non-ASCII name; write its punycode (xn--) form"
		}
	}
	name := asciiLower(host)
	e := Endpoint{Port: port}
	if rest, ok := strings.CutPrefix(name, "*."); ok {
		e.Wildcard, name = true, rest
		if name == "" || name == "." {
			return Endpoint{}, `a wildcard needs a domain after "*.", as in "*.example.com"`
		}
	}
	name = strings.TrimSuffix(name, ".")
	if strings.Contains(name, "*") {
		reason := `"*" is only allowed as the whole first label, as in "*.example.com"`
		if strings.HasPrefix(name, "productionresultssa") && strings.HasSuffix(name, ".blob.core.windows.net") {
			reason += "; GitHub's results storage productionresultssa0-19.blob.core.windows.net is in the built-in list, so this entry can be removed"
		}
		return Endpoint{}, reason
	}
	if name == "" {
		return Endpoint{}, "empty host"
	}
	written := len(name)
	if e.Wildcard {
		written += 2
	}
	if written > maxName {
		return Endpoint{}, fmt.Sprintf("name is %d characters long; the limit is %d", written, maxName)
	}
	last := ""
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return Endpoint{}, "empty label (\"..\" or a leading dot)"
		}
		if len(label) > 63 {
			return Endpoint{}, fmt.Sprintf("label %q is %d characters long; the limit is 63", label, len(label))
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return Endpoint{}, fmt.Sprintf("%q is not allowed in a host name (letters, digits, \"-\", \"_\" and dots are)", c)
			}
		}
		last = label
	}
	if looksNumeric(last) {
		if e.Wildcard {
			return Endpoint{}, "a wildcard must be over a DNS name, not an address"
		}
		return Endpoint{}, fmt.Sprintf("%q is not a valid IPv4 address, and a name's last label cannot be all digits", host)
	}
	e.Host = name
	return e, ""
}
