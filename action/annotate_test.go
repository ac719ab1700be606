package action

import (
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/post/report"
)

func TestAnnotations(t *testing.T) {
	curl := event.Process{PID: 7, Exe: "/usr/bin/curl", Cmdline: "curl https://evil.test/"}
	docker := event.Process{PID: 8, Exe: "/usr/bin/docker", Cmdline: "docker run --privileged alpine"}
	r := &report.Report{
		Egress: []report.Egress{
			{Domain: "evil.test", IP: "198.18.1.11", Port: 443, Protocol: "tcp", Verdict: event.Blocked, Process: curl, Step: "Run npm ci"},
			{Domain: "evil.test", IP: "198.18.1.12", Port: 443, Protocol: "tcp", Verdict: event.Blocked, Process: curl}, // same host·port: one
			{Domain: "ok.test", IP: "198.18.1.10", Port: 443, Protocol: "tcp", Verdict: event.Allowed, Process: curl},
		},
		DNS: []report.DNS{{Name: "x.evil.test", Type: "TXT", Verdict: event.Blocked, Process: curl, Step: "Run \"q\"\n::x"}},
		Privileged: []report.Privileged{
			{Program: "/var/run/docker.sock", Verdict: event.Blocked, Detail: "POST /v1.41/containers/create", Process: docker, Step: "Build"},
			{Program: "/var/run/docker.sock", Verdict: event.Blocked, Detail: "POST /v1.41/containers/create", Process: docker}, // repeat: one
			{Program: "/usr/bin/sudo", Process: event.Process{PID: 9, Exe: "/usr/bin/sudo"}},                                    // a use, not a refusal
		},
		Files: []report.File{{Path: "src/main.go", Event: event.Overwrite, Process: event.Process{PID: 10, Exe: "/usr/bin/sed"}, Step: "Run make"}},
	}
	got := Annotations(r)
	want := []struct{ level, path, title, contains string }{
		{LevelFailure, "", "harden-runner: egress blocked", `Blocked outbound tcp to evil.test port 443 (198.18.1.11) by /usr/bin/curl (pid 7: curl https://evil.test/) in step "Run npm ci"`},
		{LevelFailure, "", "harden-runner: DNS name blocked", `Blocked DNS query for x.evil.test (TXT) by /usr/bin/curl (pid 7: curl https://evil.test/) in step "Run \"q\"\n::x"`},
		{LevelFailure, "", "harden-runner: docker refused", `Refused docker request POST /v1.41/containers/create by /usr/bin/docker (pid 8: docker run --privileged alpine) in step "Build"`},
		{LevelWarning, "src/main.go", "harden-runner: source file changed during the build", `src/main.go was changed (overwrite) after the job started by /usr/bin/sed (pid 10) in step "Run make"`},
	}
	if len(got) != len(want) {
		t.Fatalf("%d annotations, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Level != w.level || g.Path != w.path || g.Title != w.title || !strings.Contains(g.Message, w.contains) {
			t.Errorf("annotation %d = %+v\nwant %s %q %q containing %q", i, g, w.level, w.path, w.title, w.contains)
		}
	}
	// The step's newline and "::" stay inside the one workflow command.
	if cmd := got[1].WorkflowCommand(); strings.Count(cmd, "\n") != 0 || strings.Contains(cmd, "\n::") {
		t.Errorf("workflow command spans lines: %q", cmd)
	}
}
