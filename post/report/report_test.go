package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"go/parser"
	"go/token"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/journal"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// loadFixture reads and builds testdata/<name>.jsonl.
func loadFixture(t testing.TB, name string) *Report {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name+".jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, bad, err := journal.Read(f)
	if err != nil {
		t.Fatal(err)
	}
	return Build(recs, Options{JournalBadLines: bad})
}

func TestGolden(t *testing.T) {
	for _, name := range []string{"block", "audit", "hostile"} {
		t.Run(name, func(t *testing.T) {
			r := loadFixture(t, name)
			js, err := r.JSON()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name+".report.json", js)
			golden(t, name+".summary.md", []byte(r.Summary(DefaultSummaryMax)))
		})
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it); got:\n%s", p, got)
	}
}

func findEgress(r *Report, ip string, port uint16) []Egress {
	var out []Egress
	for _, e := range r.Egress {
		if e.IP == ip && e.Port == port {
			out = append(out, e)
		}
	}
	return out
}

// TestBuildBlock checks the block fixture's facts one by one, so a golden
// refresh cannot silently bless a regression.
func TestBuildBlock(t *testing.T) {
	r := loadFixture(t, "block")
	if r.Schema != Schema || r.Mode != "block" {
		t.Errorf("schema, mode = %q, %q", r.Schema, r.Mode)
	}

	// Same destination, two command lines: two rows; counts add up.
	api := findEgress(r, "198.18.0.10", 443)
	if len(api) != 2 || api[0].Domain != "api.github.com" || api[0].Count+api[1].Count != 3 {
		t.Errorf("api.github.com rows = %+v", api)
	}
	// Most recent answer names the flow; the other name is listed.
	if e := findEgress(r, "198.18.0.30", 443); len(e) != 1 || e[0].Domain != "www.pkg.test" ||
		!slices.Equal(e[0].OtherDomains, []string{"mirror.pkg.test"}) {
		t.Errorf("www.pkg.test row = %+v", e)
	}
	// The answer journaled just after the flow still names it.
	if e := findEgress(r, "198.18.0.40", 443); len(e) != 1 || e[0].Domain != "late.pkg.test" {
		t.Errorf("late.pkg.test row = %+v", e)
	}
	if e := findEgress(r, "198.18.1.1", 443); len(e) != 1 || e[0].Domain != "" || e[0].Verdict != event.Blocked ||
		e[0].Count != 2 || e[0].Process.Exe != "/usr/bin/python3.12" {
		t.Errorf("direct blocked row = %+v", e)
	}
	if e := findEgress(r, "198.18.2.2", 80); len(e) != 1 || !e[0].Forward {
		t.Errorf("forwarded row = %+v", e)
	}
	// Blocked first.
	for i, e := range r.Egress {
		if i > 0 && verdictRank(e.Verdict) < verdictRank(r.Egress[i-1].Verdict) {
			t.Errorf("egress not sorted by verdict at %d: %v after %v", i, e.Verdict, r.Egress[i-1].Verdict)
		}
	}

	// Used and reached: paste-ready. Refused: for review, never merged in.
	wantEndpoints := []string{"api.github.com:443", "ipv6.test:443", "late.pkg.test:443", "www.pkg.test:443"}
	if got := r.SuggestedPolicy.AllowedEndpoints; !slices.Equal(got, wantEndpoints) {
		t.Errorf("suggested endpoints =\n%q\nwant\n%q", got, wantEndpoints)
	}
	wantReview := []string{"evil.test:443", "198.18.1.1:443", "198.18.2.2:80", "[2001:db8::99]:8443"}
	if got := r.SuggestedPolicy.ReviewEndpoints(); !slices.Equal(got, wantReview) {
		t.Errorf("review =\n%q\nwant\n%q", got, wantReview)
	}
	for _, e := range append(slices.Clone(r.SuggestedPolicy.Entries), r.SuggestedPolicy.Review...) {
		if (e.Endpoint == "evil.test:443") != (e.Reason == reasonDNSOnly) {
			t.Errorf("entry %+v: wrong reason", e)
		}
	}
	if got, want := r.SuggestedPolicy.ImplicitExcluded, []string{"pipelines.actions.githubusercontent.com:443", "169.254.169.254:80"}; !slices.Equal(got, want) {
		t.Errorf("implicit excluded = %q, want %q", got, want)
	}
	if got := r.SuggestedPolicy.Rejected; len(got) != 1 || got[0].Reason != reasonNoPort || r.SuggestedPolicy.RejectedCount != 1 {
		t.Errorf("rejected = %+v", got)
	}
	wantYAML := "with:\n  egress-policy: block\n  allowed-endpoints: >\n" +
		"    api.github.com:443\n    ipv6.test:443\n    late.pkg.test:443\n    www.pkg.test:443\n"
	if r.SuggestedPolicy.WithBlock != wantYAML {
		t.Errorf("with block =\n%s\nwant\n%s", r.SuggestedPolicy.WithBlock, wantYAML)
	}

	if len(r.DNS) == 0 || r.DNS[0].Name != "evil.test" || r.DNS[0].Verdict != event.Blocked || r.DNS[0].Count != 2 {
		t.Errorf("first DNS row = %+v", r.DNS[0])
	}
	for _, d := range r.DNS {
		if d.Name == "api.github.com" && !slices.Equal(d.Answers, []string{"198.18.0.10", "198.18.0.11"}) {
			t.Errorf("api.github.com answers = %q", d.Answers)
		}
	}

	if len(r.Files) != 3 || r.Files[1].Path != ".github/workflows/ci.yml" || r.Files[1].Event != event.Delete {
		t.Errorf("files = %+v", r.Files)
	}

	a := r.Agent
	if !a.StoppedCleanly || a.Stop == nil || a.Start == nil {
		t.Errorf("agent start/stop = %v %v %v", a.Start, a.Stop, a.StoppedCleanly)
	}
	if a.JournalBadLines != 1 {
		t.Errorf("journal bad lines = %d, want 1 (the torn last line)", a.JournalBadLines)
	}
	if len(a.Errors) != 1 || a.Errors[0].Component != "resolver" {
		t.Errorf("errors = %+v", a.Errors)
	}
	if a.Lost.Total.Known || a.Lost.Known != 2 || a.Lost.ByComponent["flowlog"] != (Count{2, true}) ||
		a.Lost.ByComponent["filemon"].Known {
		t.Errorf("lost = %+v (filemon never reported: total must be unknown)", a.Lost)
	}
	if a.UnattributedEvents != 3 {
		t.Errorf("unattributed events = %d, want 3", a.UnattributedEvents)
	}

	c := r.Counts
	want := Counts{EgressAllowed: 8, EgressBlocked: 5, DestinationsAllowed: 6, DestinationsBlocked: 4,
		DNSQueries: 11, DNSBlocked: 4, DNSBlockedNames: 2, Files: 3}
	if c != want {
		t.Errorf("counts = %+v\nwant     %+v", c, want)
	}
}

func TestBuildNoStartNoStop(t *testing.T) {
	r := Build([]event.Record{{Flow: &event.Flow{IP: "198.18.0.1", Port: 443, Protocol: "tcp", Verdict: event.Audit}}}, Options{})
	if r.Agent.Start != nil || r.Agent.Stop != nil || r.Agent.StoppedCleanly {
		t.Errorf("agent = %+v", r.Agent)
	}
	js, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		t.Fatal(err)
	}
	agent := m["agent"].(map[string]any)
	if agent["stop"] != nil {
		t.Errorf("agent.stop = %v, want null", agent["stop"])
	}
	if lost := agent["lost"].(map[string]any); lost["total"] != "unknown" {
		t.Errorf("agent.lost.total = %v, want \"unknown\"", lost["total"])
	}
	msgs := func(ms []Message) string {
		var s []string
		for _, m := range ms {
			s = append(s, m.Message)
		}
		return strings.Join(s, "\n")
	}(r.Agent.Warnings)
	for _, want := range []string{"no start record", "did not stop cleanly"} {
		if !strings.Contains(msgs, want) {
			t.Errorf("warnings lack %q:\n%s", want, msgs)
		}
	}
	if s := r.Summary(0); !strings.Contains(s, "did not stop cleanly") {
		t.Errorf("summary does not say the agent did not stop cleanly:\n%s", s)
	}
	for _, k := range []string{"egress", "dns", "files", "allowed_endpoints", "implicit_allowed"} {
		if _, ok := m[k].([]any); !ok {
			t.Errorf("%s = %v, want a JSON array", k, m[k])
		}
	}
}

func TestDomainFor(t *testing.T) {
	t0 := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	dnsAt := func(sec float64, name string, ips ...string) event.Record {
		return event.Record{DNS: &event.DNS{Time: t0.Add(time.Duration(sec * float64(time.Second))), Name: name,
			Type: "A", Verdict: event.Allowed, Answers: ips}}
	}
	flowAt := func(sec float64, ip string) event.Record {
		return event.Record{Flow: &event.Flow{Time: t0.Add(time.Duration(sec * float64(time.Second))), IP: ip,
			Port: 443, Protocol: "tcp", Verdict: event.Allowed}}
	}
	tests := []struct {
		name string
		recs []event.Record
		want string
	}{
		{"earlier answer", []event.Record{dnsAt(0, "a.test", "198.18.0.1"), flowAt(1, "198.18.0.1")}, "a.test"},
		{"most recent wins", []event.Record{dnsAt(0, "a.test", "198.18.0.1"), dnsAt(1, "b.test", "198.18.0.1"), flowAt(2, "198.18.0.1")}, "b.test"},
		{"earlier beats later", []event.Record{dnsAt(0, "a.test", "198.18.0.1"), flowAt(1, "198.18.0.1"), dnsAt(1, "b.test", "198.18.0.1")}, "a.test"},
		{"later within skew", []event.Record{flowAt(1, "198.18.0.1"), dnsAt(1.5, "b.test", "198.18.0.1")}, "b.test"},
		{"later beyond skew", []event.Record{flowAt(1, "198.18.0.1"), dnsAt(10, "b.test", "198.18.0.1")}, ""},
		{"other address", []event.Record{dnsAt(0, "a.test", "198.18.0.2"), flowAt(1, "198.18.0.1")}, ""},
		{"cname target skipped", []event.Record{dnsAt(0, "a.test", "cdn.test", "198.18.0.1"), flowAt(1, "198.18.0.1")}, "a.test"},
		{"ipv6 canonical", []event.Record{dnsAt(0, "v6.test", "2001:DB8:0::1"), flowAt(1, "2001:db8::1")}, "v6.test"},
		{"v4-mapped flow", []event.Record{dnsAt(0, "m.test", "198.18.0.1"), flowAt(1, "::ffff:198.18.0.1")}, "m.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Build(tt.recs, Options{})
			if len(r.Egress) != 1 {
				t.Fatalf("egress = %+v", r.Egress)
			}
			if r.Egress[0].Domain != tt.want {
				t.Errorf("domain = %q, want %q", r.Egress[0].Domain, tt.want)
			}
		})
	}
}

// TestDomainForProcess: a flow takes the name its own process, or its
// nearest ancestor that asked, resolved to the address; an unrelated
// process's name never; an unknown querier's only with best-effort
// (procfs) attribution.
func TestDomainForProcess(t *testing.T) {
	t0 := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	const ip = "198.18.0.1"
	shell := event.Ancestor{PID: 10, Exe: "/bin/sh"}
	py := event.Ancestor{PID: 20, Exe: "/usr/bin/python3"}
	dnsBy := func(pid int, name string) event.Record {
		return event.Record{DNS: &event.DNS{Time: t0, Name: name, Type: "A", Verdict: event.Allowed,
			Answers: []string{ip}, Process: event.Process{PID: pid}}}
	}
	flowBy := func(pid int, parents ...event.Ancestor) event.Record {
		return event.Record{Flow: &event.Flow{Time: t0.Add(time.Second), IP: ip, Port: 443, Protocol: "tcp",
			Verdict: event.Allowed, Process: event.Process{PID: pid, Parents: parents}}}
	}
	tests := []struct {
		name        string
		attribution string
		recs        []event.Record
		want        string
	}{
		{"own query", "ebpf", []event.Record{dnsBy(30, "own.test"), flowBy(30, py, shell)}, "own.test"},
		{"own beats parent", "ebpf", []event.Record{dnsBy(30, "own.test"), dnsBy(20, "parent.test"), flowBy(30, py, shell)}, "own.test"},
		{"parent's query", "ebpf", []event.Record{dnsBy(20, "parent.test"), flowBy(30, py, shell)}, "parent.test"},
		{"nearest ancestor", "ebpf", []event.Record{dnsBy(10, "shell.test"), dnsBy(20, "parent.test"), flowBy(30, py, shell)}, "parent.test"},
		{"unrelated process", "ebpf", []event.Record{dnsBy(40, "exfil.test"), flowBy(30, py, shell)}, ""},
		{"child's query does not name the parent", "ebpf", []event.Record{dnsBy(30, "child.test"), flowBy(20, shell)}, ""},
		{"unknown querier, ebpf", "ebpf", []event.Record{dnsBy(0, "who.test"), flowBy(30, py, shell)}, ""},
		{"unknown querier, procfs", "procfs", []event.Record{dnsBy(0, "who.test"), flowBy(30, py, shell)}, "who.test"},
		{"unknown querier, own first", "procfs", []event.Record{dnsBy(0, "who.test"), dnsBy(30, "own.test"), flowBy(30)}, "own.test"},
		{"unknown flow takes only unknown queriers", "ebpf", []event.Record{dnsBy(40, "exfil.test"), flowBy(0)}, ""},
		{"unknown flow, unknown querier", "ebpf", []event.Record{dnsBy(0, "who.test"), flowBy(0)}, "who.test"},
		{"pid 1 asks for nobody", "ebpf", []event.Record{dnsBy(1, "init.test"), flowBy(30, event.Ancestor{PID: 1})}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := append([]event.Record{{Start: &event.Start{Time: t0, Mode: "audit", Attribution: tt.attribution}}}, tt.recs...)
			r := Build(recs, Options{})
			if len(r.Egress) != 1 {
				t.Fatalf("egress = %+v", r.Egress)
			}
			if r.Egress[0].Domain != tt.want {
				t.Errorf("domain = %q, want %q", r.Egress[0].Domain, tt.want)
			}
			if tt.want == "" && !slices.Contains(r.SuggestedPolicy.AllowedEndpoints, ip+":443") {
				t.Errorf("suggested %q, want the address entry %s:443", r.SuggestedPolicy.AllowedEndpoints, ip)
			}
		})
	}
}

// TestOtherDomainsCapped: a wildcard zone maps any number of names to one
// address; report.json must not grow with names × flows.
func TestOtherDomainsCapped(t *testing.T) {
	const n = 3000
	var recs []event.Record
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("n%d.wild.test", i)
		recs = append(recs,
			event.Record{DNS: &event.DNS{Name: name, Type: "A", Verdict: event.Allowed, Answers: []string{"198.18.0.1"}}},
			event.Record{Flow: &event.Flow{IP: "198.18.0.1", Port: 443, Protocol: "tcp", Verdict: event.Allowed}})
	}
	start := time.Now()
	r := Build(recs, Options{})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Build took %v", d)
	}
	if len(r.Egress) != n {
		t.Fatalf("%d egress rows, want %d", len(r.Egress), n)
	}
	for _, e := range r.Egress {
		if len(e.OtherDomains) != maxOtherDomains || e.OtherDomainsTotal != n-1 || slices.Contains(e.OtherDomains, e.Domain) {
			t.Fatalf("row %s: %d other domains, total %d", e.Domain, len(e.OtherDomains), e.OtherDomainsTotal)
		}
	}
	js, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if len(js) > n*2048 { // linear: ~1.1 KiB per flow, DNS row and suggestion
		t.Errorf("report.json is %d bytes for %d flows", len(js), n)
	}
}

func TestCheckObserved(t *testing.T) {
	tests := []struct {
		in       string
		needPort bool
		ok       bool
		wildcard bool
		port     uint16
	}{
		{"github.com:443", true, true, false, 443},
		{"GitHub.com:443", true, true, false, 443},
		{"*.github.com:443", true, true, true, 443},
		{"a_b-c.d:1", true, true, false, 1},
		{"198.18.0.1:80", true, true, false, 80},
		{"[2001:db8::1]:443", true, true, false, 443},
		{"2001:db8::1:443", true, false, false, 0},
		{"[198.18.0.1]:443", true, false, false, 0},
		{"[fe80::1%eth0]:443", true, false, false, 0},
		{"github.com", true, false, false, 0},
		{"github.com", false, true, false, 0},
		{"github.com:*", false, true, false, 0},
		{"github.com:*", true, false, false, 0},
		{"github.com:0", true, false, false, 0},
		{"github.com:065", true, false, false, 0},
		{"github.com:65536", true, false, false, 0},
		{"github.com:65535", true, true, false, 65535},
		{"github.com:44 3", true, false, false, 0},
		{"a.*.com:443", true, false, false, 0},
		{"*:443", true, false, false, 0},
		{"*.:443", true, false, false, 0},
		{"a..b:443", true, false, false, 0},
		{".a:443", true, false, false, 0},
		{"a.:443", true, false, false, 0},
		{"evil.com|x:443", true, false, false, 0},
		{"a\n  - run: x:443", true, false, false, 0},
		{"a b:443", true, false, false, 0},
		{"é.test:443", true, false, false, 0},
		{strings.Repeat("a", 63) + ".test:443", true, true, false, 443},
		{strings.Repeat("a", 64) + ".test:443", true, false, false, 0},
		{strings.Repeat("a.", 127) + "a:443", true, false, false, 0},
		{":443", true, false, false, 0},
	}
	for _, tt := range tests {
		if !tt.needPort {
			continue // implicit patterns: parsed by egress/policy, tested there
		}
		reason := checkObserved(normName(tt.in))
		ok := reason == "" || reason == reasonWildcard
		if ok != tt.ok || (reason == reasonWildcard) != tt.wildcard {
			t.Errorf("checkObserved(%q) = %q, want ok %v, wildcard %v", tt.in, reason, tt.ok, tt.wildcard)
		}
	}
}

func TestPatternsMatch(t *testing.T) {
	ps := compileImplicit([]string{"*.actions.githubusercontent.com:443", "github.com:22", "169.254.169.254:80",
		"[2001:db8::53]:53", "api.test:8080", "not valid!:443"})
	tests := []struct {
		domain, ip string
		port       uint16
		want       bool
	}{
		{"pipelines.actions.githubusercontent.com", "", 443, true},
		{"a.b.c.actions.githubusercontent.com", "", 443, true},
		{"actions.githubusercontent.com", "", 443, false}, // apex is not matched by *.
		{"pipelines.actions.githubusercontent.com", "", 80, false},
		{"evilactions.githubusercontent.com", "", 443, false},
		{"PIPELINES.Actions.GitHubUserContent.com.", "", 443, true},
		{"github.com", "", 22, true},
		{"github.com", "", 443, false},
		{"www.github.com", "", 443, false},
		{"", "169.254.169.254", 80, true},
		{"metadata.test", "169.254.169.254", 80, true},
		{"", "169.254.169.254", 443, false},
		{"", "::ffff:169.254.169.254", 80, true},
		{"", "2001:db8::53", 53, true},
		{"", "2001:0db8:0::53", 53, true},
		{"api.test", "", 8080, true},
		{"", "198.18.0.1", 443, false},
	}
	for _, tt := range tests {
		addr, _ := netip.ParseAddr(tt.ip)
		if got := ps.match(tt.domain, addr.Unmap(), tt.port); got != tt.want {
			t.Errorf("match(%q, %q, %d) = %v, want %v", tt.domain, tt.ip, tt.port, got, tt.want)
		}
	}
}

func TestSuggestRejectsHostileNames(t *testing.T) {
	var recs []event.Record
	names := []string{"ok.test", "*.wild.test", "evil.com|x", "a\n    - run: curl x", "x:1", "é.test", "UPPER.test."}
	for i, n := range names {
		ip := "198.18.9." + string(rune('1'+i))
		recs = append(recs,
			event.Record{DNS: &event.DNS{Name: n, Type: "A", Verdict: event.Audit, Answers: []string{ip}}},
			event.Record{Flow: &event.Flow{IP: ip, Port: 443, Protocol: "tcp", Verdict: event.Audit}})
	}
	sp := Build(recs, Options{}).SuggestedPolicy
	if want := []string{"ok.test:443", "upper.test:443"}; !slices.Equal(sp.AllowedEndpoints, want) {
		t.Errorf("allowed endpoints = %q, want %q", sp.AllowedEndpoints, want)
	}
	if sp.RejectedCount != 5 || len(sp.Rejected) != 5 {
		t.Errorf("rejected = %+v", sp.Rejected)
	}
	for _, rj := range sp.Rejected {
		if rj.Value == "*.wild.test:443" && rj.Reason != reasonWildcard {
			t.Errorf("wildcard rejected for %q", rj.Reason)
		}
	}
}

func TestCountJSON(t *testing.T) {
	for _, c := range []Count{{}, {0, true}, {42, true}} {
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var back Count
		if err := json.Unmarshal(b, &back); err != nil || back != c {
			t.Errorf("round trip %+v → %s → %+v, %v", c, b, back, err)
		}
	}
	if b, _ := json.Marshal(Count{}); string(b) != `"unknown"` {
		t.Errorf("unknown count marshals as %s", b)
	}
	var c Count
	if err := json.Unmarshal([]byte(`"0"`), &c); err == nil {
		t.Error(`"0" accepted as a count`)
	}
}

func TestWriteDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "report")
	r := loadFixture(t, "block")
	if err := WriteDir(dir, r); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("dir mode = %v, %v", st.Mode(), err)
	}
	for _, name := range []string{"report.json", "summary.md"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("%s mode = %v, %v", name, st.Mode(), err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || back.Schema != Schema || len(back.Egress) != len(r.Egress) {
		t.Errorf("report.json does not read back: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("dir holds %d entries, want 2 (no temp files left)", len(ents))
	}
	// Writing again over the existing files works.
	if err := WriteDir(dir, r); err != nil {
		t.Fatal(err)
	}
}

func TestWorkflowCommand(t *testing.T) {
	got := WorkflowCommand("error", map[string]string{"title": "blocked: evil,com", "file": "a\nb", "bad key": "x"},
		"evil.test\n::warning::pwned 100%")
	want := "::error file=a%0Ab,title=blocked%3A evil%2Ccom::evil.test%0A::warning::pwned 100%25"
	if got != want {
		t.Errorf("WorkflowCommand =\n%q\nwant\n%q", got, want)
	}
}

// TestImports keeps the package pure: the standard library, the event
// records and runnerstep's ancestry rules only (no nftables, no miekg/dns,
// nothing kernel-facing).
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if strings.Contains(strings.Split(p, "/")[0], ".") && p != "github.com/harden-runner/harden-runner/event" &&
				p != "github.com/harden-runner/harden-runner/runnerstep" &&
				p != "github.com/harden-runner/harden-runner/internal/escape" &&
				p != "github.com/harden-runner/harden-runner/egress/policy" {
				t.Errorf("%s imports %s", name, p)
			}
		}
	}
}

// TestWireNamesNotSuggested: a name whose labels no host name has (the
// resolver's text form of a dot, NUL or space inside a label) is never
// suggested, neither from a flow nor from a blocked query; and a relay
// flow's own name is its domain unless the relay had to quote it.
func TestWireNamesNotSuggested(t *testing.T) {
	recs := []event.Record{
		{DNS: &event.DNS{Name: `x\.allowed.test`, Type: "A", Verdict: event.Audit, Answers: []string{"198.18.9.1"}}},
		{Flow: &event.Flow{IP: "198.18.9.1", Port: 443, Protocol: "tcp", Verdict: event.Audit}},
		{DNS: &event.DNS{Name: `a\000.allowed.test`, Type: "A", Verdict: event.Blocked}},
		{Flow: &event.Flow{IP: "198.18.9.2", Port: 443, Protocol: "tcp", Verdict: event.Blocked, Name: "evil.test", Reason: "evil.test is not allowed on port 443"}},
		{Flow: &event.Flow{IP: "198.18.9.3", Port: 443, Protocol: "tcp", Verdict: event.Blocked, Name: `"a\x00b"`}},
	}
	r := Build(recs, Options{})
	// Blocked endpoints are for review, never paste-ready; the name with
	// an escaped dot is not offered at all (its address is).
	got := slices.Clone(r.SuggestedPolicy.AllowedEndpoints)
	for _, e := range r.SuggestedPolicy.Review {
		got = append(got, e.Endpoint)
	}
	slices.Sort(got)
	if want := []string{"198.18.9.3:443", "evil.test:443"}; !slices.Equal(got, want) {
		t.Errorf("suggested = %q, review %+v, want %q", r.SuggestedPolicy.AllowedEndpoints, r.SuggestedPolicy.Review, want)
	}
	for _, e := range r.Egress {
		if e.IP == "198.18.9.2" && (e.Domain != "evil.test" || e.Reason == "") {
			t.Errorf("relay flow: %+v", e)
		}
	}
}

// TestBuildSnapshot: a journal that ends with a Snapshot record is a
// report of a still-enforcing agent, not one that died: no "did not stop
// cleanly", a snapshot time, and the summary says later events are
// missing. A Stop after a Snapshot (the whole journal, later) is a
// normal stop. The journal's provenance is copied into agent.journal.
func TestBuildSnapshot(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	start := event.Record{Start: &event.Start{Time: t0, Mode: "block"}}
	snap := event.Record{Snapshot: &event.Snapshot{Time: t0.Add(time.Minute)}}
	info := JournalInfo{Verified: true, Via: "test", Bytes: 42, SHA256: "ab"}
	r := Build([]event.Record{start, snap}, Options{Journal: info})
	if r.Agent.Snapshot == nil || !r.Agent.Snapshot.Equal(t0.Add(time.Minute)) || r.Agent.StoppedCleanly {
		t.Errorf("agent %+v", r.Agent)
	}
	if !r.Agent.Journal.Verified || !r.Agent.Journal.Snapshot || r.Agent.Journal.Bytes != 42 {
		t.Errorf("agent.journal %+v", r.Agent.Journal)
	}
	for _, w := range r.Agent.Warnings {
		if strings.Contains(w.Message, "did not stop cleanly") {
			t.Errorf("a snapshot reads as a dead agent: %s", w.Message)
		}
	}
	sum := r.Summary(DefaultSummaryMax)
	if !strings.Contains(sum, "events after the snapshot are not in it") || strings.Contains(sum, "did not stop cleanly") {
		t.Errorf("summary:\n%s", sum)
	}

	r = Build([]event.Record{start, snap, {Stop: &event.Stop{Time: t0.Add(2 * time.Minute)}}}, Options{})
	if r.Agent.Snapshot != nil || !r.Agent.StoppedCleanly || r.Agent.Journal.Snapshot || r.Agent.Journal.Verified {
		t.Errorf("snapshot then stop: %+v", r.Agent)
	}
}

// TestAgentUsage: the agent's own CPU time and peak memory from its Stop
// record reach report.json and the summary's health facts; a Stop without
// them (an older agent) shows neither.
func TestAgentUsage(t *testing.T) {
	start := event.Record{Start: &event.Start{Mode: "audit"}}
	u := &event.Usage{UserSeconds: 0.25, SystemSeconds: 0.5, MaxRSSBytes: 41_500_000}
	r := Build([]event.Record{start, {Stop: &event.Stop{Usage: u}}}, Options{})
	if r.Agent.Usage == nil || *r.Agent.Usage != *u {
		t.Errorf("agent.usage = %+v, want %+v", r.Agent.Usage, u)
	}
	if s := r.Summary(0); !strings.Contains(s, "The agent's own use: 0.75 s CPU (0.25 user, 0.50 system), peak memory 41.5 MB") {
		t.Errorf("summary has no usage line:\n%s", s)
	}
	r = Build([]event.Record{start, {Stop: &event.Stop{}}}, Options{})
	if r.Agent.Usage != nil || strings.Contains(r.Summary(0), "own use") {
		t.Errorf("usage without a measurement: %+v", r.Agent.Usage)
	}
}

// TestNotCoveredInVerdict: "0 files tampered" is not the whole truth when
// the files were not watched; the verdict line says so.
func TestNotCoveredInVerdict(t *testing.T) {
	recs := []event.Record{
		{Start: &event.Start{Mode: "audit", FileMonitoring: true}},
		{Coverage: &event.Coverage{Component: "filemon", NotCovered: "every file", Reason: "the workspace was empty"}},
		{Stop: &event.Stop{}},
	}
	r := Build(recs, Options{})
	head, _, _ := strings.Cut(r.Summary(0), "\n")
	if !strings.Contains(head, "0 files tampered (⚠️ not watched: every file)") {
		t.Errorf("verdict line %q does not warn of what was not watched", head)
	}
	if len(r.Agent.NotCovered) != 1 {
		t.Errorf("report.json agent.not_covered = %v", r.Agent.NotCovered)
	}
	r = Build(recs[:1], Options{})
	if head, _, _ := strings.Cut(r.Summary(0), "\n"); strings.Contains(head, "not watched") {
		t.Errorf("verdict line %q warns with nothing uncovered", head)
	}
}

// TestSteering: a steering file is its own section and count, not a
// tampered file, and its writer's step is named.
func TestSteering(t *testing.T) {
	recs := []event.Record{
		{Start: &event.Start{Mode: "audit", FileMonitoring: true, Workspace: "/w"}},
		{Steer: &event.Steer{Path: ".npmrc", Change: "created", Why: "npm configuration (registry, scripts)",
			Process: event.Process{PID: 7, Exe: "/usr/bin/dash"}}},
		{Stop: &event.Stop{}},
	}
	r := Build(recs, Options{})
	if len(r.Steering) != 1 || len(r.Files) != 0 || r.Agent.UnknownRecords != 0 {
		t.Fatalf("steering %v, files %v, unknown records %d", r.Steering, r.Files, r.Agent.UnknownRecords)
	}
	s := r.Summary(0)
	head, _, _ := strings.Cut(s, "\n")
	if !strings.Contains(head, "0 files tampered, 1 steering file") || !strings.Contains(s, "### Files that steer") || !strings.Contains(s, "npm configuration") {
		t.Errorf("summary does not show the steering file:\n%s", s)
	}
}

// TestBuildGap: a journal continued by an agent restarted after a kill
// (two Start records, a Gap between) reports the gap with its length as
// a tamper error, and no "started again" puzzle; a second Start without a
// Gap still gets that warning.
func TestBuildGap(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	start := func(d time.Duration) event.Record {
		return event.Record{Start: &event.Start{Time: t0.Add(d), Mode: "block"}}
	}
	gap := event.Record{Gap: &event.Gap{From: t0.Add(10 * time.Second), To: t0.Add(11500 * time.Millisecond), Reason: "killed by signal 9 (killed)"}}
	for _, tc := range []struct {
		name     string
		recs     []event.Record
		gaps     int
		restarts bool // the "more than one start record" warning
	}{
		{"restart with gap", []event.Record{start(0), start(11 * time.Second), gap}, 1, false},
		{"restart without gap", []event.Record{start(0), start(11 * time.Second)}, 0, true},
		{"one start", []event.Record{start(0)}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Build(tc.recs, Options{})
			if len(r.Agent.Gaps) != tc.gaps {
				t.Fatalf("gaps %+v, want %d", r.Agent.Gaps, tc.gaps)
			}
			warned := false
			for _, w := range r.Agent.Warnings {
				warned = warned || strings.Contains(w.Message, "more than one start record")
			}
			if warned != tc.restarts {
				t.Errorf("start-again warning %v, want %v: %+v", warned, tc.restarts, r.Agent.Warnings)
			}
			if tc.gaps == 0 {
				return
			}
			if g := r.Agent.Gaps[0]; g.Seconds != 1.5 || g.Reason != "killed by signal 9 (killed)" {
				t.Errorf("gap %+v", g)
			}
			tam := r.Tampering()
			if len(tam) != 1 || !strings.Contains(tam[0].Message, "not running for 1.500 s") || !strings.Contains(tam[0].Message, "signal 9") {
				t.Errorf("tampering %+v", tam)
			}
			if sum := r.Summary(DefaultSummaryMax); !strings.Contains(sum, `not running for 1\.500 s`) {
				t.Errorf("summary lacks the gap:\n%s", sum)
			}
		})
	}
}

// TestBuildLiveStats: a snapshot carries the running components' counts
// (Stats.Live): a report that ends there knows what was lost so far; a
// component's own Stats when it stops supersede its live ones; the live
// counts of an agent that died after them are its last word.
func TestBuildLiveStats(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	start := event.Record{Start: &event.Start{Time: t0, Mode: "block"}}
	st := func(c event.Component, lost uint64, live bool) event.Record {
		return event.Record{Stats: &event.Stats{Component: c, Events: 10, Lost: lost, Live: live}}
	}
	snap := event.Record{Snapshot: &event.Snapshot{Time: t0.Add(time.Minute)}}
	stop := event.Record{Stop: &event.Stop{Time: t0.Add(2 * time.Minute)}}
	gap := event.Record{Gap: &event.Gap{From: t0.Add(90 * time.Second), To: t0.Add(91 * time.Second), Reason: "x"}}
	for _, tc := range []struct {
		name  string
		recs  []event.Record
		known bool
		lost  uint64
	}{
		{"snapshot without live counts", []event.Record{start, snap}, false, 0},
		{"snapshot with live counts", []event.Record{start, st("flowlog", 2, true), st("resolver", 0, true), snap}, true, 2},
		{"superseded at stop", []event.Record{start, st("flowlog", 2, true), st("resolver", 0, true), snap,
			st("flowlog", 3, false), st("resolver", 1, false), stop}, true, 4},
		{"died after the snapshot", []event.Record{start, st("flowlog", 2, true), st("resolver", 0, true), snap,
			start, gap, st("flowlog", 1, false), st("resolver", 0, false), stop}, true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Build(tc.recs, Options{})
			if got := r.Agent.Lost.Total; got.Known != tc.known || tc.known && got.N != tc.lost {
				t.Errorf("lost %+v, want known %v, %d", got, tc.known, tc.lost)
			}
		})
	}
}

// TestFoldedFlows: a record the flow log folded stands for Count flows in
// every count, unattributed ones too.
func TestFoldedFlows(t *testing.T) {
	t0 := time.Unix(1000, 0)
	recs := []event.Record{
		{Flow: &event.Flow{Time: t0, IP: "198.18.0.2", Port: 443, Protocol: "tcp", Verdict: event.Allowed}},
		{Flow: &event.Flow{Time: t0.Add(time.Second), IP: "198.18.0.2", Port: 443, Protocol: "tcp", Verdict: event.Allowed, Count: 4}},
		{Flow: &event.Flow{Time: t0.Add(2 * time.Second), IP: "198.18.0.3", Port: 22, Protocol: "tcp", Verdict: event.Blocked, Count: 3}},
	}
	r := Build(recs, Options{})
	if e := findEgress(r, "198.18.0.2", 443); len(e) != 1 || e[0].Count != 5 || !e[0].LastSeen.Equal(t0.Add(time.Second)) {
		t.Errorf("allowed row = %+v, want count 5", e)
	}
	if e := findEgress(r, "198.18.0.3", 22); len(e) != 1 || e[0].Count != 3 {
		t.Errorf("blocked row = %+v, want count 3", e)
	}
	if r.Agent.UnattributedEvents != 8 {
		t.Errorf("unattributed = %d, want 8", r.Agent.UnattributedEvents)
	}
	if r.Counts.EgressAllowed != 5 || r.Counts.EgressBlocked != 3 {
		t.Errorf("counts = %+v", r.Counts)
	}
}
