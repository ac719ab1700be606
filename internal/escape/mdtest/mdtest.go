// Package mdtest renders GitHub-flavoured markdown for tests that check
// what a reader sees: goldmark with the GFM extensions (tables, linkify,
// strikethrough, task lists), parsed back into an HTML tree.
package mdtest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/renderer"
	ghtml "github.com/yuin/goldmark/renderer/html"
	"golang.org/x/net/html"
)

// Render renders md and parses the HTML. unsafe passes raw HTML through,
// modelling a renderer with no sanitizer at all.
func Render(t testing.TB, md string, unsafe bool) *html.Node {
	t.Helper()
	var opts []renderer.Option
	if unsafe {
		opts = append(opts, ghtml.WithUnsafe())
	}
	g := goldmark.New(goldmark.WithExtensions(extension.GFM), goldmark.WithRendererOptions(opts...))
	var buf bytes.Buffer
	if err := g.Convert([]byte(md), &buf); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// Walk calls f for n and every node below it, in document order.
func Walk(n *html.Node, f func(*html.Node)) {
	f(n)
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		Walk(c, f)
	}
}

// Text is the text a reader sees in n: its text nodes, concatenated.
func Text(n *html.Node) string {
	var b strings.Builder
	Walk(n, func(c *html.Node) {
		if c.Type == html.TextNode {
			b.WriteString(c.Data)
		}
	})
	return b.String()
}

// UnescapedPipes counts the '|' in a markdown table line that are not
// backslash-escaped: cell separators.
func UnescapedPipes(line string) int {
	n := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '\\':
			i++
		case '|':
			n++
		}
	}
	return n
}

// Hostile are names, paths and command lines a workload controls, as the
// escaper's and the report's tests feed them to markdown and workflow
// commands: one corpus, so a string that breaks one breaks both tests.
var Hostile = []string{
	"<script>alert(1)</script>.exfil.test",
	"evil.com|<script>alert(1)</script>",
	"a\n::error::pwned",
	"\n::warning file=x::y",
	"`x`",
	"``` \n# heading",
	"[click](javascript:alert(1))",
	"![img](http://198.18.0.1/x.png)",
	"**bold** _em_ ~~del~~",
	"<img src=x onerror=alert(1)>",
	"</details><script>alert(1)</script>",
	"@octocat",
	"mail@evil.test",
	"www.evil.test",
	"https://evil.test/x",
	"&lt;b&gt; &#60;i&#62; &amp;",
	"$x^2$ $$y$$",
	"a\\\\|b",
	"x_y_ *z* ~a~ \\*",
	"<https://evil.test>",
	"foo@bar.example",
	"- [ ] task",
	"1. item",
	"> quote",
	"a\\(1\\)",
	"x\\|y",
	"x\\",
	"| a | b |",
	"1. ordered",
	"# heading",
	"[^1]",
	"bidi\u202eexe.gpj",
	"tab\there\r\nCRLF",
	"\x1b]8;;http://evil.test\x1b\\link",
	"<!-- comment",
	"<![CDATA[x]]>",
	"<?php x ?>",
	"\\",
	"",
}
