package report

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
)

// maxCellRunes caps how much of one attacker-controlled string a summary
// cell shows; report.json keeps the whole value.
const maxCellRunes = 200

// zwsp is inserted after every '@' so that GitHub neither links @mentions
// nor e-mail addresses in displayed data.
const zwsp = "\u200b"

// display turns untrusted data into the single line of text a reader
// should see: invalid UTF-8 becomes U+FFFD, newline and the other C0
// controls become their Unicode "control pictures" (U+2424 for newline),
// other invisible or format characters (bidi overrides, zero-width,
// non-breaking spaces) become a visible \u{XXXX}, tabs become spaces,
// runs of spaces collapse to one, the ends are trimmed, at most max runes
// are kept ("…" marks a cut) and a zero-width space follows every '@'.
// The result contains no markdown escaping yet: see escapeMarkdown.
func display(s string, max int) string {
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

// escapeMarkdown makes one line of text (as display returns it) inert in
// GitHub-flavoured markdown, inline, in a list item or inside a table cell:
// ASCII punctuation that markdown could read as syntax is backslash-escaped
// (so no emphasis, links, images, code spans, math, autolinks, table pipes,
// list markers or headings can start; '.' and ':' break www. and scheme
// autolinks), and <, >, & and " are written as character references.
func escapeMarkdown(s string) string {
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
			// display never returns these; never let one through.
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

// isMarkdownPunct reports whether c is ASCII punctuation that escapeMarkdown
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

// cell renders untrusted data for a GFM table cell or a line of prose.
func cell(s string) string { return escapeMarkdown(display(s, maxCellRunes)) }

// EscapeWorkflowCommand escapes the data (message) part of a GitHub
// Actions workflow command such as ::error::, the way the runner expects:
// '%' → %25, CR → %0D, LF → %0A. The result cannot end the command early
// nor start a new one on a new line.
func EscapeWorkflowCommand(s string) string {
	return workflowEscaper.Replace(s)
}

// EscapeWorkflowProperty escapes a property value of a workflow command
// (file=, title=, ...): like EscapeWorkflowCommand, and also ':' → %3A and
// ',' → %2C.
func EscapeWorkflowProperty(s string) string {
	return workflowPropertyEscaper.Replace(s)
}

var (
	workflowEscaper         = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")
	workflowPropertyEscaper = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A", ":", "%3A", ",", "%2C")
)

// WorkflowCommand formats one workflow command line, e.g.
// WorkflowCommand("error", map[string]string{"title": t}, msg) →
// "::error title=...::msg". Property values and the message are escaped;
// properties are written in key order, and keys that are not plain ASCII
// letters/digits are dropped. cmd must be a literal command name.
func WorkflowCommand(cmd string, props map[string]string, message string) string {
	var b strings.Builder
	b.WriteString("::")
	b.WriteString(cmd)
	keys := make([]string, 0, len(props))
	for k := range props {
		if isIdent(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteByte(',')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(EscapeWorkflowProperty(props[k]))
	}
	b.WriteString("::")
	b.WriteString(EscapeWorkflowCommand(message))
	return b.String()
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// fence returns a backtick code fence longer than any run of backticks in
// content, so the content cannot close it.
func fence(content string) string {
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
