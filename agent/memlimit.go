package agent

import (
	"math"
	"os"
	"runtime/debug"
)

// StartMemoryLimit is the Go runtime's soft memory limit while the agent
// starts. Start-up makes garbage in bursts (a 100,000-entry policy is
// parsed from YAML, compiled, printed into the journal and encoded into
// netlink messages), and by default the heap may grow to twice what is
// live before a collection: peak RSS 87-97 MB for such a policy, 70-73 MB
// with this limit (bench/README.md). Once started, the limit is lifted:
// the steady-state heap follows GOGC, so a run that holds a large process
// table never makes the collector run back to back.
const StartMemoryLimit = 40 << 20

// LimitStartMemory sets StartMemoryLimit and returns the function that
// restores the previous limit. With GOMEMLIMIT set it does nothing: the
// user's limit stands.
func LimitStartMemory() (lift func()) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	prev := debug.SetMemoryLimit(StartMemoryLimit)
	if prev == StartMemoryLimit {
		prev = math.MaxInt64
	}
	return func() {
		debug.SetMemoryLimit(prev)
		// Hand start-up's garbage back to the kernel now rather than
		// when the scavenger gets to it: otherwise the pages that held a
		// large policy's YAML stay in RSS and the run's own heap grows on
		// top of them (100,000 entries under load: peak RSS 62-66 MB, all
		// of the excess over 10 entries). In the background: a collection
		// of a small live heap, off the path to enforcing.
		go debug.FreeOSMemory()
	}
}
