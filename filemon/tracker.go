package filemon

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// factKind is one thing an event said happened to a baseline path.
type factKind uint8

const (
	factWrite    factKind = iota // fanotify: the baseline file was written (write(2) and kin)
	factTruncate                 // fanotify: its size changed with no write (truncate, O_TRUNC)
	factChanged                  // inotify: written or truncated, no telling which
	factUnlink                   // the baseline name was unlinked
	factAway                     // the baseline name (or a directory above it) was renamed away
	factReplace                  // something was created or renamed onto the baseline name
	numFacts
)

// factOp is the report a fact makes on its own, when the path's state
// cannot decide (the checkout has rewritten it since).
var factOp = [numFacts]event.FileOp{
	factWrite: event.Overwrite, factTruncate: event.Truncate, factChanged: event.Overwrite,
	factUnlink: event.Delete, factAway: event.Rename, factReplace: event.Overwrite,
}

// fact is the first sighting of a factKind for a path.
type fact struct {
	set  bool
	at   time.Time
	proc event.Process
	// inferred: no event said the content was written, only that the mtime
	// moved while a writer had the file open (a shared mapping, or touch).
	// The git blob, if known, decides.
	inferred bool
}

// pending collects what happened to one baseline path since it was last
// settled.
type pending struct {
	facts [numFacts]fact
	size  int64     // size of the baseline file when a write was last seen; -1 unknown
	first time.Time // when the path became pending
	last  time.Time
	ready bool // the writer closed the file: settle without waiting
	named bool // some fact came with a pid (fanotify)
	// replaced counts what was put at the baseline name (created or
	// renamed onto it) by source: [0] inotify, [1] fanotify's directory
	// group, each of which sees every such change once.
	// Twice or more and the name held something else in between, even if
	// the baseline file is back now (a swap and a swap back: SUNSPOT).
	replaced [2]int
	// modifier is the first process the identifier-mode group saw change
	// the file's content (FAN_MODIFY: a write or a truncation, by any of
	// its names). It names a change no other event did: a truncate(2).
	modifier fact
	// checkout: a process of the checkout wrote the path: its writes
	// build the baseline, so nothing about the path is reported.
	checkout bool
}

// fileStat is what a stat of a path says, as far as the baseline cares.
type fileStat struct {
	dev, ino     uint64
	btime, mtime int64 // ns; btime 0 when the file system does not report it
	ctime        int64 // ns
	size         int64
	mode         uint32 // S_IFMT bits
}

// emission is one File record decided for a path.
type emission struct {
	op event.FileOp
	f  fact
}

type reportKey struct {
	path string
	op   event.FileOp
	who  string // the program, "" for (path, op) itself
}

// reportedSet remembers each (path, kind) reported, across the baselines
// of one Monitor, and each program reported for it: a (path, kind) is
// reported once per job and program, so that a benign tool's rewrite of a
// file does not hide a later one by another program. A change with no
// program named is reported only if nothing was for that (path, kind).
// Safe for concurrent use.
type reportedSet struct {
	mu sync.Mutex
	m  map[reportKey]struct{}
}

func newReportedSet() *reportedSet { return &reportedSet{m: make(map[reportKey]struct{})} }

// first records (path, op) as reported by the program who ("" for none
// named) and says whether that is new: (path, op) never reported, or
// reported for other programs only (not one without a program, which may
// be this very change seen earlier without its pid).
func (s *reportedSet) first(path string, op event.FileOp, who string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	pathOp := reportKey{path, op, ""}
	named := reportKey{path, op, "\x00named"}
	_, seen := s.m[pathOp]
	_, seenNamed := s.m[named]
	s.m[pathOp] = struct{}{}
	if who == "" {
		return !seen
	}
	k := reportKey{path, op, who}
	if _, dup := s.m[k]; dup || (seen && !seenNamed) {
		return false
	}
	s.m[k], s.m[named] = struct{}{}, struct{}{}
	return true
}

// tracker holds the facts per baseline path and turns them into reports.
// Sources call add, touch and ready from any goroutine; settle runs in one.
type tracker struct {
	base *baseline
	// statPath stats the baseline path of idx now; ok is false when it is gone.
	statPath func(idx int32) (st fileStat, ok bool)
	// sameContent says whether the file at idx's path still has its
	// baseline content; false when unknown.
	sameContent func(idx int32) bool
	emit        event.Emit
	settle      time.Duration // quiet time after a fact with a pid
	grace       time.Duration // quiet time when only pid-less facts arrived and fanotify runs
	naming      bool          // fanotify runs: pid-less facts may still be joined by named ones
	now         func() time.Time
	// checkout says whether a process belongs to the checkout, whose
	// writes build the baseline (Config.Checkout); nil: none does.
	checkout func(event.Process) bool
	// checkoutPost says whether a process belongs to the checkout's post
	// step (Config.CheckoutPost): its change to .git/config is its own.
	checkoutPost func(event.Process) bool
	reported     *reportedSet

	mu   sync.Mutex
	pend map[int32]*pending
	// drop, when set, says the checkout has just rewritten a path (see
	// Monitor.rebase): it is treated as if a checkout fact named it.
	drop func(path string) bool
	last map[int32]sizeTime // size and mtime of baseline files when last seen through fanotify
	// decided is each path's state when it was last resolved: a later
	// pending with no named fact that finds the same state has nothing new
	// to say (see resolve).
	decided map[int32]pathState

	events, unattributed atomic.Uint64
}

func newTracker(base *baseline, emit event.Emit, reported *reportedSet) *tracker {
	if reported == nil {
		reported = newReportedSet()
	}
	return &tracker{
		base:     base,
		emit:     emit,
		settle:   200 * time.Millisecond,
		grace:    time.Second,
		now:      time.Now,
		pend:     make(map[int32]*pending),
		reported: reported,
		last:     make(map[int32]sizeTime),
		decided:  make(map[int32]pathState),
	}
}

// pathState is what a stat of a baseline path found: gone (!exists), or st.
type pathState struct {
	exists bool
	st     fileStat
}

type sizeTime struct{ size, mtime, ctime int64 }

func (t *tracker) get(idx int32) *pending {
	p := t.pend[idx]
	if p == nil {
		p = &pending{size: -1, first: t.now()}
		t.pend[idx] = p
	}
	return p
}

// add records a fact for the baseline path idx. size is the file's size
// when the event was read (content facts), or -1. A fact with a pid replaces
// an earlier pid-less one of the same kind, keeping the earlier time.
func (t *tracker) add(idx int32, k factKind, proc event.Process, at time.Time, size int64) {
	t.addFrom(idx, k, proc, at, size, -1)
}

// addFrom is add that also counts a replacement (src >= 0: the index into
// pending.replaced of the source that saw it).
func (t *tracker) addFrom(idx int32, k factKind, proc event.Process, at time.Time, size int64, src int) {
	byCheckout := t.byCheckout(t.base.entries[idx].path, proc)
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.get(idx)
	if src >= 0 {
		p.replaced[src]++
	}
	if byCheckout {
		// Not a fact: the checkout's writes are the baseline. It marks
		// the path so that the same change seen without a pid is not
		// reported either.
		p.checkout = true
		p.last = t.now()
		return
	}
	f := &p.facts[k]
	switch {
	case !f.set || f.inferred:
		*f = fact{set: true, at: at, proc: proc}
	case f.proc.PID == 0 && proc.PID != 0:
		f.proc = proc
		if at.Before(f.at) {
			f.at = at
		}
	}
	if proc.PID != 0 {
		p.named = true
	}
	if size >= 0 {
		p.size = size
	}
	p.last = t.now()
}

// replace records that something was created or renamed onto the
// baseline name idx (factReplace), as the source fan (fanotify's directory
// group) or inotify saw it: each sees every such change once, so their
// counts tell a swap and a swap back (two) from a rename away and back
// (one).
func (t *tracker) replace(idx int32, proc event.Process, at time.Time, fan bool) {
	src := 0
	if fan {
		src = 1
	}
	t.addFrom(idx, factReplace, proc, at, -1, src)
}

// replaceTree is replace for every baseline file under the directory idx:
// something was created or renamed onto the directory's name, so each of
// their paths led somewhere else (a directory swapped and swapped back).
func (t *tracker) replaceTree(dir int32, proc event.Process, at time.Time, fan bool) {
	files := t.base.filesUnder(dir)
	if len(files) == 0 {
		return
	}
	// The checkout question once for the tree, one lock for all of it: a
	// tree of 100,000 files is one event.
	co := proc.PID != 0 && t.checkout != nil && t.checkout(proc)
	src := 0
	if fan {
		src = 1
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, idx := range files {
		p := t.get(idx)
		p.replaced[src]++
		p.last = now
		if co {
			p.checkout = true
			continue
		}
		if f := &p.facts[factReplace]; !f.set || (f.proc.PID == 0 && proc.PID != 0) {
			*f = fact{set: true, at: at, proc: proc}
		}
		if proc.PID != 0 {
			p.named = true
		}
	}
}

// addInferred records a write that no event announced (see fact.inferred).
// A write an event announced wins over it.
func (t *tracker) addInferred(idx int32, proc event.Process, at time.Time, size int64) {
	byCheckout := t.byCheckout(t.base.entries[idx].path, proc)
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.get(idx)
	if byCheckout {
		p.checkout = true
		p.last = t.now()
		return
	}
	if !p.facts[factWrite].set {
		p.facts[factWrite] = fact{set: true, at: at, proc: proc, inferred: true}
	}
	p.named = p.named || proc.PID != 0
	p.size = size
	p.last = t.now()
}

// modified records that a process (who) changed the content of baseline
// file idx, as the identifier-mode fanotify group saw it: that group gets
// FAN_MODIFY for a truncation too (a descriptor-mode group gets none: the
// kernel has no path to open for it), through whatever name the file was
// reached by (a symlink, a hard link elsewhere, /proc/PID/cwd, a
// container's mount), but cannot tell a write from a truncation. resolve
// names with it a change that no other event named (nameChange). who is
// asked only when the modifier is not known yet (a build writing a
// baseline file a thousand times is one process lookup).
func (t *tracker) modified(idx int32, who func() event.Process, at time.Time) {
	t.mu.Lock()
	p := t.get(idx)
	p.last = t.now()
	known := p.modifier.set && p.modifier.proc.PID != 0
	t.mu.Unlock()
	if known {
		return
	}
	proc := who() // outside the lock: it may read /proc
	t.mu.Lock()
	defer t.mu.Unlock()
	p = t.get(idx)
	if m := &p.modifier; !m.set || (m.proc.PID == 0 && proc.PID != 0) {
		*m = fact{set: true, at: at, proc: proc}
	}
}

// addTree records a fact for every baseline file under the directory idx
// (a directory renamed away takes its files with it).
func (t *tracker) addTree(dir int32, k factKind, proc event.Process, at time.Time) {
	for _, idx := range t.base.filesUnder(dir) {
		t.add(idx, k, proc, at, -1)
	}
}

// touch asks for idx to be checked against the baseline without saying
// what happened (a rescan found a difference, or inotify saw a name change
// its file).
func (t *tracker) touch(idx int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.get(idx).last = t.now()
}

// seen records the size and mtime of baseline file idx as an event saw it.
func (t *tracker) seen(idx int32, size, mtime, ctime int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last[idx] = sizeTime{size, mtime, ctime}
}

// closedWrite handles the close of baseline file idx by a process that had
// it open for writing; size and mtime are its state then. If the file
// changed since it was last seen and no write was reported, the closing
// process changed it: a descriptor-mode fanotify group gets no FAN_MODIFY
// for a truncation, nor for a write through a shared mapping. A file with a
// content change pending is ready to settle.
func (t *tracker) closedWrite(idx int32, size, mtime, ctime int64, who func() event.Process, at time.Time) {
	t.mu.Lock()
	prev, ok := t.last[idx]
	if !ok {
		b := &t.base.entries[idx]
		prev = sizeTime{b.size, b.mtime, b.ctime}
	}
	t.last[idx] = sizeTime{size, mtime, ctime}
	p := t.pend[idx]
	written := p != nil && p.facts[factWrite].set
	var modifier fact
	if p != nil {
		modifier = p.modifier
	}
	t.mu.Unlock()
	// ctime too: a write through a mapping with the mtime set back
	// (utimensat) leaves size and mtime as they were.
	if prev != (sizeTime{size, mtime, ctime}) && !written {
		// Shorter: a truncation. Otherwise a change no write(2) announced:
		// a shared mapping, or a truncation that grew the file.
		if size < prev.size {
			// The modify group saw the truncating process itself; the
			// closer may be another (the descriptor passed to a child, or
			// to an io_uring that a kernel thread closes).
			if modifier.set && modifier.proc.PID != 0 && !t.byCheckout(t.base.entries[idx].path, modifier.proc) {
				t.add(idx, factTruncate, modifier.proc, modifier.at, size)
			} else {
				t.add(idx, factTruncate, who(), at, size)
			}
		} else {
			t.addInferred(idx, who(), at, size)
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.pend[idx]; p != nil && (p.facts[factWrite].set || p.facts[factTruncate].set) {
		p.ready = true
	}
}

// settleDue decides and emits every path whose quiet time has passed, or
// every pending path when all is true.
func (t *tracker) settleDue(all bool) {
	now := t.now()
	t.mu.Lock()
	var due []int32
	var ps []*pending
	for idx, p := range t.pend {
		wait := t.settle
		if t.naming && !p.named {
			// The modifier alone does not shorten it: the content
			// group's events, which tell a write, may still come.
			wait = t.grace
		}
		if all || p.ready || now.Sub(p.last) >= wait {
			due = append(due, idx)
			ps = append(ps, p)
			delete(t.pend, idx)
		}
	}
	t.mu.Unlock()
	if len(due) == 0 {
		return
	}
	// Report in path order, so that a batch reads naturally.
	order := make([]int, len(due))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return due[order[a]] < due[order[b]] })
	for _, i := range order {
		t.resolve(due[i], ps[i], now, all)
	}
}

// resolve decides what happened to idx and emits what was not reported yet.
// A path whose name changed with no event saying how waits (up to the
// grace period, and not at Close) for that event: the fanotify groups
// and inotify deliver in their own order.
func (t *tracker) resolve(idx int32, p *pending, now time.Time, all bool) {
	b := &t.base.entries[idx]
	st, ok := t.statPath(idx)
	if !all && now.Sub(p.first) < t.grace && !(ok && b.sameFile(st)) && !p.facts[factUnlink].set && !p.facts[factAway].set && !p.facts[factReplace].set {
		t.mu.Lock()
		if q := t.pend[idx]; q != nil {
			p.merge(q)
		}
		p.ready = false
		t.pend[idx] = p
		t.mu.Unlock()
		return
	}
	state := pathState{exists: ok}
	if ok {
		state.st = st
	}
	t.mu.Lock()
	drop := t.drop
	prev, decidedBefore := t.decided[idx]
	t.decided[idx] = state
	t.mu.Unlock()
	// Before the modifier names anything: a modify event read after its
	// write was decided is one of those late copies too.
	if decidedBefore && prev == state && !p.named && !p.checkout {
		// The path is as it was when it was last decided, and nothing
		// named a process since: these are late pid-less copies of what
		// was decided then (inotify's events for a change fanotify
		// reported, a rescan finding the same difference from the
		// baseline again), not a new change.
		return
	}
	t.nameChange(idx, p)
	if p.checkout || (drop != nil && drop(b.path)) {
		// The checkout wrote the path: what it did is the baseline, and
		// so are the changes seen without a pid (most likely its own).
		// Whatever a named process did before it is still reported.
		for k, f := range p.facts {
			if f.set && f.proc.PID != 0 {
				t.report(event.File{Path: b.path, Event: factOp[k], Time: f.at, Process: f.proc})
			}
		}
		return
	}
	same := func() bool { return t.sameContent(idx) }
	for _, em := range decide(b, st, ok, p, same) {
		f := event.File{Path: b.path, Event: em.op, Time: em.f.at, Process: em.f.proc}
		if !em.f.set {
			f.Time = now
			f.Process = event.Process{Unknown: "found by rescan: no event was received for this change"}
		}
		t.report(f)
	}
}

// nameChange names a change that no event with a pid explained (one only
// inotify saw, or none did: through a hard link outside the watched
// directories) after the process the identifier-mode group saw modify the
// file: with no write(2) or open behind it, most likely a truncate(2).
// decide judges the kind by size, as for inotify's own changes, and
// reports nothing if the content is still the baseline's (touch -m). A
// checkout's change builds the baseline.
func (t *tracker) nameChange(idx int32, p *pending) {
	m := p.modifier
	if p.named || !m.set || m.proc.PID == 0 {
		return
	}
	for _, k := range []factKind{factWrite, factTruncate, factUnlink, factAway, factReplace} {
		if p.facts[k].set {
			return
		}
	}
	if t.byCheckout(t.base.entries[idx].path, m.proc) {
		p.checkout = true
		return
	}
	at := m.at
	if f := p.facts[factChanged]; f.set && f.at.Before(at) {
		at = f.at
	}
	p.facts[factChanged] = fact{set: true, at: at, proc: m.proc, inferred: true}
	p.named = true
}

// report emits f unless its path and kind were reported already for its
// program (reportedSet). A change
// to git's configuration is reported as steering (event.Steer).
func (t *tracker) report(f event.File) {
	who := ""
	if identified(f.Process) {
		who = programKey(f.Process)
	}
	if !t.reported.first(f.Path, f.Event, who) {
		return
	}
	t.events.Add(1)
	if !identified(f.Process) {
		t.unattributed.Add(1)
	}
	if why := steerGit(f.Path); why != "" {
		t.emit(event.Record{Steer: &event.Steer{Time: f.Time, Path: f.Path, Change: string(f.Event), Why: why, Process: f.Process}})
		return
	}
	t.emit(event.Record{File: &f})
}

// byCheckout says whether proc's change to the baseline path rel builds
// the baseline: the checkout's, or the checkout post step's to .git/config.
func (t *tracker) byCheckout(rel string, proc event.Process) bool {
	if proc.PID == 0 {
		return false
	}
	if t.checkout != nil && t.checkout(proc) {
		return true
	}
	return rel == ".git/config" && t.checkoutPost != nil && t.checkoutPost(proc)
}

// programKey is what tells programs apart for reportedSet: the executable
// and the first argument, so that two node (or python, sh) scripts are two
// programs.
func programKey(p event.Process) string {
	args := strings.Fields(p.Cmdline)
	arg := ""
	if len(args) > 1 {
		arg = args[1]
	}
	return p.Exe + "\x00" + arg
}

// steerCreated reports a new steering file at path, once.
func (t *tracker) steerCreated(path, why string, proc event.Process, at time.Time) {
	if t.byCheckout(path, proc) {
		return // the checkout's own: git init writes hooks, checkout writes config
	}
	if !t.reported.first(path, "created", "") {
		return
	}
	t.events.Add(1)
	if !identified(proc) {
		t.unattributed.Add(1)
	}
	t.emit(event.Record{Steer: &event.Steer{Time: at, Path: path, Change: "created", Why: why, Process: proc}})
}

// merge adds the facts of q, which arrived while p was being resolved.
func (p *pending) merge(q *pending) {
	for k := range q.facts {
		if f := q.facts[k]; f.set && (!p.facts[k].set || (p.facts[k].proc.PID == 0 && f.proc.PID != 0)) {
			p.facts[k] = f
		}
	}
	if q.size >= 0 {
		p.size = q.size
	}
	p.named = p.named || q.named
	for i, n := range q.replaced {
		p.replaced[i] += n
	}
	if m := q.modifier; m.set && (!p.modifier.set || (p.modifier.proc.PID == 0 && m.proc.PID != 0)) {
		p.modifier = m
	}
	if q.last.After(p.last) {
		p.last = q.last
	}
}

// identified says whether p names a program.
func identified(p event.Process) bool {
	return p.PID != 0 && p.Unknown == "" && (p.Exe != "" || p.Cmdline != "")
}

// decide turns the facts about baseline entry b and its path's state now
// (st, valid when exists) into reports. same reports whether the file's
// content still equals the baseline; it is consulted only for a change that
// no event reported. See the package doc for the table this implements.
func decide(b *entry, st fileStat, exists bool, p *pending, same func() bool) []emission {
	fs := &p.facts
	first := func(ks ...factKind) fact {
		for _, k := range ks {
			if fs[k].set {
				return fs[k]
			}
		}
		return fact{}
	}
	var out []emission
	isSame := exists && b.sameFile(st)
	switch {
	case !exists:
		if fs[factAway].set {
			out = append(out, emission{event.Rename, fs[factAway]})
		} else {
			out = append(out, emission{event.Delete, first(factUnlink, factReplace)})
		}
	case !isSame:
		// Another file now lives at the path: the content was replaced.
		if fs[factAway].set {
			out = append(out, emission{event.Rename, fs[factAway]})
		}
		out = append(out, emission{event.Overwrite, first(factReplace, factUnlink, factAway)})
	case max(p.replaced[0], p.replaced[1]) >= 2:
		// The baseline file is back, but something else was put at its
		// name in between: whoever read the path then read that.
		out = append(out, emission{event.Overwrite, fs[factReplace]})
	}
	// The baseline file's own content, wherever it is now.
	switch {
	case fs[factWrite].set || fs[factTruncate].set:
		if fs[factWrite].set && !(fs[factWrite].inferred && isSame && !fs[factTruncate].set && same()) {
			out = appendOnce(out, emission{event.Overwrite, fs[factWrite]})
		}
		if fs[factTruncate].set {
			out = appendOnce(out, emission{event.Truncate, fs[factTruncate]})
		}
	case fs[factChanged].set && fs[factChanged].inferred && isSame && st.size == b.size && same():
		// Named from the modify group alone, and the content is the
		// baseline's: a change of times only.
	case fs[factChanged].set:
		// inotify cannot tell a write from a truncation: judge by size.
		size := p.size
		if isSame {
			size = st.size
		}
		op := event.Overwrite
		if size >= 0 && size < b.size {
			op = event.Truncate
		}
		out = appendOnce(out, emission{op, fs[factChanged]})
	case isSame && (st.size != b.size || st.mtime != b.mtime) && !same():
		op := event.Overwrite
		if st.size < b.size {
			op = event.Truncate
		}
		out = appendOnce(out, emission{op, fact{}})
	}
	return out
}

// appendOnce appends e unless an emission of the same kind is there.
func appendOnce(out []emission, e emission) []emission {
	for _, o := range out {
		if o.op == e.op {
			return out
		}
	}
	return append(out, e)
}
