package report

import (
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/escape/mdtest"
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
	cells := checkHTML(t, mdtest.Render(t, md, true))
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

func TestBuildLabelsStepsByProcess(t *testing.T) {
	base := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	worker := event.Ancestor{PID: 10, Exe: "/home/runner/runners/2.321.0/bin/Runner.Worker"}
	root := func(pid int, script string) event.Ancestor {
		return event.Ancestor{PID: pid, Exe: "/usr/bin/bash", Cmdline: "/usr/bin/bash -e /home/runner/work/_temp/" + script + ".sh"}
	}
	ci, test, deploy := root(20, "ci"), root(21, "test"), root(22, "deploy")
	under := func(a event.Ancestor) event.Process {
		return event.Process{PID: 100 + a.PID, Exe: "/usr/bin/curl", Parents: []event.Ancestor{a, worker}}
	}
	orphan := event.Process{PID: 300, Exe: "/usr/bin/node", Parents: []event.Ancestor{{PID: 1, Exe: "/sbin/init"}}}
	sr := func(a event.Ancestor, at time.Duration, name string) event.Record {
		return event.Record{StepRoot: &event.StepRoot{Time: base.Add(at), PID: a.PID, Cmdline: a.Cmdline, Name: name}}
	}
	flow := func(at time.Duration, ip string, p event.Process) event.Record {
		return event.Record{Flow: &event.Flow{Time: base.Add(at), IP: ip, Port: 443, Protocol: "tcp", Verdict: event.Blocked, Process: p}}
	}
	recs := []event.Record{
		{Start: &event.Start{Time: base, Mode: "block"}},
		sr(ci, 3*time.Second, "Run npm ci"),
		flow(3*time.Second, "198.18.0.1", under(ci)),
		// In the second the next step starts: by time alone it would be
		// "Run npm test" (the newer window wins); its process says npm ci.
		flow(5300*time.Millisecond, "198.18.0.2", under(ci)),
		// The next step's first event, in the same shared second: the name
		// the runner gives the step picks it.
		sr(test, 5*time.Second, "Run npm test"),
		flow(5*time.Second, "198.18.0.3", under(test)),
		// A step with `name:`: its default name matches nothing; its first
		// event's time does.
		sr(deploy, 10*time.Second, "Run ./deploy.sh"),
		flow(10*time.Second, "198.18.0.4", under(deploy)),
		{Exec: &event.Exec{Time: base.Add(11 * time.Second), Program: "/usr/bin/sudo", Process: under(deploy)}},
		// A daemon started earlier, re-parented: by time.
		flow(12*time.Second, "198.18.0.5", orphan),
		{Stop: &event.Stop{Time: base.Add(time.Minute)}},
	}
	steps := []Step{
		{Name: "Run npm ci", Start: base.Add(2 * time.Second), End: base.Add(5 * time.Second)},
		{Name: "Run npm test", Start: base.Add(5 * time.Second), End: base.Add(9 * time.Second)},
		{Name: "Deploy", Start: base.Add(9 * time.Second), End: base.Add(20 * time.Second)},
	}
	for _, tc := range []struct {
		name     string
		steps    []Step
		want     map[string]string // egress IP → step
		sudo     string
		overview string // its rows, in the order the steps ran
	}{
		{"with the jobs API", steps, map[string]string{"198.18.0.1": "Run npm ci", "198.18.0.2": "Run npm ci",
			"198.18.0.3": "Run npm test", "198.18.0.4": "Deploy", "198.18.0.5": "Deploy"}, "Deploy",
			"| Run npm ci | 2 | 2 | 0 | 0 | 0 |\n| Run npm test | 1 | 1 | 0 | 0 | 0 |\n| Deploy | 2 | 2 | 0 | 0 | 1 |\n"},
		{"without it: the runner's default names", nil, map[string]string{"198.18.0.1": "Run npm ci", "198.18.0.2": "Run npm ci",
			"198.18.0.3": "Run npm test", "198.18.0.4": "Run ./deploy.sh", "198.18.0.5": ""}, "Run ./deploy.sh",
			"| Run npm ci | 2 | 2 | 0 | 0 | 0 |\n| Run npm test | 1 | 1 | 0 | 0 | 0 |\n| Run \\./deploy\\.sh | 1 | 1 | 0 | 0 | 1 |\n| outside any step | 1 | 1 | 0 | 0 | 0 |\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Build(recs, Options{Steps: tc.steps})
			for _, e := range r.Egress {
				if e.Step != tc.want[e.IP] {
					t.Errorf("egress %s: step %q, want %q", e.IP, e.Step, tc.want[e.IP])
				}
			}
			if len(r.Egress) != len(tc.want) {
				t.Errorf("%d egress rows, want %d", len(r.Egress), len(tc.want))
			}
			if len(r.Privileged) != 1 || r.Privileged[0].Step != tc.sudo {
				t.Errorf("privileged rows %+v, want step %q", r.Privileged, tc.sudo)
			}
			md := r.Summary(DefaultSummaryMax)
			checkSource(t, md)
			i := strings.Index(md, "### By workflow step")
			j := strings.Index(md, "### Outbound destinations")
			if i < 0 || j < i {
				t.Fatalf("no step overview before the destinations:\n%s", md)
			}
			if got := md[i:j]; !strings.Contains(got, tc.overview) {
				t.Errorf("step overview:\n%s\nwant rows:\n%s", got, tc.overview)
			}
		})
	}
}
