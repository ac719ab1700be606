package report

import (
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

func TestStepAt(t *testing.T) {
	base := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return base.Add(time.Duration(s * float64(time.Second))) }
	steps := []Step{
		{Name: "Set up job", Start: at(0), End: at(2)},
		{Name: "Skipped"}, // no times: never matches
		{Name: "Checkout", Start: at(2), End: at(5)},
		{Name: "Build", Start: at(5), End: at(30)},
		{Name: "Post harden-runner", Start: at(40)}, // still running
	}
	for _, tt := range []struct {
		name string
		t    time.Time
		want string
	}{
		{"zero time", time.Time{}, ""},
		{"before the job", at(-1), ""},
		{"first step", at(1), "Set up job"},
		{"shared second: the later step", at(2.4), "Checkout"},
		{"inside, sub-second", at(4.999), "Checkout"},
		{"end second is inclusive", at(30.7), "Build"},
		{"gap between steps", at(35), ""},
		{"open-ended running step", at(3600), "Post harden-runner"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := stepAt(steps, tt.t); got != tt.want {
				t.Errorf("stepAt(%v) = %q, want %q", tt.t, got, tt.want)
			}
		})
	}
	if got := stepAt(nil, at(1)); got != "" {
		t.Errorf("no steps: %q", got)
	}
}

func TestBuildLabelsSteps(t *testing.T) {
	base := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	p := event.Process{PID: 5, Exe: "/usr/bin/curl"}
	hostileStep := "Build | x\n::error::y <b>z</b>"
	recs := []event.Record{
		{Start: &event.Start{Time: base, Mode: "block", FileMonitoring: true}},
		{DNS: &event.DNS{Time: base.Add(time.Second), Name: "b.test", Type: "A", Verdict: event.Allowed, Answers: []string{"198.18.0.1", "198.18.0.2"}, Process: p}},
		{DNS: &event.DNS{Time: base.Add(3 * time.Second), Name: "a.test", Type: "A", Verdict: event.Blocked, Rcode: "NXDOMAIN", Process: p}},
		{Flow: &event.Flow{Time: base.Add(3 * time.Second), IP: "198.18.0.1", Port: 443, Protocol: "tcp", Verdict: event.Blocked, Process: p}},
		// The same address again in the next step: one report row, first
		// seen in Checkout.
		{Flow: &event.Flow{Time: base.Add(10 * time.Second), IP: "198.18.0.1", Port: 443, Protocol: "tcp", Verdict: event.Blocked, Process: p}},
		// b.test's other address in the next step: another report row,
		// merged with the first in the summary, which lists both steps.
		{Flow: &event.Flow{Time: base.Add(10 * time.Second), IP: "198.18.0.2", Port: 443, Protocol: "tcp", Verdict: event.Blocked, Process: p}},
		{Flow: &event.Flow{Time: base.Add(99 * time.Second), IP: "198.18.0.3", Port: 80, Protocol: "tcp", Verdict: event.Blocked, Process: p}},
		{File: &event.File{Time: base.Add(11 * time.Second), Path: "/ws/src/a.go", Event: event.Overwrite, Process: p}},
		{Stop: &event.Stop{Time: base.Add(2 * time.Minute)}},
	}
	steps := []Step{
		{Name: "Checkout", Start: base.Add(2 * time.Second), End: base.Add(5 * time.Second)},
		{Name: hostileStep, Start: base.Add(5 * time.Second), End: base.Add(60 * time.Second)},
	}
	r := Build(recs, Options{Workspace: "/ws", Steps: steps})
	got := map[string]string{}
	for _, e := range r.Egress {
		got[e.IP] = e.Step
	}
	want := map[string]string{"198.18.0.1": "Checkout", "198.18.0.2": hostileStep, "198.18.0.3": ""}
	for ip, w := range want {
		if got[ip] != w {
			t.Errorf("egress %s: step %q, want %q", ip, got[ip], w)
		}
	}
	if len(r.DNS) != 2 || r.DNS[0].Step != "Checkout" || r.DNS[1].Step != "" {
		t.Errorf("DNS rows %+v", r.DNS)
	}
	if len(r.Files) != 1 || r.Files[0].Step != hostileStep {
		t.Errorf("file rows %+v", r.Files)
	}

	md := r.Summary(DefaultSummaryMax)
	checkSource(t, md)
	cells := checkHTML(t, renderMD(t, md, true))
	shown := "Build | x␤::error::y <b>z</b>"
	for _, c := range []string{"Checkout, " + shown, shown, "—", "Checkout", "198.18.0.1, 198.18.0.2"} {
		if cells[c] == 0 {
			t.Errorf("no table cell %q; cells: %v", c, cells)
		}
	}
	for _, h := range []string{"| Count | Step |", "| Process | Step |", "| Time | Step |"} {
		if !strings.Contains(md, h) {
			t.Errorf("summary lacks header %q", h)
		}
	}

	// Without steps: no Step column, no step field in the rows.
	r = Build(recs, Options{Workspace: "/ws"})
	if md := r.Summary(DefaultSummaryMax); strings.Contains(md, "Step |") {
		t.Errorf("Step column without steps:\n%s", md)
	}
	for _, e := range r.Egress {
		if e.Step != "" {
			t.Errorf("step %q without steps", e.Step)
		}
	}
}
