package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// Writer appends event records to a file, one JSON object per line.
// Emit only encodes into memory; a flusher writes the lines out at least
// every flushEvery (sooner once flushSize is pending), so a reader sees
// events with little delay, a killed agent loses at most that much, and no
// emitter (the resolver's answer path among them) waits for the disk.
// Safe for concurrent use.
type Writer struct {
	mu      sync.Mutex // guards pending, n, errs, closed
	pending *bytes.Buffer
	spare   *bytes.Buffer
	n       uint64
	errs    uint64
	closed  bool

	wmu  sync.Mutex // one file write at a time, in order
	f    *os.File
	size int64 // bytes in the file; guarded by wmu
	kick chan struct{}
	done chan struct{}
}

const (
	flushEvery = 200 * time.Millisecond
	flushSize  = 256 << 10
	// maxPending is where Emit stops leaving the writing to the flusher
	// and writes itself: memory stays bounded if the disk falls behind.
	maxPending = 16 << 20
)

// Create creates (or truncates) the journal at path, readable only by its
// owner, and starts its flusher; Close stops it. path must be a regular
// file or nothing: a symbolic link is not followed and a FIFO or device is
// refused (opened without blocking), so a link or FIFO planted there
// cannot make the journal land elsewhere or hang the agent.
func Create(path string) (*Writer, error) {
	f, err := openRegular(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND)
	if err != nil {
		return nil, err
	}
	return newWriter(f, 0), nil
}

// openRegular opens path with flag (mode 0600 if created), refusing a
// symbolic link and anything but a regular file.
func openRegular(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file (%v)", st.Mode().Type())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	return f, nil
}

// Append opens the journal at path to go on appending to it (an
// agent restarted after its predecessor was killed): one journal for the
// whole job. A last line the killed agent left torn is ended with a
// newline first, so it stays one bad line (the report counts it) and the
// next record starts a line of its own.
func Append(path string) (*Writer, error) {
	f, err := openRegular(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: %s: %w", path, err)
	}
	size := st.Size()
	if size > 0 {
		last := make([]byte, 1)
		r, err := os.Open(path)
		if err == nil {
			_, err = r.ReadAt(last, size-1)
			r.Close()
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("journal: read the end of %s: %w", path, err)
		}
		if last[0] != '\n' {
			n, err := f.Write([]byte{'\n'})
			size += int64(n)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("journal: end the torn last line of %s: %w", path, err)
			}
		}
	}
	return newWriter(f, size), nil
}

func newWriter(f *os.File, size int64) *Writer {
	j := &Writer{f: f, size: size, pending: new(bytes.Buffer), spare: new(bytes.Buffer),
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	go j.flusher()
	return j
}

// lineBuf is one record's encoding, made outside the lock.
type lineBuf struct {
	b   bytes.Buffer
	enc *json.Encoder
}

var linePool = sync.Pool{New: func() any {
	l := new(lineBuf)
	l.enc = json.NewEncoder(&l.b)
	return l
}}

// keepBuf is the largest buffer kept for reuse. The Start record of a
// 100,000-entry policy is a few MB; holding that for every later record of
// a few hundred bytes would be the agent's biggest allocation.
const keepBuf = 64 << 10

func putLine(l *lineBuf) {
	if l.b.Cap() <= keepBuf {
		linePool.Put(l)
	}
}

// Emit appends one record. It is an event.Emit. The record is encoded
// before the lock is taken: emitters wait for one another only to append.
func (j *Writer) Emit(r event.Record) {
	l := linePool.Get().(*lineBuf)
	defer putLine(l)
	l.b.Reset()
	err := l.enc.Encode(r)
	j.mu.Lock()
	if j.closed || err != nil {
		j.errs++
		j.mu.Unlock()
		return
	}
	j.pending.Write(l.b.Bytes())
	j.n++
	size := j.pending.Len()
	j.mu.Unlock()
	switch {
	case size >= maxPending:
		j.flush()
	case size >= flushSize:
		select {
		case j.kick <- struct{}{}:
		default:
		}
	}
}

func (j *Writer) flusher() {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-j.done:
			return
		case <-t.C:
		case <-j.kick:
		}
		j.flush()
	}
}

// flush writes what is pending, holding the emitters' lock only to swap
// buffers.
func (j *Writer) flush() error {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	return j.flushLocked(nil)
}

// flushLocked is flush with wmu held; last, if any, is appended as the
// last line of this write, in the same hold of mu as the buffer swap.
func (j *Writer) flushLocked(last []byte) error {
	j.mu.Lock()
	if last != nil {
		j.pending.Write(last)
		j.n++
	}
	out := j.pending
	j.pending, j.spare = j.spare, nil
	j.mu.Unlock()
	var err error
	if out.Len() > 0 { // nothing to write is no write (the file may be closed by now)
		var n int
		n, err = j.f.Write(out.Bytes())
		j.size += int64(n)
	}
	out.Reset()
	if out.Cap() > 4*flushSize {
		out = new(bytes.Buffer) // it held one big record: do not keep its room
	}
	j.mu.Lock()
	j.spare = out
	if err != nil {
		j.errs++
	}
	j.mu.Unlock()
	return err
}

// Snapshot appends rec (an event.Snapshot record), writes out everything
// pending and syncs the file. It returns the journal's length then: the
// file's first size bytes are a consistent journal ending with rec, since
// the journal is only ever appended to.
func (j *Writer) Snapshot(rec event.Record) (size int64, err error) {
	line, err := json.Marshal(rec)
	if err != nil {
		return 0, fmt.Errorf("journal: snapshot: %w", err)
	}
	// wmu first, then rec last in pending, under one hold of each: no
	// record lands between rec and the size.
	j.wmu.Lock()
	defer j.wmu.Unlock()
	j.mu.Lock()
	closed := j.closed
	j.mu.Unlock()
	if closed {
		return 0, errors.New("journal: snapshot: the journal is closed")
	}
	if err := j.flushLocked(append(line, '\n')); err != nil {
		return 0, fmt.Errorf("journal: snapshot: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return 0, fmt.Errorf("journal: snapshot: %w", err)
	}
	return j.size, nil
}

// Counts returns how many records were written and how many could not be.
func (j *Writer) Counts() (written, failed uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.n, j.errs
}

// Close flushes and closes the file. Safe to call twice.
func (j *Writer) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	close(j.done)
	j.mu.Unlock()
	ferr := j.flush()
	j.wmu.Lock()
	defer j.wmu.Unlock()
	serr := j.f.Sync()
	cerr := j.f.Close()
	for _, err := range []error{ferr, serr, cerr} {
		if err != nil {
			return fmt.Errorf("journal: close: %w", err)
		}
	}
	return nil
}
