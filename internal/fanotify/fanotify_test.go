//go:build linux

package fanotify

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestWatchFilesAllow: a group from WatchFiles marks the files that exist
// (and skips the missing one), an open of a marked file waits for the
// permission event's answer, and Allow lets it go ahead.
func TestWatchFilesAllow(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (fanotify_init)")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "watched")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, watched, err := WatchFiles(unix.FAN_CLASS_CONTENT, unix.FAN_OPEN_PERM, []string{filepath.Join(dir, "missing"), p})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if !slices.Equal(watched, []string{p}) {
		t.Fatalf("watched %q, want only %q", watched, p)
	}
	opened := make(chan error, 1)
	go func() {
		g, err := os.Open(p)
		if err == nil {
			g.Close()
		}
		opened <- err
	}()
	if err := f.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := f.Read(buf)
	if err != nil {
		t.Fatalf("no permission event: %v", err)
	}
	var evs []Event
	if err := Parse(buf[:n], func(ev *Event) bool { evs = append(evs, *ev); return true }); err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Mask&unix.FAN_OPEN_PERM == 0 || evs[0].FD < 0 || int(evs[0].PID) != os.Getpid() {
		t.Fatalf("events %+v, want one FAN_OPEN_PERM from pid %d with a descriptor", evs, os.Getpid())
	}
	defer unix.Close(int(evs[0].FD))
	select {
	case err := <-opened:
		t.Fatalf("the open returned (%v) before the event was answered", err)
	default:
	}
	if err := Allow(int(f.Fd()), evs[0].FD); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("open after Allow: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the open still waits after Allow")
	}
}
