package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func mustParse(t testing.TB, s string) []Endpoint {
	t.Helper()
	eps, err := ParseEndpoints(s)
	if err != nil {
		t.Fatal(err)
	}
	return eps
}

func TestPortsMatching(t *testing.T) {
	p := New(Block, mustParse(t, `
		*.example.com:443
		api.example.com:8443
		*.b.example.com:80
		github.com:443 github.com:80
		*.test:53
	`), false)
	tests := []struct {
		name string
		want []uint16
	}{
		{"example.com", nil}, // the apex is not under its own wildcard
		{"a.example.com", []uint16{443}},
		{"a.b.example.com", []uint16{80, 443}},     // two wildcards at different depths
		{"x.y.a.b.example.com", []uint16{80, 443}}, // any depth
		{"b.example.com", []uint16{443}},           // *.b.example.com does not cover b.example.com
		{"api.example.com", []uint16{443, 8443}},   // exact and wildcard together
		{"API.Example.COM.", []uint16{443, 8443}},
		{"A.EXAMPLE.COM", []uint16{443}},
		{"a.example.com.", []uint16{443}},
		{"evilexample.com", nil},
		{"a.evilexample.com", nil},
		{"example.com.evil.org", nil},
		{"a.example.co", nil},
		{"example.com.", nil},
		{"github.com", []uint16{80, 443}},
		{"GITHUB.COM.", []uint16{80, 443}},
		{"www.github.com", nil}, // exact names do not cover subdomains
		{"githu.com", nil},
		{"ithub.com", nil},
		{"agithub.com", nil},
		{"x.test", []uint16{53}},
		{"test", nil},
		{"", nil},
		{".", nil},
		{"..", nil},
		{"a..example.com", nil},
		{".a.example.com", nil},
		{"a.example.com..", nil},
		{strings.Repeat("a.", 126) + "example.com", nil}, // 263 characters: too long for DNS
		// Text forms of wire labels no host name has (miekg/dns escapes them):
		// `x\.example.com` is one label "x.example" under com, not under example.com.
		{`x\.example.com`, nil},
		{`x\.b.example.com`, nil}, // would be under *.example.com, never under *.b.example.com
		{`a\000.example.com`, nil},
		{`a\ b.example.com`, nil},
		{`a\\.example.com`, nil},
		{"a b.example.com", nil},
		{"a\x00.example.com", nil},
		{"*.example.com", nil},
		{"a/b.example.com", nil},
		{strings.Repeat("a", 64) + ".example.com", nil}, // over-long label
		{strings.Repeat("a", 63) + ".example.com", []uint16{443}},
		{"_dmarc.example.com", []uint16{443}},
	}
	for _, tt := range tests {
		got, implicit := p.Ports(tt.name)
		if !slices.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Errorf("Ports(%q) = %v, want %v", tt.name, got, tt.want)
		}
		if implicit {
			t.Errorf("Ports(%q) says implicit, but the policy has no built-in entries", tt.name)
		}
	}
}

func TestPortsResultIsTheCallersOwn(t *testing.T) {
	p := New(Block, mustParse(t, "a.com:443 a.com:80"), false)
	got, _ := p.Ports("a.com")
	got[0] = 9
	if again, _ := p.Ports("a.com"); !slices.Equal(again, []uint16{80, 443}) {
		t.Fatalf("changing a result changed the policy: Ports = %v", again)
	}
}

func TestPortsImplicit(t *testing.T) {
	tests := []struct {
		user     string
		builtin  bool
		name     string
		want     []uint16
		implicit bool
	}{
		{"", true, "pipelines.actions.githubusercontent.com", []uint16{443}, true},
		{"", true, "results-receiver.actions.githubusercontent.com", []uint16{443}, true},
		{"", true, "a.b.actions.githubusercontent.com", []uint16{443}, true},
		{"", true, "actions.githubusercontent.com", nil, false},
		{"", true, "codeload.github.com", []uint16{443}, true},
		{"", true, "hosted-compute-watchdog-prod-iad-01.githubapp.com", []uint16{443}, true},
		{"", true, "productionresultssa0.blob.core.windows.net", []uint16{443}, true},
		{"", true, "productionresultssa19.blob.core.windows.net", []uint16{443}, true},
		{"", true, "productionresultssa20.blob.core.windows.net", nil, false},
		{"", true, "attacker.blob.core.windows.net", nil, false},
		{"", true, "github.com", nil, false},
		{"", true, "api.github.com", nil, false},
		{"", true, "ghcr.io", nil, false},
		{"", false, "pipelines.actions.githubusercontent.com", nil, false},
		{"", false, "codeload.github.com", nil, false},
		// A user entry that also matches makes the answer the user's.
		{"*.githubusercontent.com", true, "pipelines.actions.githubusercontent.com", []uint16{443}, false},
		{"codeload.github.com:443", true, "codeload.github.com", []uint16{443}, false},
		{"codeload.github.com:8443", true, "codeload.github.com", []uint16{443, 8443}, false},
		{"*.githubapp.com:80", true, "x.githubapp.com", []uint16{80, 443}, false},
		{"github.com", true, "github.com", []uint16{443}, false},
	}
	for _, tt := range tests {
		p := New(Audit, mustParse(t, tt.user), tt.builtin)
		got, implicit := p.Ports(tt.name)
		if !slices.Equal(got, tt.want) || implicit != tt.implicit {
			t.Errorf("user %q, builtin %v: Ports(%q) = %v, %v; want %v, %v",
				tt.user, tt.builtin, tt.name, got, implicit, tt.want, tt.implicit)
		}
	}
}

func TestEndpointsAndPrefixes(t *testing.T) {
	user := mustParse(t, "z.org [2001:db8::1] codeload.github.com 198.18.0.0/15:8080 *.a.com a.com 168.63.129.16:80")
	p := New(Block, user, true)

	var want []Endpoint
	for _, s := range []string{"a.com", "*.a.com", "codeload.github.com", "z.org",
		"198.18.0.0/15:8080", "168.63.129.16:80", "[2001:db8::1]"} {
		want = append(want, mustParse(t, s)...)
	}
	slices.SortFunc(want, compareEndpoints)
	for _, e := range Implicit() {
		// The user's codeload.github.com:443 and 168.63.129.16:80 stand
		// for the built-in ones.
		if e.String() != "codeload.github.com:443" && e.String() != "168.63.129.16:80" {
			want = append(want, e)
		}
	}
	if got := slices.Collect(p.Endpoints()); !slices.Equal(got, want) {
		t.Errorf("Endpoints()\n got  %v\n want %v", got, want)
	}
	if p.Len() != len(want) {
		t.Errorf("Len() = %d, want %d", p.Len(), len(want))
	}

	var wantPrefixes []Endpoint
	for _, e := range want {
		if e.IsAddr() {
			wantPrefixes = append(wantPrefixes, e)
		}
	}
	got := slices.Collect(p.Prefixes())
	if !slices.Equal(got, wantPrefixes) {
		t.Errorf("Prefixes()\n got  %v\n want %v", got, wantPrefixes)
	}
	// 198.18.0.0/15, 168.63.129.16:80 (user), 2001:db8::1, then the
	// built-in 168.63.129.16:32526 and 169.254.169.254:80.
	if len(got) != 5 || got[0].Implicit || got[2].Implicit || !got[3].Implicit || !got[4].Implicit {
		t.Errorf("Prefixes() = %#v", got)
	}

	if p.Mode() != Block {
		t.Errorf("Mode() = %q", p.Mode())
	}
}

func TestNewNormalizesHandBuiltEndpoints(t *testing.T) {
	p := New(Audit, []Endpoint{
		{Host: "*.GitHub.com.", Port: 443},
		{Host: "Exact.ORG.", Port: 80, Implicit: true}, // a user entry, whatever it says
		{Prefix: netip.MustParsePrefix("198.18.7.9/16"), Port: 443},
		{Prefix: netip.MustParsePrefix("::ffff:198.18.0.1/128"), Port: 443},
		{Port: 443}, // names nothing: ignored
	}, false)
	want := []Endpoint{
		name("exact.org", 80), wild("github.com", 443),
		pfx("198.18.0.0/16", 443), pfx("198.18.0.1/32", 443),
	}
	if got := slices.Collect(p.Endpoints()); !slices.Equal(got, want) {
		t.Errorf("Endpoints()\n got  %v\n want %v", got, want)
	}
	if got, implicit := p.Ports("api.github.com"); !slices.Equal(got, []uint16{443}) || implicit {
		t.Errorf("Ports(api.github.com) = %v, %v", got, implicit)
	}
	if got, implicit := p.Ports("exact.org"); !slices.Equal(got, []uint16{80}) || implicit {
		t.Errorf("Ports(exact.org) = %v, %v", got, implicit)
	}
}

func TestImplicitList(t *testing.T) {
	a, b := Implicit(), Implicit()
	if len(a) == 0 {
		t.Fatal("empty built-in list")
	}
	a[0].Host = "changed"
	if b[0].Host == "changed" || Implicit()[0].Host == "changed" {
		t.Fatal("Implicit returns a shared slice")
	}
	list := Implicit()
	if !slices.IsSortedFunc(list, compareEndpoints) {
		t.Errorf("not in canonical order: %v", list)
	}
	var got []string
	for _, e := range list {
		if !e.Implicit {
			t.Errorf("%v lacks Implicit", e)
		}
		got = append(got, e.String())
	}
	// The list is a security decision: a change must change this test and
	// the README table together.
	want := []string{"*.actions.githubusercontent.com:443", "codeload.github.com:443", "*.githubapp.com:443"}
	for i := range 20 {
		want = append(want, fmt.Sprintf("productionresultssa%d.blob.core.windows.net:443", i))
	}
	want = append(want, "168.63.129.16:80", "168.63.129.16:32526", "169.254.169.254:80")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Implicit()\n got  %q\n want %q", got, want)
	}
}

func TestPortsAllocations(t *testing.T) {
	user := mustParse(t, "a.example.com:443 a.example.com:80 *.example.com:8443 *.b.example.com:22")
	// A name under nine wildcards, more than Ports keeps on its stack.
	deep := "x"
	for i := range 9 {
		deep = fmt.Sprintf("l%d.%s", i, deep)
		user = append(user, wild(deep, uint16(1000+i)))
	}
	p := New(Block, user, true)
	tests := []struct {
		name   string
		allocs float64
	}{
		{"a.example.com", 1},
		{"A.Example.Com.", 1},
		{"z.y.b.example.com", 1},
		{"q." + deep, 1},
		{"pipelines.actions.githubusercontent.com", 1},
		{"nothing.example.org", 0},
		{"Nothing.Example.Org.", 0},
		{"example.com", 0},
	}
	for _, tt := range tests {
		got := testing.AllocsPerRun(100, func() { p.Ports(tt.name) })
		if got != tt.allocs {
			t.Errorf("Ports(%q): %v allocations, want %v", tt.name, got, tt.allocs)
		}
	}
	if ports, _ := p.Ports("q." + deep); len(ports) != 9 {
		t.Errorf("Ports(q.%s) = %v, want the 9 wildcard ports", deep, ports)
	}
}

// benchPolicy has 10,000 user entries: 9,000 exact names and 1,000
// wildcards, plus the built-in list.
func benchPolicy(b *testing.B) (*Policy, []Endpoint) {
	var sb strings.Builder
	for i := range 9000 {
		fmt.Fprintf(&sb, "svc%d.team%d.example.com:443\n", i, i%97)
	}
	for i := range 1000 {
		fmt.Fprintf(&sb, "*.zone%d.example.net:443\n", i)
	}
	eps := mustParse(b, sb.String())
	if len(eps) != 10000 {
		b.Fatalf("%d entries", len(eps))
	}
	p := New(Block, eps, true)
	return p, slices.Collect(p.Endpoints())
}

// linearPorts is the alternative a simple implementation uses (and
// StepSecurity's agent does): scan every entry, suffix-match wildcards.
func linearPorts(eps []Endpoint, name string) []uint16 {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	var out []uint16
	for _, e := range eps {
		if e.Host == "" {
			continue
		}
		if (!e.Wildcard && e.Host == name) || (e.Wildcard && strings.HasSuffix(name, "."+e.Host)) {
			if !slices.Contains(out, e.Port) {
				out = append(out, e.Port)
			}
		}
	}
	slices.Sort(out)
	return out
}

func BenchmarkPorts(b *testing.B) {
	p, eps := benchPolicy(b)
	queries := map[string]string{
		"exact":    "svc4711.team55.example.com", // 4711 % 97 == 55
		"wildcard": "a.b.c.zone500.example.net",
		"miss":     "registry.npmjs.org",
		"upper":    "SVC4711.TEAM55.EXAMPLE.COM.",
	}
	for _, kind := range []string{"exact", "wildcard", "miss", "upper"} {
		q := queries[kind]
		got, _ := p.Ports(q)
		if want := linearPorts(eps, q); !slices.Equal(got, want) || (kind == "miss") != (got == nil) {
			b.Fatalf("Ports(%q) = %v, linear scan says %v", q, got, want)
		}
		b.Run("maps/"+kind, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.Ports(q)
			}
		})
		b.Run("linear/"+kind, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				linearPorts(eps, q)
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	_, eps := benchPolicy(b)
	b.ReportAllocs()
	for b.Loop() {
		New(Block, eps, true)
	}
}

func TestCanonical(t *testing.T) {
	got := Canonical([]Endpoint{
		{Prefix: netip.MustParsePrefix("198.18.7.9/16"), Port: 443},
		{Host: "B.test.", Port: 443, Implicit: true},
		{Host: "*.a.test", Port: 80},
		{Port: 443}, // names nothing: dropped
		{Host: "b.test", Port: 443},
		{Prefix: netip.MustParsePrefix("198.18.0.0/16"), Port: 443},
	})
	want := []Endpoint{wild("a.test", 80), name("b.test", 443), pfx("198.18.0.0/16", 443)}
	if !slices.Equal(got, want) {
		t.Errorf("Canonical()\n got  %v\n want %v", got, want)
	}
	if cap(got) != len(got) {
		t.Errorf("cap %d, len %d: not clipped", cap(got), len(got))
	}
}
