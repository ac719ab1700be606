package agent

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// Journal appends event records to a file, one JSON object per line. Lines
// are buffered and flushed at least every flushEvery, so a reader sees
// events with little delay and a killed agent loses at most that much.
// Safe for concurrent use.
type Journal struct {
	mu     sync.Mutex
	f      *os.File
	w      *bufio.Writer
	enc    *json.Encoder
	n      uint64
	errs   uint64
	closed bool
	done   chan struct{}
}

const flushEvery = 200 * time.Millisecond

// OpenJournal creates (or truncates) the journal at path, readable only by its owner.
func OpenJournal(path string) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	w := bufio.NewWriterSize(f, 256<<10)
	j := &Journal{f: f, w: w, enc: json.NewEncoder(w), done: make(chan struct{})}
	go j.flusher()
	return j, nil
}

// Emit appends one record. It is an event.Emit.
func (j *Journal) Emit(r event.Record) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		j.errs++
		return
	}
	if err := j.enc.Encode(r); err != nil {
		j.errs++
		return
	}
	j.n++
}

func (j *Journal) flusher() {
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-j.done:
			return
		case <-t.C:
			j.mu.Lock()
			if err := j.w.Flush(); err != nil {
				j.errs++
			}
			j.mu.Unlock()
		}
	}
}

// Counts returns how many records were written and how many could not be.
func (j *Journal) Counts() (written, failed uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.n, j.errs
}

// Close flushes and closes the file. Safe to call twice.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	close(j.done)
	ferr := j.w.Flush()
	serr := j.f.Sync()
	cerr := j.f.Close()
	for _, err := range []error{ferr, serr, cerr} {
		if err != nil {
			return fmt.Errorf("journal: close: %w", err)
		}
	}
	return nil
}
