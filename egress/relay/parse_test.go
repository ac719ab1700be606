package relay

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// clientHello returns the first flight crypto/tls sends for serverName.
func clientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		c := tls.Client(a, &tls.Config{ServerName: serverName, InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
		_ = c.Handshake()
	}()
	buf := make([]byte, 64<<10)
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// fragment splits a single-record handshake into records of at most size bytes.
func fragment(rec []byte, size int) []byte {
	payload := rec[recordHeader:]
	var out []byte
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, rec[0], rec[1], rec[2])
		out = binary.BigEndian.AppendUint16(out, uint16(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

func TestParseClientHello(t *testing.T) {
	hello := clientHello(t, "allowed.test")
	for _, c := range []struct {
		name string
		b    []byte
		want string
		err  error
	}{
		{"whole", hello, "allowed.test", nil},
		{"fragmented", fragment(hello, 100), "allowed.test", nil},
		{"one-byte records", fragment(hello, 1), "allowed.test", nil},
		{"cut", hello[:len(hello)-1], "", errNeedMore},
		{"header only", hello[:3], "", errNeedMore},
		{"no sni", clientHello(t, ""), "", nil},
		{"not tls", []byte("GET / HTTP/1.1\r\n"), "", errors.New("")},
		{"alert record", []byte{21, 3, 3, 0, 2, 2, 40}, "", errors.New("")},
	} {
		got, err := parseClientHello(c.b)
		if got != c.want || (err == nil) != (c.err == nil) || (errors.Is(c.err, errNeedMore) && !errors.Is(err, errNeedMore)) {
			t.Errorf("%s: parseClientHello = %q, %v; want %q, %v", c.name, got, err, c.want, c.err)
		}
	}
}

// helloWithNames builds a minimal ClientHello with the given server_name
// extensions, each a list of host names.
func helloWithNames(exts ...[]string) []byte {
	body := make([]byte, 2+32)
	body = append(body, 0)                // session id
	body = append(body, 0, 2, 0x13, 0x01) // one cipher suite
	body = append(body, 1, 0)             // null compression
	var ex []byte
	for _, names := range exts {
		var list []byte
		for _, n := range names {
			list = append(list, serverNameHost)
			list = binary.BigEndian.AppendUint16(list, uint16(len(n)))
			list = append(list, n...)
		}
		ex = binary.BigEndian.AppendUint16(ex, extServerName)
		ex = binary.BigEndian.AppendUint16(ex, uint16(len(list)+2))
		ex = binary.BigEndian.AppendUint16(ex, uint16(len(list)))
		ex = append(ex, list...)
	}
	body = binary.BigEndian.AppendUint16(body, uint16(len(ex)))
	body = append(body, ex...)
	msg := append([]byte{handshakeHello, 0, byte(len(body) >> 8), byte(len(body))}, body...)
	rec := []byte{recordHandshake, 3, 1}
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(msg)))
	return append(rec, msg...)
}

func TestParseClientHelloAmbiguous(t *testing.T) {
	if got, err := parseClientHello(helloWithNames([]string{"a.test"})); got != "a.test" || err != nil {
		t.Fatalf("one name: %q, %v", got, err)
	}
	for _, c := range [][][]string{
		{{"allowed.test", "evil.test"}},   // two host names in one extension
		{{"allowed.test"}, {"evil.test"}}, // two extensions
		{{""}},                            // empty name
	} {
		if got, err := parseClientHello(helloWithNames(c...)); err == nil {
			t.Errorf("%q: accepted, name %q", c, got)
		}
	}
}

// tlsServerName is the reference: the name crypto/tls's server reads from
// the same bytes (GetConfigForClient sees the parsed ClientHello), and
// whether it accepted the hello at all.
func tlsServerName(b []byte) (string, bool) {
	a, z := net.Pipe()
	defer a.Close()
	defer z.Close()
	got := make(chan string, 1)
	go func() {
		s := tls.Server(z, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			got <- h.ServerName
			return nil, errors.New("stop")
		}})
		_ = s.SetDeadline(time.Now().Add(2 * time.Second))
		_ = s.Handshake()
		close(got)
	}()
	go func() {
		_ = a.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = a.Write(b)
		_, _ = io.Copy(io.Discard, a)
	}()
	n, ok := <-got
	return n, ok
}

// FuzzParseClientHello never panics, and wherever crypto/tls's server
// accepts a ClientHello our parser reads the same server name from it.
func FuzzParseClientHello(f *testing.F) {
	f.Add(clientHello(f, "allowed.test"))
	f.Add(fragment(clientHello(f, "a.b.test"), 7))
	f.Add(clientHello(f, ""))
	f.Add(helloWithNames([]string{"a.test", "b.test"}))
	f.Add(helloWithNames([]string{"a.test"}, []string{"b.test"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, err := parseClientHello(b)
		if err != nil {
			return
		}
		if ref, ok := tlsServerName(b); ok && ref != strings.TrimSuffix(name, ".") {
			t.Fatalf("crypto/tls reads %q, we read %q", ref, name)
		}
	})
}

func TestParseHTTPHost(t *testing.T) {
	for _, c := range []struct {
		req, want string
		ok        bool
	}{
		{"GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n", "allowed.test", true},
		{"GET /x HTTP/1.1\r\nUser-Agent: c\r\nhOsT:  allowed.test:8080 \r\n\r\n", "allowed.test", true},
		{"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", "2001:db8::1", true},
		{"GET / HTTP/1.0\r\n\r\n", "", true},
		{"OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n", "a.test", true},
		{"GET / HTTP/1.1\r\nHost: a.test\r\nHost: evil.test\r\n\r\n", "", false},
		{"GET http://evil.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", "", false},
		{"CONNECT evil.test:443 HTTP/1.1\r\nHost: allowed.test\r\n\r\n", "", false},
		{"GET / HTTP/1.1\r\nHost : evil.test\r\nHost: allowed.test\r\n\r\n", "", false},
		{"GET / HTTP/1.1\r\n Host: evil.test\r\nHost: allowed.test\r\n\r\n", "", false},
		{"GET / HTTP/2.0\r\nHost: a.test\r\n\r\n", "", false},
		{"GET / HTTP/1.1\r\nHost:\r\n\r\n", "", false},
	} {
		got, err := parseHTTPHost([]byte(c.req))
		if got != c.want || (err == nil) != c.ok {
			t.Errorf("%q: %q, %v; want %q ok=%v", c.req, got, err, c.want, c.ok)
		}
	}
	if _, err := parseHTTPHost([]byte("GET / HTTP/1.1\r\nHost: a")); !errors.Is(err, errNeedMore) {
		t.Errorf("partial head: %v", err)
	}
	if _, err := parseHTTPHost(bytes.Repeat([]byte("X"), maxHeader)); err == nil || errors.Is(err, errNeedMore) {
		t.Errorf("over-long head: %v", err)
	}
}

// FuzzParseHTTPHost never panics; a Host it returns holds no line break,
// space or colon-port, and the same request with a second Host is refused.
func FuzzParseHTTPHost(f *testing.F) {
	f.Add("GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
	f.Add("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")
	f.Add("POST /a HTTP/1.1\r\nContent-Length: 3\r\nHost: x:1\r\n\r\nabc")
	f.Fuzz(func(t *testing.T, req string) {
		host, err := parseHTTPHost([]byte(req))
		if err != nil {
			return
		}
		if strings.ContainsAny(host, "\r\n") {
			t.Fatalf("%q: host %q", req, host)
		}
		end := strings.Index(req, "\r\n\r\n")
		if host != "" {
			twice := req[:end] + "\r\nHost: other\r\n\r\n"
			if _, err := parseHTTPHost([]byte(twice)); err == nil {
				t.Fatalf("%q: a second Host was accepted", twice)
			}
		}
	})
}

// TestClassifyLenientHTTP: requests a lenient HTTP server would serve are
// checked as HTTP however they start (an empty line first, a lower-case or
// made-up method); other protocols' first bytes (an SSH banner with or
// without a comment, a binary startup message) are not taken for HTTP.
func TestClassifyLenientHTTP(t *testing.T) {
	for _, c := range []struct {
		in   string
		kind kind
		name string
		done bool
	}{
		{"\r\nGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n", kindHTTP, "evil.test", true},
		{"\n\r\nGET / HTTP/1.1\r\nHost: evil.test\r\n\r\n", kindHTTP, "evil.test", true},
		{"get / HTTP/1.1\r\nHost: evil.test\r\n\r\n", kindHTTP, "evil.test", true},
		{"SSH-2.0-x / HTTP/1.1\r\nHost: evil.test\r\n\r\n", kindHTTP, "evil.test", true},
		{"GET  /  http/1.1\r\nHost: evil.test\r\n\r\n", kindMalformed, "", true}, // not 1.x as we parse it: refused, not let through
		{"GET / HTTP/1.1\r\nHost: evil", kindOther, "", false},                   // wait for the whole head
		{"GET", kindOther, "", false},
		{"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", kindOther, "", true},
		{"SSH-2.0-OpenSSH_9.6\r\n", kindOther, "", true},
		{"\x00\x00\x00\x08\x04\xd2\x16\x2f", kindOther, "", true}, // PostgreSQL SSLRequest
		{"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00", kindMalformed, "", true},
	} {
		s, done := classify([]byte(c.in), false)
		if done != c.done || (done && (s.kind != c.kind || s.name != c.name)) {
			t.Errorf("%q: %v %q done=%v; want %v %q done=%v", c.in, s.kind, s.name, done, c.kind, c.name, c.done)
		}
	}
}

// FuzzClassify: whatever the first bytes, classify never panics, and what
// it lets pass unchecked (kindOther) never has a first line a lenient HTTP
// server would take for a request: empty lines, then a method token, white
// space, and a last field starting "HTTP/".
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "\r\nget / http/1.1\r\n\r\n", "SSH-2.0-x y\r\n", "\x00\x01", "A B HTTP/1.0\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, done := classify(b, true)
		if !done || s.kind != kindOther {
			return
		}
		req := bytes.TrimLeft(b, "\r\n")
		line, _, _ := bytes.Cut(req, []byte("\n"))
		fields := bytes.Fields(line)
		if len(fields) < 3 || len(line) == 0 || line[0] == ' ' || line[0] == '\t' {
			return
		}
		for _, c := range fields[0] {
			if !isTokenChar(c) {
				return
			}
		}
		// The method must be followed by white space directly.
		if m := len(fields[0]); m >= len(line) || (line[m] != ' ' && line[m] != '\t') {
			return
		}
		if last := fields[len(fields)-1]; len(last) >= 5 && strings.EqualFold(string(last[:5]), "HTTP/") {
			t.Fatalf("%q passed as another protocol, but reads as an HTTP request", b)
		}
	})
}
