package agent

import (
	"bytes"
	"io"
	"os"
	"path"
	"strconv"
	"sync"

	"github.com/harden-runner/harden-runner/lineage"
)

// postMarker is what the runner puts in the environment of actions/checkout's
// post step only: the state its main step saved (core.saveState("isPost")),
// handed to the post step as STATE_isPost. The main step never has it.
const postMarker = "STATE_isPost=true"

// maxPostSteps bounds postSteps: a job has tens of steps.
const maxPostSteps = 4096

// postSteps remembers, for each process the runner started on checkout's
// entry point, whether it is the main or the post step, read from its
// environment as the kernel's process table records its exec
// (lineage.Config.OnExec), within milliseconds: the runner starts
// checkout's post step exactly as its main step (the same
// `node …/dist/index.js`), so nothing else tells them apart, and by the
// time a write of the step's is read the process may be gone. One whose
// environment could not be read in time is neither: not the checkout (its
// writes are reported, it rebuilds no baseline). The main step runs for
// seconds, so a read within milliseconds of its exec does not miss it.
type postSteps struct {
	runner int
	mu     sync.Mutex
	m      map[procKey]bool // true: the post step
}

type procKey struct {
	pid   int
	start uint64
}

func newPostSteps(runner int) *postSteps {
	return &postSteps{runner: runner, m: make(map[procKey]bool)}
}

// exec is lineage.Config.OnExec: it reads the environment of the runner's
// children that run checkout's entry point only.
func (s *postSteps) exec(p lineage.Proc) {
	if s == nil || s.runner <= 0 || p.PPID != s.runner || path.Base(p.Exe) != "node" || !checkoutEntry.MatchString(p.Cmdline) {
		return
	}
	env, err := readEnviron(p.PID)
	if err != nil || len(env) == 0 { // gone (a zombie reads back empty)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) < maxPostSteps {
		s.m[procKey{p.PID, p.Start}] = hasEnv(env, postMarker)
	}
}

// step says whether the process pid started at start was recorded, and if
// so whether as the post step.
func (s *postSteps) step(pid int, start uint64) (recorded, post bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	post, recorded = s.m[procKey{pid, start}]
	return recorded, post
}

// readEnviron reads /proc/PID/environ (the environment the process was
// started with), up to 1 MiB.
func readEnviron(pid int) ([]byte, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// hasEnv says whether the NUL-separated environment env holds the entry kv
// exactly.
func hasEnv(env []byte, kv string) bool {
	for len(env) > 0 {
		var e []byte
		e, env, _ = bytes.Cut(env, []byte{0})
		if string(e) == kv {
			return true
		}
	}
	return false
}
