package report

import (
	"time"
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
	ts := t.Truncate(time.Second)
	best := -1
	for i, s := range steps {
		if s.Start.IsZero() || ts.Before(s.Start.Truncate(time.Second)) {
			continue
		}
		if !s.End.IsZero() && ts.After(s.End.Truncate(time.Second)) {
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

// labelSteps sets the Step field of every row from its first time.
func labelSteps(r *Report, steps []Step) {
	if len(steps) == 0 {
		return
	}
	for i := range r.Egress {
		r.Egress[i].Step = stepAt(steps, r.Egress[i].FirstSeen)
	}
	for i := range r.DNS {
		r.DNS[i].Step = stepAt(steps, r.DNS[i].FirstSeen)
	}
	for i := range r.Files {
		r.Files[i].Step = stepAt(steps, r.Files[i].Time)
	}
}
