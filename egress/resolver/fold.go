package resolver

import (
	"sync"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// folder passes the first of each kind of DNS event straight on and folds
// identical repeats (name, type, verdict, rcode, pid) into one record with
// a Count, emitted at the next flush. A kind stays known across windows,
// so a busy client costs one record per kind per window, not two: the
// journal encoding is what a flush burst costs the answer path (p99).
// Safe for concurrent use.
type folder struct {
	emit event.Emit

	mu      sync.Mutex
	seen    map[foldKey]bool       // kinds already emitted once
	pending map[foldKey]*event.DNS // repeats since the last flush
}

type foldKey struct {
	name, typ string
	verdict   event.Verdict
	rcode     string
	pid       int
}

// maxSeenKinds bounds the kinds remembered; when full they are forgotten
// (each then passes straight on once more).
const maxSeenKinds = 100000

func newFolder(emit event.Emit) *folder {
	return &folder{emit: emit, seen: make(map[foldKey]bool), pending: make(map[foldKey]*event.DNS)}
}

func (f *folder) add(d *event.DNS) {
	k := foldKey{d.Name, d.Type, d.Verdict, d.Rcode, d.Process.PID}
	f.mu.Lock()
	if !f.seen[k] {
		if len(f.seen) >= maxSeenKinds {
			clear(f.seen)
		}
		f.seen[k] = true
		f.mu.Unlock()
		f.emit(event.Record{DNS: d})
		return
	}
	if p := f.pending[k]; p != nil {
		p.Count++
		p.Time = d.Time
	} else {
		c := *d
		c.Count = 1
		f.pending[k] = &c
	}
	f.mu.Unlock()
}

// flush emits the folded repeats and starts a new window.
func (f *folder) flush() {
	f.mu.Lock()
	if len(f.pending) == 0 {
		f.mu.Unlock()
		return
	}
	out := f.pending
	f.pending = make(map[foldKey]*event.DNS, len(out))
	f.mu.Unlock()
	for _, d := range out {
		f.emit(event.Record{DNS: d})
	}
}

// run flushes every interval until done is closed.
func (f *folder) run(interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			f.flush()
		}
	}
}
