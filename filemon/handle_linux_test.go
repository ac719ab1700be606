package filemon

import (
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/harden-runner/harden-runner/internal/fanotify"
	"golang.org/x/sys/unix"
)

// TestHandleMountMoved: the directory remembered to open a file system's
// handles against is a path the runner user may rename, and put another
// file system's directory (or a symlink to one) in its place. Every
// handle then reads back stale, and a stale answer is kept for good (the
// file is gone): a later truncate(2) of that file would go unnamed. A
// directory that is not on the event's file system answers nothing and
// is not kept.
func TestHandleMountMoved(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, file, 0)
	if err != nil {
		t.Skipf("no file handles here: %v", err)
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		t.Fatal(err)
	}
	var other unix.Statfs_t
	if err := unix.Statfs("/dev/shm", &other); err != nil || fsidOf(other) == fsidOf(sfs) {
		t.Skip("needs /dev/shm on another file system")
	}
	ev := &fanotify.Event{Mask: unix.FAN_MODIFY, HasFID: true, FSID: fsidOf(sfs),
		Handle: append(binary.LittleEndian.AppendUint32(nil, uint32(h.Type())), h.Bytes()...)}
	moved := filepath.Join(t.TempDir(), "ws")
	if err := os.Symlink("/dev/shm", moved); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, mount string
		known       bool
	}{
		{"a symlink to another file system", moved, false},
		{"another file system's directory", "/dev/shm", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fan{modify: 0, log: slog.New(slog.DiscardHandler)}
			f.mounts.Store(ev.FSID, tc.mount)
			_, known := f.baselineFiles(&fanSink{}, ev)
			if known != tc.known {
				t.Errorf("known = %v, want %v: a wrong directory's answer would be kept", known, tc.known)
			}
		})
	}
}
