package agent

import (
	"path"
	"regexp"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/lineage"
	"github.com/harden-runner/harden-runner/runnerstep"
)

// checkoutEntry is the entry point the runner starts for actions/checkout:
// node .../_actions/actions/checkout/<ref>/dist/index.js, nothing else on
// the command line.
var checkoutEntry = regexp.MustCompile(`^\S*/node\S* \S*/_actions/actions/checkout/[^/\s]+/dist/index\.js$`)

// procTable is what isCheckout asks the kernel's process table (a started
// *lineage.Tracker).
type procTable interface {
	Process(pid int, at uint64, wait time.Duration) (lineage.Proc, bool)
}

// isCheckout says whether p runs under the actions/checkout step: its
// writes build the file monitor's baseline (filemon.Config.Checkout). The
// runner is the pinned Runner.Worker's pid (runnerid); the step's root is
// its child (runnerstep.RootOf).
//
// The root's command line decides, but only as the kernel's process table
// recorded it when the root was made: a process the runner itself made
// (its maker, not merely its parent: CLONE_PARENT makes a sibling look like
// the runner's child) that has run exactly one program since, so the
// runner chose that program and its arguments. A run: step's root that
// execs node on a copy of checkout's entry point (`exec -a`, a file of its
// own under some _actions/actions/checkout/ path, NODE_OPTIONS) has run a
// second program; a node that rewrites its own command line
// (process.title) changes /proc, not the table. Without the table (no
// eBPF) nothing is the checkout: a step could forge all that /proc says,
// so the baseline is the workspace at start and the summary says what was
// not covered. What the runner hands the checkout (the action's files,
// the environment earlier steps set with GITHUB_ENV) is trusted: a step
// that ran before the checkout could have changed the checkout itself.
//
// Checkout's post step is not the checkout (steps, postSteps): it runs
// after every build step, and a build step may have planted the git it
// runs (GITHUB_PATH) or rewritten its dist/index.js. With steps, only a
// root recorded as a main step is the checkout; nil steps: the table
// alone decides.
func isCheckout(p event.Process, runner int, procs procTable, steps *postSteps) bool {
	lp, ok := checkoutRoot(p, runner, procs)
	if !ok || steps == nil {
		return ok
	}
	recorded, post := steps.step(lp.PID, lp.Start)
	return recorded && !post
}

// isCheckoutPost says whether p runs under checkout's post step, whose one
// expected change is to .git/config: it removes the credentials its main
// step stored there.
func isCheckoutPost(p event.Process, runner int, procs procTable, steps *postSteps) bool {
	lp, ok := checkoutRoot(p, runner, procs)
	if !ok || steps == nil {
		return false
	}
	recorded, post := steps.step(lp.PID, lp.Start)
	return recorded && post
}

// checkoutRoot returns the table's record of p's step root if the runner
// started it on checkout's entry point (see isCheckout).
func checkoutRoot(p event.Process, runner int, procs procTable) (lineage.Proc, bool) {
	if procs == nil {
		return lineage.Proc{}, false
	}
	root, ok := runnerstep.RootOf(p, runner)
	if !ok {
		return lineage.Proc{}, false
	}
	lp, ok := procs.Process(root.PID, 0, 0)
	if !ok || !lp.Forked || lp.PPID != runner || lp.Execs != 1 {
		return lineage.Proc{}, false
	}
	if path.Base(lp.Exe) != "node" || !checkoutEntry.MatchString(lp.Cmdline) {
		return lineage.Proc{}, false
	}
	return lp, true
}
