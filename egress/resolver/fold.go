package resolver

import (
	"sync"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// folder passes the first of each kind of DNS event straight on and folds
// identical repeats (name, type, verdict, rcode, pid) into one record with
// a Count, emitted at the next flush. Safe for concurrent use.
type folder struct {
	emit event.Emit

	mu      sync.Mutex
	pending map[foldKey]*event.DNS
}

type foldKey struct {
	name, typ string
	verdict   event.Verdict
	rcode     string
	pid       int
}

func newFolder(emit event.Emit) *folder {
	return &folder{emit: emit, pending: make(map[foldKey]*event.DNS)}
}

func (f *folder) add(d *event.DNS) {
	k := foldKey{d.Name, d.Type, d.Verdict, d.Rcode, d.Process.PID}
	f.mu.Lock()
	p, seen := f.pending[k]
	if !seen {
		// First in this window: on its way now, repeats counted from here.
		f.pending[k] = &event.DNS{}
		f.mu.Unlock()
		f.emit(event.Record{DNS: d})
		return
	}
	if p.Count == 0 {
		*p = *d
	}
	p.Count++
	p.Time = d.Time
	f.mu.Unlock()
}

// flush emits the folded repeats and starts a new window.
func (f *folder) flush() {
	f.mu.Lock()
	var out []*event.DNS
	for _, p := range f.pending {
		if p.Count > 0 {
			out = append(out, p)
		}
	}
	clear(f.pending)
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
