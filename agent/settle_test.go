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
	var lastWrite time.Time
	for i := range 5 {
		if err := os.WriteFile(filepath.Join(dir, "f"+string(rune('a'+i))), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		lastWrite = time.Now()
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case at := <-done:
		if at.Sub(lastWrite) < 150*time.Millisecond {
			t.Errorf("settled %v after the last change, want at least the quiet time", at.Sub(lastWrite))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("never settled")
	}
}

func TestWaitSettledStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := waitSettled(ctx, t.TempDir(), time.Millisecond, time.Second); err == nil {
		t.Fatal("waitSettled ignored a cancelled context")
	}
}
