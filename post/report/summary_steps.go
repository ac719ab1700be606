package report

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// The summary's per-step table.

// stepTally is one row of the per-step overview.
type stepTally struct {
	name                string
	first               time.Time
	dests, blocked, dns int
	files, privileged   int
	seen                map[string]bool // destinations counted
}

// writeSteps is the overview by workflow step: what each step reached,
// what of it was blocked, which names it was refused, which files it
// changed and its privilege use; events outside any step last. Only when
// some row has a step.
func (r *Report) writeSteps(w *mdWriter) {
	if !r.hasSteps() {
		return
	}
	tallies := map[string]*stepTally{}
	var order []*stepTally
	get := func(step string, at time.Time) *stepTally {
		t := tallies[step]
		if t == nil {
			t = &stepTally{name: step, first: at, seen: map[string]bool{}}
			tallies[step] = t
			order = append(order, t)
		}
		if !at.IsZero() && (t.first.IsZero() || at.Before(t.first)) {
			t.first = at
		}
		return t
	}
	for _, e := range r.Egress {
		t := get(e.Step, e.FirstSeen)
		if k := e.host() + "|" + strconv.Itoa(int(e.Port)) + "|" + e.Protocol; !t.seen[k] {
			t.seen[k] = true
			t.dests++
			if e.Verdict == event.Blocked || e.Verdict == event.Audit {
				t.blocked++
			}
		}
	}
	for _, d := range r.DNS {
		if d.Verdict == event.Blocked {
			// One per name: its A and AAAA rows are one name refused.
			if t := get(d.Step, d.FirstSeen); !t.seen["dns|"+d.Name] {
				t.seen["dns|"+d.Name] = true
				t.dns++
			}
		}
	}
	for _, f := range r.Files {
		get(f.Step, f.Time).files++
	}
	for _, p := range r.Privileged {
		get(p.Step, p.Time).privileged++
	}
	// In the order the steps ran; events outside any step last.
	slices.SortStableFunc(order, func(a, b *stepTally) int {
		if (a.name == "") != (b.name == "") {
			if a.name == "" {
				return 1
			}
			return -1
		}
		return a.first.Compare(b.first)
	})
	notAllowed := "Blocked"
	if r.Mode == event.ModeAudit {
		notAllowed = "Not allowed"
	}
	w.put("### By workflow step\n\n")
	w.table("| Step | Destinations | "+notAllowed+" | DNS names blocked | Files changed | Privilege use |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
		plural(len(order), "step", "steps"), len(order), func(i int) string {
			t := order[i]
			name := cell(t.name)
			if t.name == "" {
				name = "outside any step"
			}
			return fmt.Sprintf("| %s | %d | %d | %d | %d | %d |\n", name, t.dests, t.blocked, t.dns, t.files, t.privileged)
		})
}

// hasSteps reports whether any row is labelled with a workflow step; only
// then do the tables get a Step column.
func (r *Report) hasSteps() bool {
	for _, e := range r.Egress {
		if e.Step != "" {
			return true
		}
	}
	for _, d := range r.DNS {
		if d.Step != "" {
			return true
		}
	}
	for _, f := range r.Files {
		if f.Step != "" {
			return true
		}
	}
	for _, p := range r.Privileged {
		if p.Step != "" {
			return true
		}
	}
	return false
}
