package runnerstep

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// maxHead is how much of a script ReadHead reads: enough for a first line.
const maxHead = 4096

// HostFS reads the machine's own files. Paths come from command lines,
// which any process controls, so ReadHead follows no symbolic link
// anywhere on the path and reads only regular files: a process cannot
// point it at a file its owner could not read (with the kernel's
// protected_hardlinks on, as Ubuntu has it, nor through a hard link).
type HostFS struct{}

// ReadHead returns up to the first 4 KiB of the regular file at path.
func (HostFS) ReadHead(path string) ([]byte, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("runnerstep: open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("runnerstep: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("runnerstep: %s is not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, maxHead))
}

// Exists reports whether path names a regular file (not a link to one).
func (HostFS) Exists(path string) bool {
	st, err := os.Lstat(path)
	return err == nil && st.Mode().IsRegular()
}
