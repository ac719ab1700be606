package flowlog

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// folder passes the first flow of each kind straight on and folds the
// repeats of that kind (same destination, protocol, verdict, direction,
// relay name and reason, and the same process) into one record with a
// Count, emitted at the next flush. A process that opens thousands of
// connections to one server then costs the journal one record per
// second, not one per connection: encoding each flow with its process and
// parents was the largest part of the agent's CPU per allowed flow
// (bench/conn.sh, perf). A kind stays known across windows, so a steady
// stream costs one record per window. Safe for concurrent use.
type folder struct {
	emit event.Emit

	mu sync.Mutex
	// seen holds a hash of each kind already emitted once, not the kind:
	// 100,000 kinds with their command lines would be tens of MB. A
	// collision only delays a kind's first record to the next flush.
	seen    map[uint64]struct{}
	seed    maphash.Seed
	pending map[flowKind]*event.Flow // repeats since the last flush
}

// flowKind is what makes two flows the same row of the report: the
// process is its pid and image, since a pid can be reused by another
// image (its parents follow from the pid while it lives).
type flowKind struct {
	ip, proto    string
	port         uint16
	verdict      event.Verdict
	forward      bool
	pid          int
	exe, cmdline string
	container    string
	unknown      string
	name, reason string
}

// maxKinds bounds the kinds remembered; when full they are forgotten
// (each then passes straight on once more).
const maxKinds = 100000

// foldInterval is how long repeats wait to be emitted as one record.
const foldInterval = time.Second

func newFolder(emit event.Emit) *folder {
	return &folder{emit: emit, seen: make(map[uint64]struct{}), seed: maphash.MakeSeed(), pending: make(map[flowKind]*event.Flow)}
}

func kindOf(f *event.Flow) flowKind {
	return flowKind{ip: f.IP, proto: f.Protocol, port: f.Port, verdict: f.Verdict, forward: f.Forward,
		pid: f.Process.PID, exe: f.Process.Exe, cmdline: f.Process.Cmdline, container: f.Process.Container,
		unknown: f.Process.Unknown, name: f.Name, reason: f.Reason}
}

// add emits f, or folds it into the pending repeats of its kind.
func (fo *folder) add(f event.Flow) {
	k := kindOf(&f)
	h := maphash.Comparable(fo.seed, k)
	fo.mu.Lock()
	if _, ok := fo.seen[h]; !ok {
		if len(fo.seen) >= maxKinds {
			clear(fo.seen)
		}
		fo.seen[h] = struct{}{}
		fo.mu.Unlock()
		fo.emit(event.Record{Flow: &f})
		return
	}
	if p := fo.pending[k]; p != nil {
		p.Count++
		if f.Time.After(p.Time) {
			p.Time = f.Time
		}
	} else {
		f.Count = 1
		fo.pending[k] = &f
	}
	fo.mu.Unlock()
}

// flush emits the folded repeats and starts a new window.
func (fo *folder) flush() {
	fo.mu.Lock()
	if len(fo.pending) == 0 {
		fo.mu.Unlock()
		return
	}
	out := fo.pending
	fo.pending = make(map[flowKind]*event.Flow, len(out))
	fo.mu.Unlock()
	for _, f := range out {
		fo.emit(event.Record{Flow: f})
	}
}

// run flushes every interval until done is closed.
func (fo *folder) run(interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			fo.flush()
		}
	}
}
