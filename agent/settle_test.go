package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWaitSettled(t *testing.T) {
	dir := t.TempDir()
	done := make(chan time.Time, 1)
	go func() {
		if err := waitSettled(context.Background(), dir, 10*time.Millisecond, 150*time.Millisecond); err != nil {
			t.Error(err)
		}
		done <- time.Now()
	}()
	// Empty: never settles. Then "checkout" writes for a while.
	time.Sleep(300 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("an empty workspace counted as settled")
	default:
	}
	var writes []time.Time
	for i := range 5 {
		if err := os.WriteFile(filepath.Join(dir, "f"+string(rune('a'+i))), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		writes = append(writes, time.Now())
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case at := <-done:
		// On a loaded machine a 50 ms sleep can outlast the quiet time, and
		// settling in that gap is right: what must hold is that a quiet
		// stretch (less the two polls that bound its edges) came between a
		// write and the settling.
		if gap := longestQuiet(writes, at); gap < 150*time.Millisecond-2*10*time.Millisecond {
			t.Errorf("settled at %v after the first write with at most %v without a change (writes %v), want the quiet time",
				at.Sub(writes[0]), gap, writes)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("never settled")
	}
}

// longestQuiet is the longest time between consecutive writes before at, and
// between the last of them and at.
func longestQuiet(writes []time.Time, at time.Time) time.Duration {
	var longest time.Duration
	for i, w := range writes {
		if !w.Before(at) {
			break
		}
		next := at
		if i+1 < len(writes) && writes[i+1].Before(at) {
			next = writes[i+1]
		}
		longest = max(longest, next.Sub(w))
	}
	return longest
}

func TestWaitSettledStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := waitSettled(ctx, t.TempDir(), time.Millisecond, time.Second); err == nil {
		t.Fatal("waitSettled ignored a cancelled context")
	}
}
