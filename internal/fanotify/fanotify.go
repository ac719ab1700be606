//go:build linux

// Package fanotify is the project's one user of fanotify(7) below the
// monitors: it opens groups that watch a list of files (WatchFiles),
// decodes the events read from a group (Parse) and answers permission
// events (Allow). The fixed records are x/sys/unix's types and constants
// (unix.FanotifyEventMetadata, unix.FanotifyResponse, FAN_*); only the
// info records x/sys has no type for (struct fanotify_event_info_header
// and _fid) are laid out here. Parse does no I/O, so the fuzz target runs
// it on any input.
package fanotify

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WatchFiles opens a fanotify group of class (unix.FAN_CLASS_NOTIF, or
// unix.FAN_CLASS_CONTENT for permission events), non-blocking and
// close-on-exec, whose event descriptors are opened read-only, and marks
// every path in paths that exists for the events in mask. It returns the
// group as a file (non-blocking: Close ends a Read in progress) and the
// paths it marked, which may be none. On an error no group is left open.
func WatchFiles(class uint, mask uint64, paths []string) (*os.File, []string, error) {
	fd, err := unix.FanotifyInit(class|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if err != nil {
		return nil, nil, fmt.Errorf("fanotify_init: %w", err)
	}
	var watched []string
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, mask, unix.AT_FDCWD, p); err != nil {
			unix.Close(fd)
			return nil, nil, fmt.Errorf("watch %s: %w", p, err)
		}
		watched = append(watched, p)
	}
	return os.NewFile(uintptr(fd), "fanotify"), watched, nil
}

// Allow answers the permission event whose descriptor is fd (Event.FD)
// on the group open as group: the operation goes ahead.
func Allow(group int, fd int32) error {
	resp := unix.FanotifyResponse{Fd: fd, Response: unix.FAN_ALLOW}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&resp)), unsafe.Sizeof(resp))
	if _, err := unix.Write(group, b); err != nil {
		return fmt.Errorf("fanotify: answer the permission event: %w", err)
	}
	return nil
}
