package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// TestJournalKeepsEveryRecord: emitters on many goroutines, the flusher
// writing meanwhile (and a burst past flushSize kicking it), Close last:
// every record is in the file, once, whole, and the counts agree.
func TestJournalKeepsEveryRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	j, err := Create(path)
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

// TestJournalSnapshot: while emitters keep writing, the size Snapshot
// returns cuts the file right after the snapshot record, on a line
// boundary, and later records come after it.
func TestJournalSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal.jsonl")
	j, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
					j.Emit(event.Record{Note: &event.Note{Message: "busy"}})
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond) // let the emitters get going; not a synchronisation
	size, err := j.Snapshot(event.Record{Snapshot: &event.Snapshot{Time: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Snapshot(event.Record{Snapshot: &event.Snapshot{}}); err == nil {
		t.Error("snapshot of a closed journal succeeded")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) <= size {
		t.Fatalf("file %d bytes, snapshot %d: nothing written after it", len(b), size)
	}
	prefix := b[:size]
	if prefix[len(prefix)-1] != '\n' {
		t.Fatal("snapshot size is not on a line boundary")
	}
	lines := bytes.Split(bytes.TrimSuffix(prefix, []byte("\n")), []byte("\n"))
	var last event.Record
	if err := json.Unmarshal(lines[len(lines)-1], &last); err != nil || last.Snapshot == nil {
		t.Errorf("last record of the snapshot: %s (%v)", lines[len(lines)-1], err)
	}
	for _, l := range lines[:len(lines)-1] {
		var r event.Record
		if err := json.Unmarshal(l, &r); err != nil || r.Snapshot != nil {
			t.Fatalf("record before the snapshot: %s (%v)", l, err)
		}
	}
}

// TestAppendJournal: a restarted agent goes on with the journal a killed
// one left, whose last line may be torn: that line stays one bad line,
// every earlier and later record is whole, and the size a snapshot
// reports counts the old bytes too.
func TestAppend(t *testing.T) {
	for _, tc := range []struct {
		name, old string
	}{{"whole", `{"note":{"message":"a"}}` + "\n"}, {"torn", `{"note":{"message":"a"}}` + "\n" + `{"note":{"mess`}, {"empty", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal.jsonl")
			if err := os.WriteFile(path, []byte(tc.old), 0o600); err != nil {
				t.Fatal(err)
			}
			j, err := Append(path)
			if err != nil {
				t.Fatal(err)
			}
			j.Emit(event.Record{Note: &event.Note{Message: "b"}})
			size, err := j.Snapshot(event.Record{Snapshot: &event.Snapshot{}})
			if err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(path)
			if int64(len(b)) != size {
				t.Errorf("snapshot size %d, file %d bytes", size, len(b))
			}
			if !bytes.HasPrefix(b, []byte(tc.old)) {
				t.Errorf("the old journal was not kept:\n%s", b)
			}
			var whole, bad int
			for _, l := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
				if len(l) == 0 {
					continue
				}
				if json.Valid(l) {
					whole++
				} else {
					bad++
				}
			}
			wantBad := 0
			if tc.name == "torn" {
				wantBad = 1
			}
			if bad != wantBad || whole != strings.Count(tc.old, "}}\n")+2 {
				t.Errorf("%d whole and %d bad lines:\n%s", whole, bad, b)
			}
		})
	}
}

// TestOpenRefusesLinksAndFIFOs: Create and Append never write through a
// symbolic link at the journal's path, and refuse a FIFO at once instead
// of blocking until someone reads it.
func TestOpenRefusesLinksAndFIFOs(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, open := range []struct {
		name string
		f    func(string) (*Writer, error)
	}{{"Create", Create}, {"Append", Append}} {
		for _, name := range []string{"link", "fifo"} {
			done := make(chan error, 1)
			go func() {
				w, err := open.f(filepath.Join(dir, name))
				if err == nil {
					w.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Errorf("%s(%s) opened it", open.name, name)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%s(%s) blocks", open.name, name)
			}
		}
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "keep\n" {
		t.Errorf("the link's target changed: %q %v", b, err)
	}
}
