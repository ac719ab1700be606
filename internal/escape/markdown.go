package escape

import (
	"fmt"
	"strings"
	"unicode"
)

// MaxCell caps how many runes of one untrusted string Cell shows; the
// report's JSON keeps the whole value.
const MaxCell = 200

// MaxLine caps how many runes of one untrusted string Line shows.
const MaxLine = 2000

// zwsp is inserted after every '@' so that GitHub neither links @mentions
// nor e-mail addresses in displayed data.
const zwsp = "\u200b"

// Text turns untrusted data into the single line of text a reader should
// see: invalid UTF-8 becomes U+FFFD, newline and the other C0 controls
// become their Unicode "control pictures" (U+2424 for newline), other
// invisible or format characters (bidi overrides, zero-width, non-breaking
// spaces) become a visible \u{XXXX}, tabs become spaces, runs of spaces
// collapse to one, the ends are trimmed, at most max runes are kept ("…"
// marks a cut) and a zero-width space follows every '@'. Any other string
// comes back unchanged. The result has no markdown escaping yet: see
// Markdown.
func Text(s string, max int) string {
	var b strings.Builder
	n := 0
	space := false
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if n >= max {
			b.WriteString("…")
			break
		}
		switch {
		case r == '\t' || r == ' ':
			space = true
			continue
		case r < 0x20:
			r = 0x2400 + r // ␀..␟; U+2424 ␤ for '\n' is used instead of U+240A
			if r == 0x240A {
				r = 0x2424
			}
		case r == 0x7f:
			r = 0x2421 // ␡
		}
		if space {
			if b.Len() > 0 {
				b.WriteByte(' ')
				n++
			}
			space = false
		}
		switch {
		case r == '@':
			b.WriteString("@" + zwsp)
		case !unicode.IsPrint(r) || r == 0x115F || r == 0x1160 || r == 0x3164 || r == 0xFFA0:
			// Not printable (format, private use, unassigned, non-ASCII
			// spaces) or a Hangul filler that renders as nothing.
			fmt.Fprintf(&b, `\u{%04X}`, r)
		default:
			b.WriteRune(r)
		}
		n++
	}
	return b.String()
}

// Markdown makes one line of text (as Text returns it) inert in
// GitHub-flavoured markdown, inline, in a list item or inside a table cell:
// ASCII punctuation that markdown could read as syntax is backslash-escaped
// (so no emphasis, links, images, code spans, math, autolinks, table pipes,
// list markers or headings can start; '.' and ':' break www. and scheme
// autolinks), and <, >, & and " are written as character references. The
// rendered text is s again.
func Markdown(s string) string {
	var b strings.Builder
	b.Grow(len(s) + len(s)/4)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		case '\n', '\r':
			// Text never returns these; never let one through.
			b.WriteString("\u2424")
		default:
			if isMarkdownPunct(c) {
				b.WriteByte('\\')
			}
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isMarkdownPunct reports whether c is ASCII punctuation that Markdown
// backslash-escapes: all of it except characters no markdown construct
// (GFM, GitHub's math and autolinks included) gives meaning to, which stay
// bare to keep paths and lists readable.
func isMarkdownPunct(c byte) bool {
	switch c {
	case '/', ',', ';', '?', '%', '=':
		return false
	}
	return c >= '!' && c <= '/' || c >= ':' && c <= '@' || c >= '[' && c <= '`' || c >= '{' && c <= '~'
}

// Cell renders untrusted data for a GFM table cell, a list item, a heading
// or a line of prose: Markdown(Text(s, MaxCell)).
func Cell(s string) string { return Markdown(Text(s, MaxCell)) }

// Line is Cell for longer text such as an error message: at most MaxLine
// runes.
func Line(s string) string { return Markdown(Text(s, MaxLine)) }

// Fence returns a backtick code fence longer than any run of backticks in
// content, so the content cannot close it.
func Fence(content string) string {
	longest, run := 0, 0
	for i := 0; i < len(content); i++ {
		if content[i] == '`' {
			run++
			if run > longest {
				longest = run
			}
		} else {
			run = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}

// HTMLText escapes text for raw HTML (&, <, > and ").
func HTMLText(s string) string { return htmlEscaper.Replace(s) }

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
