package host

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/agent"
)

// Files ExportJournal writes into the exchange directory.
const (
	ExportJournalFile = "journal.jsonl"
	ExportResultFile  = ".harden-runner-stop.json"
)

// StopResult is the content of ExportResultFile: the stop's error, if any.
type StopResult struct {
	Error string `json:"error,omitempty"`
}

// ExportJournal copies the agent's journal into out, a directory of the
// VM that the post step's container has mounted (its report directory),
// then writes the stop's result there: the post step reads both from its
// mount, so it needs no docker call after the agent (and with it the
// docker gate) has stopped. out lives under the runner user's home, so it
// is reached from root through no symbolic link: a step cannot turn the
// write into one into /etc.
func ExportJournal(root, dir, out string, stopErr error) error {
	if root == "" {
		root = DefaultRoot
	}
	if dir == "" {
		dir = DefaultDir
	}
	d, err := openNoSymlinks(root, out)
	if err != nil {
		return err
	}
	defer unix.Close(d)
	var errs []error
	src, err := os.Open(filepath.Join(root, dir, "state", agent.StateJournal))
	switch {
	case errors.Is(err, os.ErrNotExist):
		// No journal: the agent never ran. The result says why.
	case err != nil:
		errs = append(errs, fmt.Errorf("host: read the journal: %w", err))
	default:
		err = writeAt(d, ExportJournalFile, src)
		src.Close()
		errs = append(errs, err)
	}
	res := StopResult{}
	if err := errors.Join(append(errs, stopErr)...); err != nil {
		res.Error = err.Error()
	}
	b, _ := json.Marshal(res)
	// Last: its presence tells the post step the journal is complete.
	return errors.Join(append(errs, writeAt(d, ExportResultFile, bytes.NewReader(b)))...)
}

// openNoSymlinks opens (making it if missing, with its parent present)
// the directory path inside root, refusing symbolic links on the way.
func openNoSymlinks(root, path string) (int, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("host: open %s: %w", root, err)
	}
	defer unix.Close(rfd)
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	parent, err := unix.Openat2(rfd, filepath.Dir(path), how)
	if err != nil {
		return -1, fmt.Errorf("host: open %s without following links: %w", filepath.Dir(path), err)
	}
	defer unix.Close(parent)
	if err := unix.Mkdirat(parent, filepath.Base(path), 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("host: make %s: %w", path, err)
	}
	how.Flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	how.Resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS
	d, err := unix.Openat2(parent, filepath.Base(path), how)
	if err != nil {
		return -1, fmt.Errorf("host: open %s without following links: %w", path, err)
	}
	return d, nil
}

// writeAt writes a file named name in directory d, not through a link,
// under a temporary name first: the post step, polling for it, sees the
// whole file or none.
func writeAt(d int, name string, r io.Reader) error {
	tmp := "." + name + ".tmp"
	fd, err := unix.Openat2(d, tmp, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Mode:    0o644,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS,
	})
	if err != nil {
		return fmt.Errorf("host: write %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(d, tmp, d, name)
	}
	if err != nil {
		_ = unix.Unlinkat(d, tmp, 0)
		return fmt.Errorf("host: write %s: %w", name, err)
	}
	return nil
}
