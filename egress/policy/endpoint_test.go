package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func name(host string, port uint16) Endpoint { return Endpoint{Host: host, Port: port} }
func wild(host string, port uint16) Endpoint { return Endpoint{Host: host, Wildcard: true, Port: port} }
func pfx(s string, port uint16) Endpoint {
	return Endpoint{Prefix: netip.MustParsePrefix(s), Port: port}
}

func TestParseEndpointsGood(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	name253 := strings.Repeat(strings.Repeat("b", 62)+".", 4) + "x" // 253 characters
	if len(name253) != 253 {
		t.Fatalf("test setup: name is %d long", len(name253))
	}
	tests := []struct {
		in   string
		want []Endpoint
	}{
		{"", nil},
		{" \n\t, ", nil},
		{"github.com", []Endpoint{name("github.com", 443)}},
		{"github.com:443", []Endpoint{name("github.com", 443)}},
		{"GitHub.COM.:8443", []Endpoint{name("github.com", 8443)}},
		{"github.com.:443", []Endpoint{name("github.com", 443)}},
		{"*.example.com:443", []Endpoint{wild("example.com", 443)}},
		{"*.Example.COM.", []Endpoint{wild("example.com", 443)}},
		{"a_b-c.example.com:1", []Endpoint{name("a_b-c.example.com", 1)}},
		{"localhost:65535", []Endpoint{name("localhost", 65535)}},
		{"x.com:0443", []Endpoint{name("x.com", 443)}},
		{long63 + ".com", []Endpoint{name(long63+".com", 443)}},
		{name253, []Endpoint{name(name253, 443)}},
		{"203.0.113.7:443", []Endpoint{pfx("203.0.113.7/32", 443)}},
		{"203.0.113.7", []Endpoint{pfx("203.0.113.7/32", 443)}},
		{"203.0.113.0/24:443", []Endpoint{pfx("203.0.113.0/24", 443)}},
		{"203.0.113.7/24:80", []Endpoint{pfx("203.0.113.0/24", 80)}},
		{"203.0.113.7/24", []Endpoint{pfx("203.0.113.0/24", 443)}},
		{"[2001:db8::1]:443", []Endpoint{pfx("2001:db8::1/128", 443)}},
		{"[2001:db8::1]", []Endpoint{pfx("2001:db8::1/128", 443)}},
		{"[2001:db8::/32]:443", []Endpoint{pfx("2001:db8::/32", 443)}},
		{"[2001:DB8::5/32]:8080", []Endpoint{pfx("2001:db8::/32", 8080)}},
		{"2001:db8::1", []Endpoint{pfx("2001:db8::1/128", 443)}},
		{"2001:db8::/32", []Endpoint{pfx("2001:db8::/32", 443)}},
		{"[::ffff:203.0.113.7]:443", []Endpoint{pfx("203.0.113.7/32", 443)}},
		{"[::ffff:203.0.113.0/120]:443", []Endpoint{pfx("203.0.113.0/24", 443)}},
		// Every separator, and the YAML block styles.
		{"a.com,b.com\tc.com\n d.com:80 ,, e.com\r\n", []Endpoint{
			name("a.com", 443), name("b.com", 443), name("c.com", 443), name("d.com", 80), name("e.com", 443),
		}},
		{"a.com:443\nb.com:443\n", []Endpoint{name("a.com", 443), name("b.com", 443)}},
		{"a.com:443 b.com:443 ", []Endpoint{name("a.com", 443), name("b.com", 443)}},
		// Duplicates are merged, whatever their spelling.
		{"a.com a.com:443 A.COM. a.com.:443", []Endpoint{name("a.com", 443)}},
		{"203.0.113.7 203.0.113.7/32:443 [::ffff:203.0.113.7]", []Endpoint{pfx("203.0.113.7/32", 443)}},
		{"a.com:80 a.com:443", []Endpoint{name("a.com", 80), name("a.com", 443)}},
		// Canonical order: names (exact before wildcard), then IPv4, then IPv6.
		{"[2001:db8::1] 198.18.0.1 *.b.com b.com z.com a.com:80", []Endpoint{
			name("a.com", 80), name("b.com", 443), wild("b.com", 443), name("z.com", 443),
			pfx("198.18.0.1/32", 443), pfx("2001:db8::1/128", 443),
		}},
	}
	for _, tt := range tests {
		got, err := ParseEndpoints(tt.in)
		if err != nil {
			t.Errorf("ParseEndpoints(%q): %v", tt.in, err)
			continue
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("ParseEndpoints(%q)\n got  %v\n want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseEndpointsBad(t *testing.T) {
	tests := []struct{ in, reason string }{
		{"foo:99999", "port 99999 is out of range 1-65535"},
		{"foo:65536", "port 65536 is out of range 1-65535"},
		{"foo:0", "port 0 is out of range 1-65535"},
		{"foo:99999999999999999999", "out of range 1-65535"},
		{"foo:abc", `port "abc" is not a number`},
		{"foo:-1", `port "-1" is not a number`},
		{"foo:+443", `port "+443" is not a number`},
		{"foo:", "empty port"},
		{":443", "empty host"},
		{"[]:443", "empty host"},
		{".", "empty host"},
		{"*", `"*" is only allowed as the whole first label`},
		{"*:443", `"*" is only allowed as the whole first label`},
		{"*.", `a wildcard needs a domain after "*."`},
		{"*.:443", `a wildcard needs a domain after "*."`},
		{"a.*.com", `"*" is only allowed`},
		{"*a.com", `"*" is only allowed`},
		{"a*.com", `"*" is only allowed`},
		{"*.*.com", `"*" is only allowed`},
		{"**.com", `"*" is only allowed`},
		{"productionresultssa*.blob.core.windows.net:8443", "is in the built-in list"},
		{"a..b", "empty label"},
		{".a.com", "empty label"},
		{"a.com..", "empty label"},
		{"*..a.com", "empty label"},
		{"https://x", `URL schemes ("https://") are not allowed`},
		{"HTTP://github.com:443", "URL schemes"},
		{"x/y", "URL paths are not allowed"},
		{"example.com/path", "URL paths are not allowed"},
		{"example.com:443/path", "URL paths are not allowed"},
		{"ex!ample.com", `'!' is not allowed in a host name`},
		{"exa%mple.com", `'%' is not allowed in a host name`},
		{"bücher.de", "non-ASCII name; write its punycode (xn--) form"},
		{strings.Repeat("a", 64) + ".com", "is 64 characters long; the limit is 63"},
		{strings.Repeat("abcdefg.", 32) + "io", "name is 258 characters long; the limit is 253"},
		{"*." + strings.Repeat("abcdefg.", 31) + "abcdefghi", "name is 259 characters long"},
		{"256.1.1.1", "not a valid IPv4 address"},
		{"1.2.3", "not a valid IPv4 address"},
		{"010.1.1.1:443", "not a valid IPv4 address"},
		{"*.1.2.3", "a wildcard must be over a DNS name, not an address"},
		{"203.0.113.0/33:443", `"203.0.113.0/33" is not a valid CIDR prefix`},
		{"203.0.113/24", `is not a valid CIDR prefix`},
		{"[2001:db8::1]:99999", "port 99999 is out of range"},
		{"[2001:db8::1]:", "empty port"},
		{"[2001:db8::1", `"[" without a closing "]"`},
		{"[2001:db8::1]443", `unexpected "443" after "]"`},
		{"[203.0.113.7]:443", "brackets are only for IPv6 addresses"},
		{"[example.com]:443", `"example.com" is not a valid IP address`},
		{"[2001:db8::/129]", "is not a valid CIDR prefix"},
		{"2001:db8::1:443:1:2:3:4:5", "an IPv6 address with a port is written [address]:port"},
		{"2001:db8::/32:443", "is not a valid CIDR prefix; an IPv6 address with a port is written [address]:port"},
		{"example.com:443:80", "an IPv6 address with a port is written [address]:port"},
		{"[fe80::1%eth0]:443", "has an IPv6 zone"},
		{"fe80::1%eth0", "has an IPv6 zone"},
	}
	for _, tt := range tests {
		got, err := ParseEndpoints(tt.in)
		if err == nil {
			t.Errorf("ParseEndpoints(%q) = %v, want an error containing %q", tt.in, got, tt.reason)
			continue
		}
		if got != nil {
			t.Errorf("ParseEndpoints(%q) returned %v along with its error", tt.in, got)
		}
		var ee *EntryError
		if !errors.As(err, &ee) {
			t.Errorf("ParseEndpoints(%q): error %v is not an *EntryError", tt.in, err)
			continue
		}
		if ee.Entry != tt.in {
			t.Errorf("ParseEndpoints(%q): EntryError.Entry = %q", tt.in, ee.Entry)
		}
		if !strings.Contains(ee.Reason, tt.reason) {
			t.Errorf("ParseEndpoints(%q): reason %q, want it to contain %q", tt.in, ee.Reason, tt.reason)
		}
		if prefix := fmt.Sprintf("allowed-endpoints: entry %q: ", tt.in); !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("ParseEndpoints(%q): message %q does not start with %q", tt.in, err, prefix)
		}
	}
}

func TestParseEndpointsErrorFormat(t *testing.T) {
	_, err := ParseEndpoints("foo:99999")
	const want = `allowed-endpoints: entry "foo:99999": port 99999 is out of range 1-65535`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
}

func TestParseEndpointsListsEveryBadEntry(t *testing.T) {
	_, err := ParseEndpoints("good.com foo:0\n*.ok.org bar:x, https://baz ok.net")
	if err == nil {
		t.Fatal("no error")
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T does not unwrap to a list", err)
	}
	var entries []string
	for _, e := range joined.Unwrap() {
		var ee *EntryError
		if !errors.As(e, &ee) {
			t.Fatalf("%v is not an *EntryError", e)
		}
		entries = append(entries, ee.Entry)
	}
	if want := []string{"foo:0", "bar:x", "https://baz"}; !slices.Equal(entries, want) {
		t.Errorf("bad entries = %q, want %q", entries, want)
	}
	if lines := strings.Split(err.Error(), "\n"); len(lines) != 3 {
		t.Errorf("message has %d lines, want one per bad entry:\n%v", len(lines), err)
	}
}

func TestEndpointString(t *testing.T) {
	tests := []struct {
		e    Endpoint
		want string
	}{
		{name("github.com", 443), "github.com:443"},
		{wild("example.com", 8443), "*.example.com:8443"},
		{pfx("203.0.113.7/32", 443), "203.0.113.7:443"},
		{pfx("203.0.113.0/24", 443), "203.0.113.0/24:443"},
		{pfx("2001:db8::1/128", 443), "[2001:db8::1]:443"},
		{pfx("2001:db8::/32", 80), "[2001:db8::/32]:80"},
		{Endpoint{Host: "a.com", Port: 443, Implicit: true}, "a.com:443"},
		{Endpoint{Port: 443}, "invalid:443"},
	}
	for _, tt := range tests {
		if got := tt.e.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.e, got, tt.want)
		}
	}
}

// TestStringRoundTrip checks ParseEndpoints(e.String()) == [e] for every
// endpoint the good-input table and the built-in list produce.
func TestStringRoundTrip(t *testing.T) {
	in := "github.com *.example.com:8443 a_b.c-d.org:1 203.0.113.7 203.0.113.0/24:80 " +
		"[2001:db8::1]:443 [2001:db8::/32]:22 0.0.0.0/0 [::/0]:443 [::1] x.io:65535"
	eps, err := ParseEndpoints(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range Implicit() {
		e.Implicit = false
		eps = append(eps, e)
	}
	for _, e := range eps {
		got, err := ParseEndpoints(e.String())
		if err != nil || len(got) != 1 || got[0] != e {
			t.Errorf("ParseEndpoints(%q) = %v, %v; want [%#v]", e.String(), got, err, e)
		}
	}
}

func TestParseMode(t *testing.T) {
	good := map[string]Mode{"audit": Audit, "block": Block, "BLOCK": Block, " Audit\n": Audit, "\tbLoCk ": Block}
	for in, want := range good {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "  ", "allow", "audits", "block-all", "enforce", "aud it"} {
		got, err := ParseMode(in)
		if err == nil {
			t.Errorf("ParseMode(%q) = %q, want an error", in, got)
			continue
		}
		if strings.TrimSpace(in) != "" && !strings.Contains(err.Error(), fmt.Sprintf("%q", in)) {
			t.Errorf("ParseMode(%q): error %q does not name the value", in, err)
		}
		if !strings.Contains(err.Error(), `"audit" or "block"`) {
			t.Errorf("ParseMode(%q): error %q does not say what is allowed", in, err)
		}
	}
}

func TestHardenRunnerResultsStoragePatternAccepted(t *testing.T) {
	for _, in := range []string{"productionresultssa*.blob.core.windows.net:443", "PRODUCTIONRESULTSSA*.blob.core.windows.net", "productionresultssa*.blob.core.windows.net.:443"} {
		eps, err := ParseEndpoints("github.com:443 " + in)
		if err != nil || len(eps) != 1 || eps[0].Host != "github.com" {
			t.Errorf("ParseEndpoints(%q) = %v, %v; want only github.com, no error", in, eps, err)
		}
	}
}
