package agent

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"sync"

	"github.com/harden-runner/harden-runner/lineage"
)

// postMarker is what the runner puts in the environment of actions/checkout's
// post step only: the state its main step saved (core.saveState("isPost")),
// handed to the post step as STATE_isPost. The main step never has it.
var postMarker = []byte("STATE_isPost=true")

// maxPostSteps bounds postSteps: a job has tens of steps.
const maxPostSteps = 4096

// postSteps remembers which processes the runner started as an action's
// post step, read from their environment as the kernel's process table
// records their exec (lineage.Config.OnExec), within milliseconds: the
// runner starts checkout's post step exactly as its main step (the same
// `node …/dist/index.js`), so nothing else tells them apart, and by the
// time a write of the step's is read the process may be gone. A process
// that could not be read in time is taken for a main step (as before this
// existed).
type postSteps struct {
	runner int
	mu     sync.Mutex
	m      map[procKey]struct{}
}

type procKey struct {
	pid   int
	start uint64
}

func newPostSteps(runner int) *postSteps {
	return &postSteps{runner: runner, m: make(map[procKey]struct{})}
}

// exec is lineage.Config.OnExec: it looks at the runner's children only.
func (s *postSteps) exec(p lineage.Proc) {
	if s == nil || s.runner <= 0 || p.PPID != s.runner {
		return
	}
	env, err := readEnviron(p.PID)
	if err != nil || !hasEnv(env, postMarker) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) < maxPostSteps {
		s.m[procKey{p.PID, p.Start}] = struct{}{}
	}
}

// has says whether the process pid started at start is a post step.
func (s *postSteps) has(pid int, start uint64) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[procKey{pid, start}]
	return ok
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
func hasEnv(env, kv []byte) bool {
	for len(env) > 0 {
		var e []byte
		e, env, _ = bytes.Cut(env, []byte{0})
		if bytes.Equal(e, kv) {
			return true
		}
	}
	return false
}
