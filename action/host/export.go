package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/agent"
	"github.com/harden-runner/harden-runner/journal"
)

// The journal reaches the post step as an export stream (package
// journal's WriteExport, ReadExport: length and SHA-256 checked) on the
// stdout of the helper container the post step itself created and
// attached to (host-stop --stream). No file in a directory the runner's
// user can write takes part, so a step cannot plant a journal or a stop
// result: it would have to write into that container's output, which
// takes root.

// Snapshot asks the agent for a journal snapshot and leaves it enforcing.
func Snapshot(ctx context.Context, root, dir string) (*agent.SnapshotResult, error) {
	root, dir = defaultPaths(root, dir)
	if err := CheckNamespaces(); err != nil {
		return nil, err
	}
	if err := CheckAgentDir(root, dir); err != nil {
		return nil, err
	}
	state := filepath.Join(root, dir, "state")
	res, err := agent.SnapshotDaemon(ctx, state)
	if errors.Is(err, agent.ErrNotRunning) && waitRestart(ctx, state) {
		res, err = agent.SnapshotDaemon(ctx, state)
	}
	return res, err
}

func defaultPaths(root, dir string) (string, string) {
	if root == "" {
		root = DefaultRoot
	}
	if dir == "" {
		dir = DefaultDir
	}
	return root, dir
}

// WriteExport writes the export stream of the agent's journal to w: the
// first snap.Bytes bytes of it for a snapshot, else all of it. opErr (the
// stop's or the snapshot's error) goes into the trailer. The journal is
// read only if it and its directories are root's and closed to others.
func WriteExport(w io.Writer, root, dir string, snap *agent.SnapshotResult, opErr error) error {
	root, dir = defaultPaths(root, dir)
	errs := []error{opErr}
	var src io.Reader
	f, size, err := openJournal(filepath.Join(root, dir))
	if err != nil {
		errs = append(errs, err)
		size = 0
	} else {
		defer f.Close()
		src = f
		if snap != nil {
			if snap.Bytes > size || snap.Bytes < 0 {
				errs = append(errs, fmt.Errorf("host: the snapshot's length %d is not within the journal's %d bytes", snap.Bytes, size))
			} else {
				size = snap.Bytes
			}
		}
	}
	if err := journal.WriteExport(w, src, size, snap != nil, errors.Join(errs...)); err != nil {
		return fmt.Errorf("host: %w", err)
	}
	return nil
}

// openJournal opens hostDir/state/journal.jsonl, checking that hostDir
// and state are directories (no links) owned by root and writable by
// no one else (state: closed to others), and the journal a regular file
// of root's, mode 0600 or tighter. It returns the file and its size.
func openJournal(hostDir string) (*os.File, int64, error) {
	state := filepath.Join(hostDir, "state")
	for _, c := range []struct {
		path string
		deny os.FileMode
	}{{hostDir, 0o022}, {state, 0o077}} {
		st, err := os.Lstat(c.path)
		if err != nil {
			return nil, 0, fmt.Errorf("host: the agent's directory: %w", err)
		}
		if err := rootOnly(st, c.deny); err != nil {
			return nil, 0, fmt.Errorf("host: %s: %w", c.path, err)
		}
	}
	path := filepath.Join(state, agent.StateJournal)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, 0, fmt.Errorf("host: no journal at %s (the agent never ran?)", path)
		}
		return nil, 0, fmt.Errorf("host: open the journal %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	st, err := f.Stat()
	if err == nil {
		err = rootOnly(st, 0o077)
	}
	if err == nil && !st.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("host: the journal %s: %w", path, err)
	}
	return f, st.Size(), nil
}

// rootOnly checks that st is root's, not a link, and has none of deny's
// permission bits.
func rootOnly(st os.FileInfo, deny os.FileMode) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case st.Mode()&os.ModeSymlink != 0:
		return errors.New("is a symbolic link")
	case !ok || sys.Uid != 0:
		return fmt.Errorf("not owned by root (uid %v)", uidOf(sys))
	case st.Mode().Perm()&deny != 0:
		return fmt.Errorf("mode %v is open to others", st.Mode().Perm())
	}
	return nil
}

func uidOf(s *syscall.Stat_t) any {
	if s == nil {
		return "unknown"
	}
	return s.Uid
}
