package lineage

import (
	"path/filepath"
	"strings"
	"sync"
)

// Truncation is a truncate(2) by path that succeeded: who, the path as
// given, and the working directory a relative one is resolved from.
type Truncation struct {
	Owner  Owner
	Path   string
	CwdDev uint64 // user space's dev_t (unix.Mkdev)
	CwdIno uint64
}

// maxTruncations is how many recent truncations are kept: a build that
// truncates more by path within the moment the file monitor takes to ask
// leaves the oldest unnamed, as they were before.
const maxTruncations = 256

// truncations keeps the newest maxTruncations, oldest first. Safe for
// concurrent use.
type truncations struct {
	mu  sync.Mutex
	rec []Truncation
}

func (s *truncations) add(r Truncation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rec) == maxTruncations {
		copy(s.rec, s.rec[1:])
		s.rec = s.rec[:len(s.rec)-1]
	}
	s.rec = append(s.rec, r)
}

// find returns the newest truncation of the file at the absolute, clean
// path abs made between the monotonic times lo and hi (ns). stat gives a
// directory's device and inode, to tell whether a relative path was given
// from it.
func (s *truncations) find(abs string, lo, hi uint64, stat func(dir string) (dev, ino uint64, ok bool)) (Truncation, bool) {
	s.mu.Lock()
	rec := make([]Truncation, len(s.rec))
	copy(rec, s.rec)
	s.mu.Unlock()
	for i := len(rec) - 1; i >= 0; i-- {
		if at := rec[i].Owner.At; at >= lo && at <= hi && matches(rec[i], abs, stat) {
			return rec[i], true
		}
	}
	return Truncation{}, false
}

// matches says whether r truncated the file at abs: its absolute path is
// abs, or its relative one, cleaned, is abs's tail below a directory that
// is r's working directory (same device and inode). A relative path that
// climbs (..) or goes through a symbolic link to elsewhere does not match:
// its truncation stays unnamed rather than named wrongly.
func matches(r Truncation, abs string, stat func(string) (uint64, uint64, bool)) bool {
	if filepath.IsAbs(r.Path) {
		return filepath.Clean(r.Path) == abs
	}
	rel := filepath.Clean(r.Path)
	if rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return false
	}
	if !strings.HasSuffix(abs, "/"+rel) {
		return false
	}
	dir := strings.TrimSuffix(abs, "/"+rel)
	if dir == "" {
		dir = "/"
	}
	dev, ino, ok := stat(dir)
	return ok && dev == r.CwdDev && ino == r.CwdIno
}
