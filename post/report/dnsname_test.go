package report

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/miekg/dns"
)

func TestDisplayName(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"plain.test", "plain.test"},
		{`<script>alert\(1\)</script>.exfil.test`, "<script>alert(1)</script>.exfil.test"},
		{`a\ b\;c\"d\'e\@f.test`, `a b;c"d'e@f.test`},
		{`a\.b.test`, `a\.b.test`},
		{`back\\slash.test`, `back\\slash.test`},
		{`m\195\188nchen.test`, "münchen.test"},
		{`bad\255.test`, `bad\255.test`},
		{`nul\000\010.test`, `nul\000\010.test`},
		{`\065\066c`, "ABc"},
		{`trailing\`, `trailing\\`},
		{`short\1x`, `short\\1x`},
		{`big\999`, `big\\999`},
	} {
		if got := displayName(tt.in); got != tt.want {
			t.Errorf("displayName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// wireName packs labels into a DNS wire-format name.
func wireName(labels [][]byte) []byte {
	var b []byte
	for _, l := range labels {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

// FuzzDisplayName takes label bytes as a query would carry them, has
// miekg/dns (the resolver's library) write the name the way the journal
// holds it, and checks that displayName gives back exactly those bytes
// when nothing in them needs a visible escape, and is always valid UTF-8
// without control characters otherwise.
func FuzzDisplayName(f *testing.F) {
	f.Add([]byte("<script>alert(1)</script>\x00exfil\x00test"))
	f.Add([]byte("a.b\x00c\\d"))
	f.Add([]byte("m\xc3\xbcnchen\x00\xff\x01"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		var labels [][]byte
		for _, l := range bytes.Split(raw, []byte{0}) {
			if len(l) > 0 && len(l) <= 63 {
				labels = append(labels, l)
			}
		}
		if len(labels) == 0 {
			return
		}
		wire := wireName(labels)
		if len(wire) > 255 {
			return
		}
		name, _, err := dns.UnpackDomainName(wire, 0)
		if err != nil {
			t.Fatalf("unpack %q: %v", wire, err)
		}
		name = strings.TrimSuffix(name, ".")
		got := displayName(name)
		if !utf8.ValidString(got) {
			t.Fatalf("displayName(%q) = %q: invalid UTF-8", name, got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("displayName(%q) = %q: control character", name, got)
			}
		}
		plain := true
		for _, l := range labels {
			plain = plain && utf8.Valid(l) && !bytes.ContainsAny(l, ".\\") && !bytes.ContainsFunc(l, func(r rune) bool { return r < 0x20 || r == 0x7f })
		}
		if want := string(bytes.Join(labels, []byte("."))); plain && got != want {
			t.Fatalf("displayName(%q) = %q, want the query's bytes %q", name, got, want)
		}
		if displayName(got) != got && !strings.Contains(got, `\`) {
			t.Fatalf("displayName is not stable on %q", got)
		}
	})
}
