package policyfile

import (
	"fmt"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, in, mode, eps string
		n                   int // parsed endpoints
	}{
		{"empty", "", "", "", 0},
		{"only a comment", "# only a comment\n", "", "", 0},
		{"quoted mode", "---\negress-policy: 'block' # c\n", "block", "", 0},
		{"one line", "allowed-endpoints: a.test:443 b.test:443\n", "", "a.test:443 b.test:443", 2},
		{"folded block", "allowed-endpoints: >\n  a.test:443\n  b.test:443\n", "", "a.test:443 b.test:443\n", 2},
		{"literal block", "allowed-endpoints: |\n  a.test:443\n  b.test:443\n", "", "a.test:443\nb.test:443\n", 2},
		{"list", "allowed-endpoints:\n  - a.test:443\n\n  - \"b.test:443\" # x\negress-policy: audit\n", "audit", "a.test:443\nb.test:443", 2},
		{"flow list", "allowed-endpoints: [a.test, '*.b.test:22', '[2001:db8::/32]:443']\n", "", "a.test\n*.b.test:22\n[2001:db8::/32]:443", 3},
		{"BOM", "\ufeffegress-policy: audit", "audit", "", 0},
		{"CRLF", "egress-policy: block\r\nallowed-endpoints:\r\n  - a.test\r\n", "block", "a.test", 1},
		{"null value", "allowed-endpoints:\n", "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("p.yml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if f.EgressPolicy != tt.mode || f.AllowedEndpoints != tt.eps || len(f.Endpoints) != tt.n {
				t.Errorf("got %q/%q/%d, want %q/%q/%d", f.EgressPolicy, f.AllowedEndpoints, len(f.Endpoints), tt.mode, tt.eps, tt.n)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // all in the error text
	}{
		{"unknown key", "egress-policy: block\nallowed-endpoint: a.test\n", []string{"p.yml:2:", `unknown key "allowed-endpoint"`}},
		{"repeated key", "egress-policy: block\negress-policy: audit\n", []string{"p.yml:2:", "egress-policy", "already defined"}},
		{"bad mode", "egress-policy: blok\n", []string{"p.yml:1:", `"blok"`}},
		{"mode not a string", "egress-policy: [block]\n", []string{"p.yml:1", "egress-policy"}},
		{"bad entry in list", "allowed-endpoints:\n  - a.test:443\n  - github.com:99999\n", []string{"p.yml:3", "github.com:99999"}},
		{"two bad entries", "allowed-endpoints:\n  - git*hub.com\n  - a.test:0x\n", []string{"p.yml:2", "p.yml:3", "git*hub.com", "a.test:0x"}},
		{"bad entry in string", "egress-policy: audit\nallowed-endpoints: a.test b..test\n", []string{"p.yml:2", "b..test"}},
		{"map as list item", "allowed-endpoints:\n  - host: a.test\n", []string{"p.yml:2", "host:port"}},
		{"map value", "allowed-endpoints:\n  host: a.test\n", []string{"p.yml:2", "allowed-endpoints"}},
		{"tab indentation", "allowed-endpoints:\n\t- a.test\n", []string{"p.yml:2:"}},
		{"two documents", "egress-policy: block\n---\negress-policy: audit\n", []string{"p.yml", "more than one"}},
		{"not a mapping", "- a.test\n", []string{"p.yml:1:"}},
		{"unterminated quote", "egress-policy: 'block\n", []string{"p.yml"}},
		{"control character escaped in a quoted entry", "allowed-endpoints:\n  - a.test\n  - \"b.test\\f\"\n", []string{"p.yml:3", "control character", `'\f'`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.yml", []byte(tt.in))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := Parse("big", make([]byte, MaxSize+1)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized file: %v", err)
	}
}

func TestParseLarge(t *testing.T) {
	var b strings.Builder
	b.WriteString("egress-policy: block\nallowed-endpoints:\n")
	for i := range 100_000 {
		fmt.Fprintf(&b, "  - 198.19.%d.%d:443\n", i/256%256, i%256)
	}
	f, err := Parse("large.yml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Endpoints) != 65536 { // 198.19.0.0/16 holds 65,536 distinct ones
		t.Errorf("%d endpoints", len(f.Endpoints))
	}
}

// FuzzParse: any bytes either fail with an *Error-shaped message naming
// the file, or give a mode that is audit, block or unset, and entries
// that parse again to the same endpoints.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"egress-policy: block\nallowed-endpoints: >\n  a.test:443\n",
		"allowed-endpoints:\n  - 'x:1'\n  - \"y\"\n", "allowed-endpoints: [a, 'b']", "a: |\n\t#", "egress-policy: '",
		"&a [*a]", "allowed-endpoints: &x [a.test]\negress-policy: *x\n", "? [a]\n: b\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pf, err := Parse("fz.yml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "policy file fz.yml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if pf.EgressPolicy != "" && pf.EgressPolicy != "audit" && pf.EgressPolicy != "block" {
			t.Fatalf("mode %q", pf.EgressPolicy)
		}
		again, err := Parse("fz.yml", []byte("allowed-endpoints: |\n"+indent(pf.AllowedEndpoints)))
		if pf.AllowedEndpoints != "" && (err != nil || len(again.Endpoints) != len(pf.Endpoints)) {
			t.Fatalf("entries %q do not parse again the same: %v", pf.AllowedEndpoints, err)
		}
	})
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func BenchmarkParse100k(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("egress-policy: block\nallowed-endpoints:\n")
	for i := range 100_000 {
		fmt.Fprintf(&sb, "  - 198.%d.%d.%d:443\n", 18+i/65536, i/256%256, i%256)
	}
	data := []byte(sb.String())
	for b.Loop() {
		if _, err := Parse("large.yml", data); err != nil {
			b.Fatal(err)
		}
	}
}
