package report

import (
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/runnerstep"
)

// Step is one workflow step's time window, from the jobs API. End is zero
// while the step is still running (the window is then open-ended).
type Step struct {
	Name       string
	Start, End time.Time
}

// stepAt names the step whose window contains t, or "" if none does.
// The API gives whole seconds, so t is compared at second precision and
// both ends are inclusive. When windows overlap (one step's completed_at
// is the next one's started_at) the step that started last wins: it is
// the innermost or the newer. Steps with no start (skipped, or not yet
// started) never match.
func stepAt(steps []Step, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	best := -1
	for i, s := range steps {
		if !inWindow(s, t) {
			continue
		}
		if best < 0 || s.Start.After(steps[best].Start) {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	return steps[best].Name
}

// labelSteps sets the Step field of every row. A row whose process runs
// under a workflow step's root process (package runnerstep) gets that
// step's name: the jobs API step whose window holds the root's first
// event, preferring one named as the runner names such a step (a window
// boundary is a whole second, shared by two steps); without API steps,
// the runner's default name for it ("Run npm ci"). Other rows (daemons,
// containers, processes that outlived their step) get the API step whose
// window holds their first time.
func labelSteps(r *Report, steps []Step, roots map[runnerstep.Key]event.StepRoot) {
	label := func(p event.Process, t time.Time) string {
		// Only the roots the agent recorded under the pinned runner count:
		// a process named Runner.Worker in a step does not make one.
		isRoot := func(k runnerstep.Key) bool { _, ok := roots[k]; return ok }
		if root, ok := runnerstep.RootAmong(p, isRoot); ok {
			if sr, ok := roots[runnerstep.Key{PID: root.PID, Cmdline: root.Cmdline}]; ok {
				if name := stepOfRoot(steps, sr); name != "" {
					return name
				}
			}
		}
		return stepAt(steps, t)
	}
	for i := range r.Egress {
		r.Egress[i].Step = label(r.Egress[i].Process, r.Egress[i].FirstSeen)
	}
	for i := range r.DNS {
		r.DNS[i].Step = label(r.DNS[i].Process, r.DNS[i].FirstSeen)
	}
	for i := range r.Files {
		r.Files[i].Step = label(r.Files[i].Process, r.Files[i].Time)
	}
	for i := range r.Steering {
		r.Steering[i].Step = label(r.Steering[i].Process, r.Steering[i].Time)
	}
	for i := range r.Privileged {
		r.Privileged[i].Step = label(r.Privileged[i].Process, r.Privileged[i].Time)
	}
}

// stepOfRoot names the step a step root ran: see labelSteps.
func stepOfRoot(steps []Step, sr event.StepRoot) string {
	if len(steps) == 0 {
		return sr.Name
	}
	if sr.Name != "" {
		for _, s := range steps {
			if inWindow(s, sr.Time) && (s.Name == sr.Name || s.Name == "Pre "+sr.Name || s.Name == "Post "+sr.Name) {
				return s.Name
			}
		}
	}
	if name := stepAt(steps, sr.Time); name != "" {
		return name
	}
	return sr.Name
}

// inWindow reports whether t falls in s's window, at second precision.
func inWindow(s Step, t time.Time) bool {
	ts := t.Truncate(time.Second)
	return !s.Start.IsZero() && !ts.Before(s.Start.Truncate(time.Second)) &&
		(s.End.IsZero() || !ts.After(s.End.Truncate(time.Second)))
}
