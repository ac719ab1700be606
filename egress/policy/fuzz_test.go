package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode"
)

var fuzzSeeds = []string{
	"", "github.com", "github.com:443", "GitHub.com.:8443", "*.example.com:443",
	"203.0.113.7:443", "203.0.113.0/24:443", "[2001:db8::1]:443", "[2001:db8::/32]:443",
	"2001:db8::1", "[::ffff:203.0.113.7]", "a.com,b.com\tc.com\n*.d.com:80",
	"foo:99999", "foo:0", "foo:abc", "*", "a.*.com", "a..b", "https://x", "x/y",
	"[2001:db8::1", "[203.0.113.7]:443", "fe80::1%eth0", "bücher.de", "1.2.3",
	"productionresultssa*.blob.core.windows.net:443", "*.:443", ":443", "[]",
}

// FuzzParseEndpoints checks that ParseEndpoints never panics, that every
// accepted entry is normalized and round-trips through String, and that a
// failure names every offending entry (and only fails if one is bad).
func FuzzParseEndpoints(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		eps, err := ParseEndpoints(s)
		fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })

		var bad []string
		for _, field := range fields {
			if _, ferr := ParseEndpoints(field); ferr != nil {
				var ee *EntryError
				if !errors.As(ferr, &ee) || ee.Entry != field {
					t.Fatalf("ParseEndpoints(%q): error %v does not carry the entry", field, ferr)
				}
				bad = append(bad, field)
			}
		}
		if len(bad) > 0 {
			if err == nil {
				t.Fatalf("ParseEndpoints(%q) accepted bad entries %q", s, bad)
			}
			if eps != nil {
				t.Fatalf("ParseEndpoints(%q) returned entries along with an error", s)
			}
			for _, b := range bad {
				if want := fmt.Sprintf("entry %q: ", b); !strings.Contains(err.Error(), want) {
					t.Fatalf("ParseEndpoints(%q): error %q does not name %q", s, err, b)
				}
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseEndpoints(%q) = %v, but every entry parses alone", s, err)
		}
		if len(eps) > len(fields) {
			t.Fatalf("ParseEndpoints(%q): %d entries from %d fields", s, len(eps), len(fields))
		}
		for i, e := range eps {
			if i > 0 && compareEndpoints(eps[i-1], e) >= 0 {
				t.Fatalf("ParseEndpoints(%q): not sorted and unique at %d: %v", s, i, eps)
			}
			checkNormalized(t, e)
			again, err := ParseEndpoints(e.String())
			if err != nil || len(again) != 1 || again[0] != e {
				t.Fatalf("%#v: ParseEndpoints(%q) = %v, %v", e, e.String(), again, err)
			}
		}
	})
}

func checkNormalized(t *testing.T, e Endpoint) {
	t.Helper()
	if e.Port == 0 || e.Implicit {
		t.Fatalf("%#v: bad port or Implicit set", e)
	}
	if e.Host == "" {
		if !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked() || e.Prefix.Addr().Is4In6() || e.Prefix.Addr().Zone() != "" {
			t.Fatalf("%#v: prefix not normalized", e)
		}
		return
	}
	if e.Prefix.IsValid() || len(e.Host) > maxName || strings.HasSuffix(e.Host, ".") ||
		strings.Contains(e.Host, "*") || asciiLower(e.Host) != e.Host {
		t.Fatalf("%#v: name not normalized", e)
	}
}

// FuzzPorts checks Ports against a plain scan of the policy's entries, for
// any policy text and any query name (including case and trailing-dot
// variants), and that it never panics.
func FuzzPorts(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s, "a.example.com", true)
	}
	f.Add("*.example.com *.b.example.com:80 example.com:8443", "X.B.Example.com.", false)
	f.Add("*.example.com", "evilexample.com", false)
	f.Add("*.example.com", "example.com", true)
	f.Add("a.com", "a..com", false)
	f.Add("", "pipelines.actions.githubusercontent.com", true)
	f.Fuzz(func(t *testing.T, entries, name string, builtin bool) {
		user, err := ParseEndpoints(entries)
		if err != nil {
			return
		}
		p := New(Audit, user, builtin)
		eps := slices.Collect(p.Endpoints())
		for _, q := range []string{name, strings.ToUpper(name), name + "."} {
			got, implicit := p.Ports(q)
			want, wantImplicit := referencePorts(eps, q)
			if !slices.Equal(got, want) || (got == nil) != (want == nil) || implicit != wantImplicit {
				t.Fatalf("policy %q (builtin %v): Ports(%q) = %v, %v; scan says %v, %v",
					entries, builtin, q, got, implicit, want, wantImplicit)
			}
		}
	})
}

// referencePorts answers Ports by scanning every entry.
func referencePorts(eps []Endpoint, name string) ([]uint16, bool) {
	n := strings.TrimSuffix(name, ".")
	if n == "" || len(n) > maxName {
		return nil, false
	}
	labels := strings.Split(n, ".")
	if !hostLabels(labels) {
		return nil, false
	}
	n = strings.ToLower(n)
	var out []uint16
	user := false
	for _, e := range eps {
		if e.Host == "" {
			continue
		}
		if (!e.Wildcard && n == e.Host) || (e.Wildcard && strings.HasSuffix(n, "."+e.Host)) {
			if !slices.Contains(out, e.Port) {
				out = append(out, e.Port)
			}
			user = user || !e.Implicit
		}
	}
	if out == nil {
		return nil, false
	}
	slices.Sort(out)
	return out, !user
}

// hostLabels reports whether every label is 1-63 letters, digits, '-' or '_'.
func hostLabels(labels []string) bool {
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// textForm writes wire-format labels the way miekg/dns's text form does: a
// dot, a backslash or one of its special characters inside a label is
// escaped with a backslash, and bytes outside printable ASCII as \DDD.
func textForm(labels []string) string {
	var b strings.Builder
	for _, l := range labels {
		for i := 0; i < len(l); i++ {
			switch c := l[i]; {
			case c == '.' || c == '\\' || c == '"' || c == '(' || c == ')' || c == ';' || c == ' ' || c == '@' || c == '$':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < '!' || c > '~':
				fmt.Fprintf(&b, "\\%03d", c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('.')
	}
	if b.Len() == 0 {
		return "."
	}
	return b.String()
}

// labelPorts is the reference on wire-format labels: an entry matches when
// its labels equal the name's (exact) or are a proper suffix of them
// (wildcard), compared case-insensitively, and only a name made of host
// name labels matches anything.
func labelPorts(eps []Endpoint, labels []string) []uint16 {
	if len(labels) == 0 || !hostLabels(labels) || len(strings.Join(labels, ".")) > maxName {
		return nil
	}
	var out []uint16
	for _, e := range eps {
		if e.Host == "" {
			continue
		}
		want := strings.Split(e.Host, ".")
		if len(labels) < len(want) || (!e.Wildcard && len(labels) != len(want)) || (e.Wildcard && len(labels) == len(want)) {
			continue
		}
		tail := labels[len(labels)-len(want):]
		same := true
		for i := range want {
			same = same && strings.EqualFold(tail[i], want[i])
		}
		if same && !slices.Contains(out, e.Port) {
			out = append(out, e.Port)
		}
	}
	slices.Sort(out)
	return out
}

// FuzzPortsWireLabels checks Ports, given the text form of a name built
// from arbitrary wire-format labels (dots, NUL, spaces, backslashes and
// over-long labels inside them), against labelPorts: a label holding a dot
// must never let a name escape to its parent zone.
func FuzzPortsWireLabels(f *testing.F) {
	f.Add("*.allowed.test allowed.test:80", "x.allowed", "test", "", 2)
	f.Add("*.allowed.test", "x", "allowed", "test", 3)
	f.Add("*.allowed.test", "a\x00", "allowed", "test", 3)
	f.Add("*.allowed.test", "a b", "allowed", "test", 3)
	f.Add("*.test", strings.Repeat("a", 64), "x", "test", 3)
	f.Add("_dmarc.a.test:443", "_DMARC", "a", "test", 3)
	f.Add("*.allowed.test", "x\\", "allowed", "test", 3)
	f.Fuzz(func(t *testing.T, entries, l1, l2, l3 string, n int) {
		user, err := ParseEndpoints(entries)
		if err != nil {
			return
		}
		p := New(Audit, user, false)
		all := []string{l1, l2, l3}
		labels := all[:max(1, min(3, n&3))]
		for _, l := range labels {
			if l == "" || len(l) > 255 {
				return // the wire cannot carry it
			}
		}
		text := textForm(labels)
		got, _ := p.Ports(text)
		if want := labelPorts(slices.Collect(p.Endpoints()), labels); !slices.Equal(got, want) {
			t.Fatalf("policy %q: labels %q (text %q): Ports = %v, labels say %v", entries, labels, text, got, want)
		}
	})
}
