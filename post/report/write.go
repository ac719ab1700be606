package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// JSON returns report.json's content: the report, indented, with a final newline.
func (r *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("report: encode json: %w", err)
	}
	return append(b, '\n'), nil
}

// WriteDir writes report.json and summary.md (DefaultSummaryMax) into dir
// (OpenDir): see WriteRoot.
func WriteDir(dir string, r *Report) error {
	root, err := OpenDir(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return WriteRoot(root, r)
}

// OpenDir opens the report directory dir, creating it with mode 0755 if
// needed. dir itself must be a directory, not a symbolic link: the report
// dir is often one a step can write (the workspace, $HOME), and root
// would write where a planted link points. What is written through the
// returned root stays inside the directory opened, whatever is renamed
// or linked in its place afterwards.
func OpenDir(dir string) (*os.Root, error) {
	created := false
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("report: create %q: %w", dir, err)
		}
		created = true
	}
	st, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("report: report dir %q is not a directory (%v): refusing to write through it", dir, st.Mode().Type())
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	// The directory looked at is the one opened: not swapped for a link
	// in between.
	if got, err := root.Stat("."); err != nil || !os.SameFile(got, st) {
		root.Close()
		return nil, fmt.Errorf("report: report dir %q changed while it was opened: refusing to write through it", dir)
	}
	// The mode (past the umask) is set on what was opened, not by path:
	// a link planted there after MkdirAll would have root chmod its target.
	if created {
		if err := root.Chmod(".", 0o755); err != nil {
			root.Close()
			return nil, fmt.Errorf("report: chmod %q: %w", dir, err)
		}
	}
	return root, nil
}

// WriteRoot writes report.json and summary.md into root. Each is written
// to a temporary name and renamed, so readers never see half a file, and
// a file, link or FIFO that was there is replaced, never written
// through; both end up with mode 0644.
func WriteRoot(root *os.Root, r *Report) error {
	js, err := r.JSON()
	if err != nil {
		return err
	}
	if err := WriteFile(root, "report.json", js, 0o644); err != nil {
		return err
	}
	return WriteFile(root, "summary.md", []byte(r.Summary(DefaultSummaryMax)), 0o644)
}

// WriteFile writes data to name in root through a new file renamed over
// it, with mode perm.
func WriteFile(root *os.Root, name string, data []byte, perm os.FileMode) error {
	var f *os.File
	var tmp string
	for i := 0; ; i++ {
		tmp = fmt.Sprintf(".%s.%d.%d", name, os.Getpid(), rand.Uint64())
		var err error
		f, err = root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || i == 10 {
			return fmt.Errorf("report: write %q: %w", filepath.Join(root.Name(), name), err)
		}
	}
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		root.Remove(tmp)
		return fmt.Errorf("report: write %q: %w", filepath.Join(root.Name(), name), err)
	}
	return nil
}
