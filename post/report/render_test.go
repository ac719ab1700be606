package report

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/escape"
	"github.com/harden-runner/harden-runner/internal/escape/mdtest"
	"golang.org/x/net/html"
)

// allowedElements are the only elements the summary may produce. In
// particular: no a, img, script, strong, em, del, input, math.
var allowedElements = map[string]bool{
	"html": true, "head": true, "body": true, "h2": true, "h3": true, "h4": true, "p": true,
	"blockquote": true, "ul": true, "li": true, "table": true, "thead": true, "tbody": true,
	"tr": true, "th": true, "td": true, "pre": true, "code": true, "details": true, "summary": true,
}

func children(n *html.Node, tag string) []*html.Node {
	var out []*html.Node
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode && c.Data == tag {
			out = append(out, c)
		}
	}
	return out
}

// checkHTML asserts the structural safety properties of rendered HTML and
// returns the text of every table cell.
func checkHTML(t testing.TB, doc *html.Node) (cells map[string]int) {
	t.Helper()
	cells = map[string]int{}
	mdtest.Walk(doc, func(n *html.Node) {
		switch n.Type {
		case html.ElementNode:
			if !allowedElements[n.Data] {
				t.Errorf("element <%s> in rendered summary", n.Data)
			}
			if n.Data == "code" && (n.Parent == nil || n.Parent.Data != "pre") {
				t.Errorf("inline <code> from data: %q", mdtest.Text(n))
			}
			for _, a := range n.Attr {
				ok := (n.Data == "td" || n.Data == "th") && a.Key == "style" && a.Val == "text-align:right" ||
					n.Data == "code" && a.Key == "class" && a.Val == "language-yaml"
				if !ok {
					t.Errorf("attribute %s=%q on <%s>", a.Key, a.Val, n.Data)
				}
			}
			if n.Data == "table" {
				checkTable(t, n)
			}
			if n.Data == "td" {
				cells[mdtest.Text(n)]++
			}
		case html.TextNode:
			for _, line := range strings.Split(n.Data, "\n") {
				if strings.HasPrefix(strings.TrimSpace(line), "::") {
					t.Errorf("rendered text line starts with '::': %q", line)
				}
			}
		}
	})
	return cells
}

func checkTable(t testing.TB, table *html.Node) {
	t.Helper()
	var want int
	for _, sec := range []string{"thead", "tbody"} {
		for _, s := range children(table, sec) {
			for _, tr := range children(s, "tr") {
				n := len(children(tr, "th")) + len(children(tr, "td"))
				if want == 0 {
					want = n
				} else if n != want {
					t.Errorf("table row has %d cells, header %d: %q", n, want, mdtest.Text(tr))
				}
			}
		}
	}
}

// checkSource asserts properties of the markdown text itself: every table
// line has the header's number of unescaped pipes (goldmark silently drops
// extra cells, so the HTML alone cannot show an injected one), no line
// starts with "::", <details> is balanced.
func checkSource(t testing.TB, md string) {
	t.Helper()
	pipes := -1
	for i, line := range strings.Split(md, "\n") {
		if strings.HasPrefix(line, "::") {
			t.Errorf("line %d starts with '::': %q", i+1, line)
		}
		if !strings.HasPrefix(line, "|") {
			pipes = -1
			continue
		}
		if !strings.HasSuffix(line, " |") {
			t.Errorf("line %d: table row cut: %q", i+1, line)
		}
		n := mdtest.UnescapedPipes(line)
		if pipes < 0 {
			pipes = n
		} else if n != pipes {
			t.Errorf("line %d has %d cell separators, header %d: %q", i+1, n, pipes, line)
		}
	}
	if o, c := strings.Count(md, "<details>"), strings.Count(md, "</details>"); o != c {
		t.Errorf("<details> %d opened, %d closed", o, c)
	}
}

// hostileReport builds a report where every hostile string is a DNS name,
// a flow's domain, an executable, a command line, a file path and a note.
func hostileReport() *Report {
	t0 := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	recs := []event.Record{{Start: &event.Start{Time: t0, Mode: "block", FileMonitoring: true}}}
	for i, s := range mdtest.Hostile {
		p := event.Process{PID: 2000 + i, Exe: "/tmp/" + s, Cmdline: s}
		ip := fmt.Sprintf("198.18.6.%d", i+1)
		recs = append(recs,
			event.Record{DNS: &event.DNS{Time: t0, Name: s, Type: "A", Verdict: event.Allowed, Answers: []string{ip}, Process: p}},
			event.Record{DNS: &event.DNS{Time: t0, Name: "b." + s, Type: "A", Verdict: event.Blocked, Process: p}},
			event.Record{Flow: &event.Flow{Time: t0, IP: ip, Port: 443, Protocol: "tcp", Verdict: event.Blocked, Process: p}},
			event.Record{File: &event.File{Time: t0, Path: s, Event: event.Overwrite, Process: p}},
			event.Record{Note: &event.Note{Time: t0, Component: event.Component(s), Level: "error", Message: s}},
		)
	}
	recs = append(recs, event.Record{Stop: &event.Stop{Time: t0}})
	return Build(recs, Options{})
}

func TestSummaryHostileRendersInert(t *testing.T) {
	r := hostileReport()
	md := r.Summary(DefaultSummaryMax)
	checkSource(t, md)
	for _, unsafe := range []bool{false, true} {
		t.Run(fmt.Sprintf("unsafe=%v", unsafe), func(t *testing.T) {
			doc := mdtest.Render(t, md, unsafe)
			cells := checkHTML(t, doc)
			for _, s := range mdtest.Hostile {
				if s == "" {
					continue
				}
				// As a flow's domain and as a file path (allowed DNS names
				// are not listed). A name is shown as the query carried it:
				// the journal's DNS escapes undone (see displayName).
				want := escape.Text(s, escape.MaxCell)
				asName := escape.Text(displayName(s), escape.MaxCell)
				n := cells[want] + cells[asName]
				if want == asName {
					n = cells[want]
				}
				if n != 2 {
					t.Errorf("%q: cell texts %q and %q appear %d times, want 2", s, want, asName, n)
				}
				if cells[escape.Text(displayName("b."+s), escape.MaxCell)] != 1 {
					t.Errorf("%q: blocked-name cell missing", s)
				}
			}
			// One table row per hostile string in each table, no more.
			var rows int
			mdtest.Walk(doc, func(n *html.Node) {
				if n.Type == html.ElementNode && n.Data == "tbody" {
					rows += len(children(n, "tr"))
				}
			})
			// Egress rows (one per exe group) + DNS rows + file rows + health rows.
			wantRows := len(mdtest.Hostile) + len(mdtest.Hostile) + len(mdtest.Hostile) + len(r.Agent.Components) + 1
			if rows != wantRows {
				t.Errorf("%d table rows, want %d", rows, wantRows)
			}
			text := mdtest.Text(doc)
			for _, bad := range []string{"\u202e", "\x1b"} {
				if strings.Contains(text, bad) {
					t.Errorf("rendered text contains %q", bad)
				}
			}
			if strings.Contains(text, "@octocat") {
				t.Error("an @mention survives as plain text")
			}
		})
	}
	// The YAML block holds only valid endpoints.
	yaml := regexp.MustCompile("(?s)```yaml\n(.*?)```")
	m := yaml.FindStringSubmatch(md)
	if m == nil {
		t.Fatal("no yaml block")
	}
	checkWithBlock(t, m[1])
}

var endpointRE = regexp.MustCompile(`^(?:[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*|\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-f:.]+\]):[1-9][0-9]{0,4}$`)

func checkWithBlock(t testing.TB, y string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(y, "\n"), "\n")
	if len(lines) < 3 || lines[0] != "with:" || lines[1] != "  egress-policy: block" {
		t.Fatalf("with block head: %q", y)
	}
	if lines[2] == `  allowed-endpoints: ""` && len(lines) == 3 {
		return
	}
	if lines[2] != "  allowed-endpoints: >" {
		t.Fatalf("with block line 3: %q", lines[2])
	}
	for _, l := range lines[3:] {
		ep, ok := strings.CutPrefix(l, "    ")
		if !ok || !endpointRE.MatchString(ep) {
			t.Errorf("with block line %q is not an indented endpoint", l)
		}
	}
}

func TestGoldenSummariesRender(t *testing.T) {
	for _, name := range []string{"block", "audit", "hostile"} {
		r := loadFixture(t, name)
		md := r.Summary(DefaultSummaryMax)
		checkSource(t, md)
		for _, unsafe := range []bool{false, true} {
			checkHTML(t, mdtest.Render(t, md, unsafe))
		}
		checkWithBlock(t, r.SuggestedPolicy.WithBlock)
	}
}

// bigReport has n flows to distinct addresses and names, from a few processes.
func bigReport(n int) *Report {
	t0 := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	recs := make([]event.Record, 0, 2*n+2)
	recs = append(recs, event.Record{Start: &event.Start{Time: t0, Mode: "block", FileMonitoring: true}})
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("198.18.%d.%d", i/250%256, i%250+1)
		if i >= 64000 {
			ip = fmt.Sprintf("2001:db8::%x:%x", i>>16, i&0xffff)
		}
		name := fmt.Sprintf("host-%d.example.test", i)
		p := event.Process{PID: 100 + i%7, Exe: fmt.Sprintf("/usr/bin/tool%d", i%7)}
		v := event.Allowed
		if i%3 == 0 {
			v = event.Blocked
		}
		recs = append(recs,
			event.Record{DNS: &event.DNS{Time: t0, Name: name, Type: "A", Verdict: event.Allowed, Answers: []string{ip}}},
			event.Record{Flow: &event.Flow{Time: t0, IP: ip, Port: 443, Protocol: "tcp", Verdict: v, Process: p}},
		)
		if i%10 == 0 {
			recs = append(recs, event.Record{File: &event.File{Time: t0, Path: fmt.Sprintf("src/f%d.go", i), Event: event.Overwrite, Process: p}})
		}
	}
	recs = append(recs, event.Record{Stop: &event.Stop{Time: t0}})
	return Build(recs, Options{})
}

func TestSummaryTruncation(t *testing.T) {
	start := time.Now()
	r := bigReport(100_000)
	built := time.Since(start)
	start = time.Now()
	md := r.Summary(DefaultSummaryMax)
	t.Logf("100k flows: Build %v, Summary %v, %d bytes", built, time.Since(start), len(md))
	if len(md) > DefaultSummaryMax {
		t.Fatalf("summary is %d bytes, limit %d", len(md), DefaultSummaryMax)
	}
	if len(md) < DefaultSummaryMax*9/10 {
		t.Errorf("summary is only %d bytes of %d: the budget is wasted", len(md), DefaultSummaryMax)
	}
	if !strings.Contains(md, "cut short") || !strings.Contains(md, "table rows were left out") {
		t.Error("no truncation note")
	}
	if n, m := len(r.SuggestedPolicy.AllowedEndpoints), len(r.SuggestedPolicy.Review); n != 66_666 || m != 33_334 || r.SuggestedPolicy.RejectedCount != 0 {
		t.Errorf("%d suggested endpoints, %d for review, %d rejected; want 66666, 33334, 0", n, m, r.SuggestedPolicy.RejectedCount)
	}
	for _, want := range []string{"## 🛡️ harden-runner (block): 33334 destinations blocked, 66666 allowed", "### Agent health",
		"### Suggested policy", "suggested_policy in report.json"} {
		if !strings.Contains(md, want) {
			t.Errorf("truncated summary lost %q", want)
		}
	}
	checkSource(t, md)
	checkHTML(t, mdtest.Render(t, md, true))
}

func TestSummaryAnyLimit(t *testing.T) {
	r := bigReport(300)
	full := r.Summary(1 << 30)
	if strings.Contains(full, "cut short") {
		t.Fatal("unlimited summary was truncated")
	}
	for limit := 1; limit < len(full)+100; limit += 97 {
		md := r.Summary(limit)
		if len(md) > limit {
			t.Fatalf("Summary(%d) is %d bytes", limit, len(md))
		}
		if len(md) < len(full) && limit > 400 && !strings.Contains(md, "cut short") {
			t.Errorf("Summary(%d) shortened without a note", limit)
		}
		checkSource(t, md)
	}
	if s := r.Summary(len(full)); s != full {
		t.Errorf("Summary(exact size) differs from the full summary")
	}
}

// TestPrivilegeUseRendersInert: sudo's command line is the workload's
// own text; it must come out as one inert cell.
func TestPrivilegeUseRendersInert(t *testing.T) {
	hostile := "sudo sh -c 'curl x | sh' <script>alert(1)</script>\n::error::pwned `id` | [x](javascript:alert(1))"
	recs := []event.Record{
		{Start: &event.Start{Mode: "block"}},
		{Exec: &event.Exec{Program: "/usr/bin/sudo", Process: event.Process{PID: 42, Exe: "/usr/bin/sudo", Cmdline: hostile}}},
		// A refused docker request: its path is the client's text.
		{Exec: &event.Exec{Program: "/var/run/docker.sock", Verdict: event.Blocked, Detail: "GET /v1.41/<b>x</b>|y",
			Process: event.Process{PID: 43, Exe: "/usr/bin/docker"}}},
	}
	r := Build(recs, Options{})
	if len(r.Privileged) != 2 || r.Privileged[0].Process.Cmdline != hostile || r.Privileged[1].Verdict != event.Blocked {
		t.Fatalf("privileged: %+v", r.Privileged)
	}
	md := r.Summary(0)
	if !strings.Contains(md, "### Privilege use") {
		t.Fatalf("no privilege section:\n%s", md)
	}
	checkSource(t, md)
	for _, unsafe := range []bool{false, true} {
		cells := checkHTML(t, mdtest.Render(t, md, unsafe))
		found := false
		for c := range cells {
			found = found || strings.Contains(c, "<script>alert(1)</script>")
		}
		if !found {
			t.Errorf("unsafe=%v: the command line is not one visible text cell: %v", unsafe, cells)
		}
		if cells["/var/run/docker.sock — blocked: GET /v1.41/<b>x</b>|y"] != 1 {
			t.Errorf("unsafe=%v: the refused docker request is not one visible text cell: %v", unsafe, cells)
		}
	}
}
