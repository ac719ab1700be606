package report

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/escape/mdtest"
	"golang.org/x/net/html"
)

// These tests read the summary the way a user does: rendered (goldmark,
// GFM), as the text on the screen.

var tRead = time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)

// cellsOf renders md and returns the text of each body row's cells, per
// table, in order.
func cellsOf(t *testing.T, md string) [][][]string {
	t.Helper()
	doc := mdtest.Render(t, md, false)
	checkHTML(t, doc)
	var tables [][][]string
	mdtest.Walk(doc, func(n *html.Node) {
		if n.Type != html.ElementNode || n.Data != "table" {
			return
		}
		var rows [][]string
		for _, tb := range children(n, "tbody") {
			for _, tr := range children(tb, "tr") {
				var row []string
				for _, td := range children(tr, "td") {
					row = append(row, mdtest.Text(td))
				}
				rows = append(rows, row)
			}
		}
		tables = append(tables, rows)
	})
	return tables
}

// The resolver journals names in DNS presentation format, as miekg/dns
// writes them: a query for <script>alert(1)</script>.exfil.test is
// <script>alert\(1\)</script>.exfil.test in the journal.
const (
	queried   = "<script>alert(1)</script>.exfil.test"
	journaled = `<script>alert\(1\)</script>.exfil.test`
)

func TestSummaryShowsNamesAsQueried(t *testing.T) {
	p := event.Process{PID: 7, Exe: "/usr/bin/curl"}
	for _, mode := range []string{"audit", "block"} {
		t.Run(mode, func(t *testing.T) {
			v := event.Blocked
			if mode == "audit" {
				v = event.Audit
			}
			recs := []event.Record{
				{Start: &event.Start{Time: tRead, Mode: event.Mode(mode)}},
				{DNS: &event.DNS{Time: tRead, Name: journaled, Type: "A", Verdict: v, Answers: []string{"198.18.7.1"}, Process: p}},
				{Flow: &event.Flow{Time: tRead, IP: "198.18.7.1", Port: 443, Protocol: "tcp", Verdict: v, Process: p}},
				{Stop: &event.Stop{Time: tRead}},
			}
			r := Build(recs, Options{})
			if r.DNS[0].Name != journaled {
				t.Errorf("report.json name %q, want the journal's %q", r.DNS[0].Name, journaled)
			}
			md := r.Summary(0)
			var seen []string
			for _, tab := range cellsOf(t, md) {
				for _, row := range tab {
					if len(row) > 0 && strings.Contains(row[0], "script") {
						seen = append(seen, row[0])
					}
				}
			}
			// The destinations table and the DNS table.
			if len(seen) != 2 || seen[0] != queried || seen[1] != queried {
				t.Errorf("name cells %q, want %q twice", seen, queried)
			}
		})
	}
}

func TestSummaryFoldsRecordTypes(t *testing.T) {
	p := event.Process{PID: 7, Exe: "/usr/bin/curl"}
	recs := []event.Record{{Start: &event.Start{Time: tRead, Mode: "block"}}}
	for _, typ := range []string{"AAAA", "A", "A", "HTTPS"} {
		recs = append(recs, event.Record{DNS: &event.DNS{Time: tRead, Name: "c2VjcmV0.exfil.test", Type: typ, Verdict: event.Blocked, Process: p}})
	}
	recs = append(recs,
		event.Record{DNS: &event.DNS{Time: tRead, Name: "other.test", Type: "A", Verdict: event.Blocked, Process: p}},
		event.Record{Stop: &event.Stop{Time: tRead}})
	md := Build(recs, Options{}).Summary(0)
	var dnsRows [][]string
	for _, tab := range cellsOf(t, md) {
		if len(tab) > 0 && len(tab[0]) == 5 && strings.HasSuffix(tab[0][0], ".test") {
			dnsRows = tab
		}
	}
	want := [][]string{
		{"c2VjcmV0.exfil.test", "A, AAAA, HTTPS", "⛔ blocked", "4", "/usr/bin/curl (pid 7)"},
		{"other.test", "A", "⛔ blocked", "1", "/usr/bin/curl (pid 7)"},
	}
	if !slices.EqualFunc(dnsRows, want, slices.Equal) {
		t.Errorf("DNS rows\n%q\nwant\n%q\n%s", dnsRows, want, md)
	}
	// The by-step overview counts names, not record types.
	withSteps := Build(recs, Options{Steps: []Step{{Name: "Run build", Start: tRead.Add(-time.Second), End: tRead.Add(time.Second)}}})
	for _, tab := range cellsOf(t, withSteps.Summary(0)) {
		if len(tab) > 0 && len(tab[0]) == 6 && tab[0][0] == "Run build" {
			if tab[0][3] != "2" {
				t.Errorf("by-step row %q: want 2 DNS names blocked", tab[0])
			}
			return
		}
	}
	t.Error("no by-step row for Run build")
}

func TestSummaryVerdictFirst(t *testing.T) {
	recs := []event.Record{
		{Start: &event.Start{Time: tRead, Mode: "block"}},
		{Note: &event.Note{Time: tRead, Component: "agent", Level: "error", Message: "boom"}},
	}
	note := "> [!NOTE]\n> The jobs API is unavailable (no token was given).\n"
	md := Build(recs, Options{}).SummaryNotes(0, []string{note})
	lines := strings.Split(md, "\n")
	if !strings.HasPrefix(lines[0], "## 🛡️ harden-runner (block): ") {
		t.Fatalf("first line %q, want the verdict", lines[0])
	}
	i := strings.Index(md, "jobs API is unavailable")
	if i < 0 || i > strings.Index(md, "### ") {
		t.Errorf("note missing or below the tables:\n%s", md)
	}
	if j := strings.Index(md, "The agent reported 1 error"); j < 0 || j > i {
		t.Errorf("the report's own alerts should come right after the verdict, before the notes:\n%s", md)
	}
	// Notes count against the size limit.
	for _, limit := range []int{300, 600, 2000} {
		if got := Build(recs, Options{}).SummaryNotes(limit, []string{note}); len(got) > limit {
			t.Errorf("SummaryNotes(%d) is %d bytes", limit, len(got))
		}
	}
}

// In block mode the paste-ready block holds only endpoints the job used
// and got; what was blocked is listed for review, never in the block.
func TestSuggestedPolicyBlockModeSplit(t *testing.T) {
	p := event.Process{PID: 7, Exe: "/usr/bin/curl"}
	recs := []event.Record{
		{Start: &event.Start{Time: tRead, Mode: "block", AllowedEndpoints: []string{"good.test:443"}}},
		{DNS: &event.DNS{Time: tRead, Name: "good.test", Type: "A", Verdict: event.Allowed, Answers: []string{"198.18.7.1"}, Process: p}},
		{Flow: &event.Flow{Time: tRead, IP: "198.18.7.1", Port: 443, Protocol: "tcp", Verdict: event.Allowed, Process: p}},
		{DNS: &event.DNS{Time: tRead, Name: "c2VjcmV0.exfil.test", Type: "A", Verdict: event.Blocked, Process: p}},
		{Flow: &event.Flow{Time: tRead, IP: "198.18.7.9", Port: 22, Protocol: "tcp", Verdict: event.Blocked, Process: p}},
		{Stop: &event.Stop{Time: tRead}},
	}
	r := Build(recs, Options{})
	sp := r.SuggestedPolicy
	if !slices.Equal(sp.AllowedEndpoints, []string{"good.test:443"}) {
		t.Errorf("allowed_endpoints %q, want only what was used and allowed", sp.AllowedEndpoints)
	}
	var review []string
	for _, e := range sp.Review {
		review = append(review, e.Endpoint)
	}
	if !slices.Equal(review, []string{"c2vjcmv0.exfil.test:443", "198.18.7.9:22"}) {
		t.Errorf("review %q", review)
	}
	if strings.Contains(sp.WithBlock, "exfil") || strings.Contains(sp.WithBlock, "198.18.7.9") {
		t.Errorf("blocked endpoint in the paste-ready block:\n%s", sp.WithBlock)
	}
	md := r.Summary(0)
	yaml := md[strings.Index(md, "```yaml"):]
	yaml = yaml[:strings.Index(yaml[3:], "```")+6]
	if strings.Contains(yaml, "exfil") {
		t.Errorf("blocked name inside the yaml block:\n%s", md)
	}
	rev := strings.Index(md, "Review before allowing")
	if rev < 0 || rev < strings.Index(md, "```yaml") || !strings.Contains(md[rev:], `c2vjcmv0\.exfil\.test\:443`) {
		t.Errorf("no review list after the paste-ready block:\n%s", md)
	}

	// In audit mode nothing was blocked: everything is paste-ready.
	recs[0].Start.Mode = "audit"
	for _, rec := range recs {
		if rec.Flow != nil && rec.Flow.Verdict == event.Blocked {
			rec.Flow.Verdict = event.Audit
		}
		if rec.DNS != nil && rec.DNS.Verdict == event.Blocked {
			rec.DNS.Verdict = event.Audit
		}
	}
	if sp := Build(recs, Options{}).SuggestedPolicy; len(sp.Review) != 0 {
		t.Errorf("audit mode review %+v", sp.Review)
	}
}

// A process that connects to an address it never resolved must not be
// suggested (or shown) under a name another process resolved to it.
func TestDirectIPFlowGetsNoOtherProcessName(t *testing.T) {
	npm := event.Process{PID: 7, Exe: "/usr/bin/npm"}
	evil := event.Process{PID: 8, Exe: "/tmp/evil"}
	recs := []event.Record{
		{Start: &event.Start{Time: tRead, Mode: "block", AllowedEndpoints: []string{"registry.test:443"}}},
		{DNS: &event.DNS{Time: tRead, Name: "registry.test", Type: "A", Verdict: event.Allowed, Answers: []string{"198.18.7.1"}, Process: npm}},
		{Flow: &event.Flow{Time: tRead, IP: "198.18.7.1", Port: 443, Protocol: "tcp", Verdict: event.Allowed, Process: npm}},
		{Flow: &event.Flow{Time: tRead, IP: "198.18.7.1", Port: 8443, Protocol: "tcp", Verdict: event.Blocked, Process: evil}},
		{Stop: &event.Stop{Time: tRead}},
	}
	r := Build(recs, Options{})
	for _, e := range r.Egress {
		if e.Process.PID == evil.PID && e.Domain != "" {
			t.Errorf("evil's direct-IP flow named %q", e.Domain)
		}
	}
	all := append(slices.Clone(r.SuggestedPolicy.AllowedEndpoints), r.SuggestedPolicy.ReviewEndpoints()...)
	if slices.Contains(all, "registry.test:8443") || !slices.Contains(all, "198.18.7.1:8443") {
		t.Errorf("suggested %q, want the address entry 198.18.7.1:8443 and no registry.test:8443", all)
	}
	for _, e := range append(slices.Clone(r.SuggestedPolicy.Entries), r.SuggestedPolicy.Review...) {
		if e.Endpoint == "198.18.7.1:8443" && e.Reason != reasonDirectIP {
			t.Errorf("entry %s reason %q, want %q", e.Endpoint, e.Reason, reasonDirectIP)
		}
	}
}

func TestAgentHealthFolded(t *testing.T) {
	base := func() []event.Record {
		return []event.Record{
			{Start: &event.Start{Time: tRead, Mode: "block"}},
			{Stats: &event.Stats{Component: "flowlog", Events: 3}},
			{Stats: &event.Stats{Component: "resolver", Events: 2}},
		}
	}
	folded := func(md string) bool {
		i := strings.Index(md, "### Agent health")
		return i >= 0 && strings.HasPrefix(md[i+len("### Agent health\n\n"):], "<details>")
	}
	recs := append(base(), event.Record{Stop: &event.Stop{Time: tRead}})
	if md := Build(recs, Options{}).Summary(0); !folded(md) {
		t.Errorf("nothing lost, no error: health not folded:\n%s", md)
	}
	lost := append(base(), event.Record{Stats: &event.Stats{Component: "flowlog", Lost: 1}}, event.Record{Stop: &event.Stop{Time: tRead}})
	if md := Build(lost, Options{}).Summary(0); folded(md) {
		t.Errorf("a loss is folded away:\n%s", md)
	}
	errs := append(base(), event.Record{Note: &event.Note{Component: "agent", Level: "error", Message: "x"}}, event.Record{Stop: &event.Stop{Time: tRead}})
	if md := Build(errs, Options{}).Summary(0); folded(md) {
		t.Errorf("an error is folded away:\n%s", md)
	}
	unknown := []event.Record{{Start: &event.Start{Time: tRead, Mode: "block"}}, {Stop: &event.Stop{Time: tRead}}}
	if md := Build(unknown, Options{}).Summary(0); folded(md) {
		t.Errorf("unknown counters are folded away:\n%s", md)
	}
}
