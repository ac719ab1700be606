package agent

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// TestJournalKeepsEveryRecord: emitters on many goroutines, the flusher
// writing meanwhile (and a burst past flushSize kicking it), Close last:
// every record is in the file, once, whole, and the counts agree.
func TestJournalKeepsEveryRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 5000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				j.Emit(event.Record{DNS: &event.DNS{Time: time.Unix(int64(i), 0), Name: "n.test", Type: "A",
					Process: event.Process{PID: w*each + i, Cmdline: "a command line long enough to fill buffers quickly"}}})
			}
		}()
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j.Emit(event.Record{Note: &event.Note{Message: "after close"}}) // counted as failed, not written
	written, failed := j.Counts()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[int]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r event.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.DNS == nil {
			t.Fatalf("line %d: %v: %q", len(seen)+1, err, sc.Text())
		}
		if seen[r.DNS.Process.PID] {
			t.Fatalf("record %d written twice", r.DNS.Process.PID)
		}
		seen[r.DNS.Process.PID] = true
	}
	if len(seen) != writers*each || written != writers*each || failed != 1 {
		t.Errorf("file has %d records, Counts %d written %d failed; want %d, %d, 1", len(seen), written, failed, writers*each, writers*each)
	}
}
