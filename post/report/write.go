package report

import (
	"encoding/json"
	"errors"
	"fmt"
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

// WriteDir writes report.json and summary.md (DefaultSummaryMax) into dir,
// creating dir with mode 0755 if needed. Each file is written to a
// temporary name and renamed, so readers never see half a file; both end
// up with mode 0644.
func WriteDir(dir string, r *Report) error {
	js, err := r.JSON()
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("report: create %q: %w", dir, err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			return fmt.Errorf("report: chmod %q: %w", dir, err)
		}
	}
	if err := writeFile(filepath.Join(dir, "report.json"), js); err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "summary.md"), []byte(r.Summary(DefaultSummaryMax)))
}

func writeFile(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("report: write %q: %w", name, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("report: write %q: %w", name, err)
	}
	return nil
}
