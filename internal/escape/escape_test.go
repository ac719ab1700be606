package escape

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/harden-runner/harden-runner/internal/escape/mdtest"
	"github.com/sethvargo/go-githubactions"
	"golang.org/x/net/html"
)

func TestText(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain.test", "plain.test"},
		{"<script>alert(1)</script>.exfil.test", "<script>alert(1)</script>.exfil.test"},
		{"a\nb\r\nc", "a\u2424b\u240d\u2424c"},
		{"  a \t\t b  ", "a b"},
		{"\x00\x1b[31m\x7f", "\u2400\u241b[31m\u2421"},
		{"bidi\u202eexe", `bidi\u{202E}exe`},
		{"zw\u200bsp\u00a0", `zw\u{200B}sp\u{00A0}`},
		{"bad\xffutf8", "bad\ufffdutf8"},
		{"hi @octocat", "hi @" + zwsp + "octocat"},
		{strings.Repeat("x", MaxCell+5), strings.Repeat("x", MaxCell) + "…"},
	}
	for _, tt := range tests {
		if got := Text(tt.in, MaxCell); got != tt.want {
			t.Errorf("Text(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestFence(t *testing.T) {
	for in, want := range map[string]string{"": "```", "a`b": "```", "x````y": "`````"} {
		if got := Fence(in); got != want {
			t.Errorf("Fence(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCommand(t *testing.T) {
	got := Command("error", map[string]string{"title": "blocked: evil,com", "file": "a\nb", "bad key": "x"},
		"evil.test\n::warning::pwned 100%")
	want := "::error file=a%0Ab,title=blocked%3A evil%2Ccom::evil.test%0A::warning::pwned 100%25"
	if got != want {
		t.Errorf("Command =\n%q\nwant\n%q", got, want)
	}
	if got, want := Command("notice", nil, "x"), "::notice::x"; got != want {
		t.Errorf("Command without properties = %q, want %q", got, want)
	}
	if got, want := CommandData("50%\r\n::error::x, y: z"), "50%25%0D%0A::error::x, y: z"; got != want {
		t.Errorf("CommandData = %q, want %q", got, want)
	}
}

// TestCommandDataMatchesLibrary holds CommandData to go-githubactions'
// escaping of a command's message.
func TestCommandDataMatchesLibrary(t *testing.T) {
	for _, s := range []string{"", "a%b", "x\r\ny", "%0A", "::error::z", "100%%\n\n"} {
		lib := (&githubactions.Command{Name: "x", Message: s}).String()
		if got := "::x::" + CommandData(s); got != lib {
			t.Errorf("CommandData(%q): %q, library %q", s, got, lib)
		}
	}
}

// plain reports whether Text shows s as it is: valid UTF-8, printable, no
// tab, no space at either end or twice in a row, no '@', not too long.
func plain(s string) bool {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > MaxCell || strings.Contains(s, "@") ||
		strings.Contains(s, "  ") || strings.TrimSpace(s) != s {
		return false
	}
	for _, r := range s {
		if r != ' ' && !unicode.IsPrint(r) || r == 0x115F || r == 0x1160 || r == 0x3164 || r == 0xFFA0 {
			return false
		}
	}
	return true
}

// FuzzCell renders one escaped value in a table cell, a list item and a
// heading, with and without a sanitizer, and checks that what a reader
// sees is exactly Text(s) (s itself when s is plain), as one piece of text:
// no element, no link, no extra cell, no line of its own.
func FuzzCell(f *testing.F) {
	for _, s := range mdtest.Hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := Cell(s)
		if strings.ContainsAny(c, "\r\n") {
			t.Fatalf("cell %q spans lines", c)
		}
		want := Text(s, MaxCell)
		if plain(s) && want != s {
			t.Fatalf("Text(%q) = %q: a plain string must come back unchanged", s, want)
		}
		if n := mdtest.UnescapedPipes("| " + c + " |"); n != 2 {
			t.Fatalf("cell %q has %d unescaped pipes", c, n-2)
		}
		for _, ctx := range []struct{ md, tag, prefix, suffix string }{
			{"| h |\n| --- |\n| " + c + " |\n", "td", "", ""},
			{"- x: " + c + "\n", "li", "x: ", ""},
			{"#### " + c + " (1 connection)\n", "h4", "", " (1 connection)"},
			{"text " + c + " text\n", "p", "text ", " text"},
		} {
			for _, unsafe := range []bool{false, true} {
				doc := mdtest.Render(t, ctx.md, unsafe)
				var got []*html.Node
				mdtest.Walk(doc, func(n *html.Node) {
					if n.Type != html.ElementNode {
						return
					}
					switch n.Data {
					case "html", "head", "body", "ul", "table", "thead", "tbody", "tr", "th":
					case ctx.tag:
						got = append(got, n)
					default:
						t.Fatalf("element <%s> from %q (markdown %q)", n.Data, s, ctx.md)
					}
				})
				if len(got) != 1 {
					t.Fatalf("%d <%s> from %q", len(got), ctx.tag, ctx.md)
				}
				if text := mdtest.Text(got[0]); text != strings.TrimSpace(ctx.prefix+want+ctx.suffix) {
					t.Fatalf("<%s> text %q, want %q (markdown %q)", ctx.tag, text, ctx.prefix+want+ctx.suffix, ctx.md)
				}
			}
		}
	})
}

// FuzzCommand checks that a workflow command stays one line whatever its
// data, and that the message is the last field.
func FuzzCommand(f *testing.F) {
	f.Add("t", "p", "m")
	f.Add("a\n::error::x", "f,i:le", "100%\r\n::warning::y")
	f.Fuzz(func(t *testing.T, title, file, msg string) {
		c := Command("error", map[string]string{"title": title, "file": file}, msg)
		if strings.ContainsAny(c, "\r\n") {
			t.Fatalf("command %q spans lines", c)
		}
		if !strings.HasPrefix(c, "::error file=") || strings.Count(c, "::") < 2 {
			t.Fatalf("command %q", c)
		}
		if got := c[strings.Index(c[2:], "::")+4:]; got != CommandData(msg) {
			t.Fatalf("message field %q, want %q", got, CommandData(msg))
		}
	})
}
