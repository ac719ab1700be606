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
		eps := p.Endpoints()
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
	if n == "" || len(n) > maxName || strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".") || strings.Contains(n, "..") {
		return nil, false
	}
	b := []byte(n)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c - 'A' + 'a'
		}
	}
	n = string(b)
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
