// Package fold passes the first event of each kind on at once and folds
// the repeats of a kind into one counted event per window. A busy client
// (a DNS query loop, a process opening thousands of connections to one
// server) then costs the journal one record per kind per window instead of
// one per event: the encoding was what such a client cost the agent.
package fold

import (
	"hash/maphash"
	"sync"
	"time"
)

// MaxKinds bounds the kinds remembered; when full they are forgotten
// (each then passes straight on once more).
const MaxKinds = 100000

// Folder folds events of type E by their kind K. A kind stays known
// across windows, so a steady stream costs one event per window, not a
// first one again and then the repeats. Safe for concurrent use.
type Folder[K comparable, E any] struct {
	emit  func(*E)
	start func(*E)
	merge func(into *E, e E)

	mu sync.Mutex
	// seen holds a hash of each kind already passed on, not the kind
	// (kinds may hold long command lines). A collision only delays a
	// kind's first event to the next flush; the seed is random.
	seen    map[uint64]struct{}
	seed    maphash.Seed
	pending map[K]*E // repeats since the last flush
}

// New returns a Folder that hands events to emit (the first of a kind at
// once, the folded repeats at Flush). start makes a copy of a repeat the
// pending event of its kind (it sets its count to 1); merge adds a later
// repeat e to the pending one.
func New[K comparable, E any](emit func(*E), start func(*E), merge func(into *E, e E)) *Folder[K, E] {
	return &Folder[K, E]{emit: emit, start: start, merge: merge,
		seen: make(map[uint64]struct{}), seed: maphash.MakeSeed(), pending: make(map[K]*E)}
}

// Add passes e on if it is the first of kind k, else folds it. e is taken
// by value, so that a repeat (what a busy client makes) costs no
// allocation; only an event passed on or made pending is copied out.
func (f *Folder[K, E]) Add(k K, e E) {
	h := maphash.Comparable(f.seed, k)
	f.mu.Lock()
	if _, ok := f.seen[h]; !ok {
		if len(f.seen) >= MaxKinds {
			clear(f.seen)
		}
		f.seen[h] = struct{}{}
		f.mu.Unlock()
		c := e
		f.emit(&c)
		return
	}
	if p := f.pending[k]; p != nil {
		f.merge(p, e)
	} else {
		c := e
		f.start(&c)
		f.pending[k] = &c
	}
	f.mu.Unlock()
}

// Flush emits the folded repeats and starts a new window.
func (f *Folder[K, E]) Flush() {
	f.mu.Lock()
	if len(f.pending) == 0 {
		f.mu.Unlock()
		return
	}
	out := f.pending
	f.pending = make(map[K]*E, len(out))
	f.mu.Unlock()
	for _, e := range out {
		f.emit(e)
	}
}

// Run flushes every interval until done is closed.
func (f *Folder[K, E]) Run(interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			f.Flush()
		}
	}
}
