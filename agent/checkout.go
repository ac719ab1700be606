package agent

import (
	"path"
	"regexp"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/runnerstep"
)

// checkoutEntry is the entry point the runner starts for actions/checkout:
// node .../_actions/actions/checkout/<ref>/dist/index.js, nothing else on
// the command line.
var checkoutEntry = regexp.MustCompile(`^\S*/node\S* \S*/_actions/actions/checkout/[^/\s]+/dist/index\.js$`)

// isCheckout says whether p runs under the actions/checkout step: its
// writes build the file monitor's baseline (filemon.Config.Checkout). The
// step is known by its root process, the runner's child, running node on
// checkout's entry point. A step cannot make itself the runner's child, but
// a run: step's root could exec node on that file; it would then run the
// real checkout, whose writes are what the repository's HEAD says.
// The runner is the pinned Runner.Worker's pid (runnerid): a copy of a
// program named Runner.Worker makes no step roots.
func isCheckout(p event.Process, runner int) bool {
	root, ok := runnerstep.RootOf(p, runner)
	return ok && path.Base(root.Exe) == "node" && checkoutEntry.MatchString(root.Cmdline)
}
