package action

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/post/report"
)

// Annotation levels, as the Checks API names them.
const (
	LevelFailure = "failure"
	LevelWarning = "warning"
)

// Annotation is one finding to show on the run and, with Path, on the diff.
// Title and Message hold untrusted data verbatim: every writer escapes.
type Annotation struct {
	Level   string // LevelFailure or LevelWarning
	Path    string // repository-relative file, or "" for the run as a whole
	Title   string
	Message string
}

// Annotations turns a report into annotations: an error per blocked
// destination (host·port·protocol), per blocked DNS name and per kind of
// refused docker request, a warning per tampered file, each naming the
// process and, when known, the workflow step. Order: blocked egress,
// blocked DNS, docker, files.
func Annotations(r *report.Report) []Annotation {
	var out []Annotation
	seen := map[string]bool{}
	for _, e := range r.Egress {
		if e.Verdict != event.Blocked {
			continue
		}
		host := e.Domain
		if host == "" {
			host = e.IP
		}
		key := fmt.Sprintf("%s|%d|%s", host, e.Port, e.Protocol)
		if seen[key] {
			continue
		}
		seen[key] = true
		msg := fmt.Sprintf("Blocked outbound %s to %s port %d", e.Protocol, host, e.Port)
		if e.Domain != "" {
			msg += " (" + e.IP + ")"
		}
		out = append(out, Annotation{Level: LevelFailure, Title: "harden-runner: egress blocked",
			Message: msg + processText(e.Process) + stepText(e.Step)})
	}
	for _, d := range r.DNS {
		if d.Verdict != event.Blocked || seen["dns|"+d.Name] {
			continue
		}
		seen["dns|"+d.Name] = true
		out = append(out, Annotation{Level: LevelFailure, Title: "harden-runner: DNS name blocked",
			Message: fmt.Sprintf("Blocked DNS query for %s (%s)", d.Name, d.Type) + processText(d.Process) + stepText(d.Step)})
	}
	for _, p := range r.Privileged {
		key := "docker|" + p.Detail + "|" + p.Process.Exe
		if p.Verdict != event.Blocked || seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, Annotation{Level: LevelFailure, Title: "harden-runner: docker refused",
			Message: "Refused docker request " + p.Detail + processText(p.Process) + stepText(p.Step) +
				" (disable-sudo-and-containers)"})
	}
	for _, f := range r.Files {
		out = append(out, Annotation{Level: LevelWarning, Path: f.Path, Title: "harden-runner: source file changed during the build",
			Message: fmt.Sprintf("%s was changed (%s) after the job started", f.Path, f.Event) + processText(f.Process) + stepText(f.Step)})
	}
	return out
}

func processText(p event.Process) string {
	switch {
	case p.Exe != "" && p.Cmdline != "":
		return fmt.Sprintf(" by %s (pid %d: %s)", p.Exe, p.PID, p.Cmdline)
	case p.Exe != "":
		return fmt.Sprintf(" by %s (pid %d)", p.Exe, p.PID)
	case p.PID != 0:
		return fmt.Sprintf(" by pid %d", p.PID)
	}
	return ""
}

// stepText names the workflow step, quoted (its name is the workflow's
// or a script's first line: any text).
func stepText(step string) string {
	if step == "" {
		return ""
	}
	return fmt.Sprintf(" in step %q", step)
}

// WorkflowCommand formats a as one workflow command line (::error or
// ::warning), escaped so that no data can end it or start another.
func (a Annotation) WorkflowCommand() string {
	cmd := "error"
	if a.Level == LevelWarning {
		cmd = "warning"
	}
	props := map[string]string{"title": a.Title}
	if a.Path != "" {
		props["file"] = a.Path
	}
	return report.WorkflowCommand(cmd, props, a.Message)
}

// HeadSHA returns the commit to annotate: for pull request events the PR
// head (not the merge commit GITHUB_SHA names), else sha.
func HeadSHA(eventName string, payload []byte, sha string) string {
	if !strings.HasPrefix(eventName, "pull_request") {
		return sha
	}
	var ev struct {
		PullRequest struct {
			Head struct {
				SHA string `json:"sha"`
			} `json:"head"`
		} `json:"pull_request"`
	}
	if json.Unmarshal(payload, &ev) == nil && isHexSHA(ev.PullRequest.Head.SHA) {
		return ev.PullRequest.Head.SHA
	}
	return sha
}

func isHexSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
