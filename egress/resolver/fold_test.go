package resolver

import (
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

func TestFolderKeepsEveryQueryCounted(t *testing.T) {
	var got []event.DNS
	f := newFolder(func(r event.Record) { got = append(got, *r.DNS) })
	add := func(d *event.DNS) { f.Add(dnsKind(d), *d) }
	for i := range 100 {
		add(&event.DNS{Time: time.Unix(int64(i), 0), Name: "a.test", Type: "A", Verdict: event.Allowed, Process: event.Process{PID: 7}})
	}
	add(&event.DNS{Name: "a.test", Type: "A", Verdict: event.Allowed, Process: event.Process{PID: 8}})
	if len(got) != 2 {
		t.Fatalf("before flush: %d records, want the first of each kind (2)", len(got))
	}
	f.Flush()
	total := 0
	for _, d := range got {
		total += max(d.Count, 1)
	}
	if len(got) != 3 || total != 101 || got[2].Count != 99 || got[2].Time != time.Unix(99, 0) {
		t.Fatalf("after flush: %+v (total %d), want 3 records covering 101 queries", got, total)
	}
	f.Flush()
	if len(got) != 3 {
		t.Fatalf("an empty window emitted %d more", len(got)-3)
	}
	// A kind seen before is folded in later windows too: one record per
	// window, not a first one again and then the repeats.
	for range 5 {
		add(&event.DNS{Time: time.Unix(200, 0), Name: "a.test", Type: "A", Verdict: event.Allowed, Process: event.Process{PID: 7}})
	}
	if len(got) != 3 {
		t.Fatalf("a known kind went straight on: %+v", got[3:])
	}
	f.Flush()
	if len(got) != 4 || got[3].Count != 5 {
		t.Fatalf("second window: %+v, want one record with Count 5", got[3:])
	}
}
