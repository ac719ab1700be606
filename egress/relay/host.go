package relay

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
)

// maxHeader is the most of an HTTP/1 request head the relay reads to find
// the Host header.
const maxHeader = 8 << 10

// httpLike says whether b (after any empty lines) may be an HTTP/1 request
// as a lenient server reads one.
type httpLike int

const (
	notHTTP   httpLike = iota // another protocol
	maybeHTTP                 // more bytes are needed to tell
	isHTTP                    // a request line: check its Host
)

// classifyHTTP looks at the first line. It is HTTP if the line is a token
// (any method: servers accept "get" and made-up ones), white space, and
// ends in a field starting "HTTP/" (any case); it is not if a byte no
// method has comes before the first space (an SSH banner without a
// comment, a binary message), or if the first line ends without that form
// (an SSH banner with one). HTTP/0.9 ("GET /", no version, no Host) is not
// HTTP here: it can only reach the address's default site.
func classifyHTTP(b []byte) httpLike {
	sp := -1
	for i, c := range b {
		if c == ' ' || c == '\t' {
			sp = i
			break
		}
		if !isTokenChar(c) {
			return notHTTP
		}
	}
	switch {
	case sp < 0:
		return maybeHTTP
	case sp == 0:
		return isHTTP // white space first: let the strict parser refuse it
	}
	lf := bytes.IndexByte(b, '\n')
	if lf < 0 {
		if len(b) >= maxHeader {
			return isHTTP // let the parser refuse the over-long head
		}
		return maybeHTTP
	}
	f := bytes.Fields(b[:lf])
	if len(f) >= 3 && len(f[len(f)-1]) >= 5 && strings.EqualFold(string(f[len(f)-1][:5]), "HTTP/") {
		return isHTTP
	}
	return notHTTP
}

// isTokenChar reports whether c may be in an HTTP token (RFC 9110 tchar).
func isTokenChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// parseHTTPHost reads the Host header of the first HTTP/1 request in b. It
// returns errNeedMore while b ends inside the request head, another error
// for a head that is malformed, too long, has two Host headers, or names
// its target in absolute form ("GET http://other/", which a server may
// honour over Host) or as CONNECT. The result has no port and no
// brackets; "" means the request has no Host (HTTP/1.0). b is not retained.
func parseHTTPHost(b []byte) (string, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) >= maxHeader {
			return "", errors.New("HTTP request head too long")
		}
		return "", errNeedMore
	}
	lines := bytes.Split(b[:end], []byte("\r\n"))
	for _, l := range lines {
		for _, c := range l {
			// A bare CR or LF ends a line for lenient servers: a Host hidden
			// behind one would be read by them and not by us.
			if c < ' ' && c != '\t' || c == 0x7f {
				return "", errors.New("control byte in HTTP request head")
			}
		}
	}
	req := strings.Fields(string(lines[0]))
	if len(req) != 3 || !strings.HasPrefix(req[2], "HTTP/1.") {
		return "", errors.New("bad HTTP request line")
	}
	if req[0] == "CONNECT" {
		return "", errors.New("HTTP CONNECT")
	}
	if t := req[1]; t != "*" && !strings.HasPrefix(t, "/") {
		return "", errors.New("HTTP request target in absolute form")
	}
	host, seen := "", false
	for _, l := range lines[1:] {
		k, v, ok := bytes.Cut(l, []byte(":"))
		if !ok {
			return "", errors.New("bad HTTP header line")
		}
		if !strings.EqualFold(string(k), "host") {
			if len(k) == 0 || k[0] == ' ' || k[0] == '\t' || bytes.ContainsAny(k, " \t") {
				return "", errors.New("bad HTTP header name") // folding or "Host :" tricks
			}
			continue
		}
		if seen {
			return "", errors.New("two Host headers")
		}
		seen = true
		host = strings.TrimSpace(string(v))
	}
	if !seen {
		return "", nil
	}
	return stripPort(host)
}

// stripPort turns a Host value into the bare name or address.
func stripPort(h string) (string, error) {
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return "", errors.New("bad IPv6 literal in Host")
		}
		if _, err := netip.ParseAddr(h[1:end]); err != nil {
			return "", errors.New("bad IPv6 literal in Host")
		}
		return h[1:end], nil
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	if h == "" {
		return "", errors.New("empty Host")
	}
	return h, nil
}
