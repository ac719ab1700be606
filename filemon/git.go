package filemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/harden-runner/harden-runner/filemon/internal/gitindex"
)

// findGit looks for the git repository that holds root: a .git directory,
// or a .git file ("gitdir: ...") of a worktree or submodule, in root or a
// directory above it. It returns the git directory and root's path
// relative to the repository's top ("" when root is the top).
func findGit(root string) (gitDir, prefix string, ok bool) {
	for dir := root; ; {
		p := filepath.Join(dir, ".git")
		if fi, err := os.Stat(p); err == nil {
			if fi.IsDir() {
				gitDir = p
			} else if b, err := os.ReadFile(p); err == nil {
				line, _, _ := strings.Cut(string(b), "\n")
				g, found := strings.CutPrefix(strings.TrimSpace(line), "gitdir:")
				if !found {
					return "", "", false
				}
				g = strings.TrimSpace(g)
				if !filepath.IsAbs(g) {
					g = filepath.Join(dir, g)
				}
				gitDir = g
			}
			if gitDir != "" {
				rel, err := filepath.Rel(dir, root)
				if err != nil {
					return "", "", false
				}
				if rel == "." {
					rel = ""
				}
				return gitDir, filepath.ToSlash(rel), true
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", "", false
		}
		dir = parent
	}
}

// gitHashLen returns 32 for a SHA-256 repository and 20 otherwise.
func gitHashLen(gitDir string) int {
	cfg, _ := os.ReadFile(filepath.Join(gitDir, "config"))
	if c, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		common := strings.TrimSpace(string(c))
		if !filepath.IsAbs(common) {
			common = filepath.Join(gitDir, common)
		}
		more, _ := os.ReadFile(filepath.Join(common, "config"))
		cfg = append(cfg, more...)
	}
	for _, line := range strings.Split(string(cfg), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "objectformat") && strings.EqualFold(strings.TrimSpace(v), "sha256") {
			return 32
		}
	}
	return 20
}

// loadBlobs records the blob id of every baseline file that the git index
// says is clean: the index's stat data matches the file's and the file is
// older than the index. A file as new as the index (timestamps tick
// coarsely) may have changed after git hashed it — git's "racily clean"
// case — and gets no blob. It returns how many.
func (b *baseline) loadBlobs(root string) (int, error) {
	gitDir, prefix, ok := findGit(root)
	if !ok {
		return 0, nil
	}
	indexPath := filepath.Join(gitDir, "index")
	fi, err := os.Stat(indexPath)
	if err != nil {
		return 0, nil // a repository without an index: nothing tracked yet
	}
	data, err := os.ReadFile(indexPath)
	if err != nil {
		return 0, fmt.Errorf("read git index: %w", err)
	}
	return b.blobsFrom(data, gitHashLen(gitDir), prefix, fi.ModTime().UnixNano())
}

// blobsFrom is loadBlobs with the index read already: data, with blob ids
// of hashLen bytes, written at indexTime (ns); prefix is the root's path
// in the repository.
func (b *baseline) blobsFrom(data []byte, hashLen int, prefix string, indexTime int64) (int, error) {
	b.hashLen = hashLen
	n := 0
	err := gitindex.Parse(data, b.hashLen, func(e gitindex.Entry) bool {
		rel := e.Path
		if prefix != "" {
			var found bool
			if rel, found = strings.CutPrefix(e.Path, prefix+"/"); !found {
				return true
			}
		}
		idx, ok := b.byPath[rel]
		if !ok {
			return true
		}
		be := &b.entries[idx]
		wantMode := uint32(modeReg)
		if e.Mode&modeType == modeLink {
			wantMode = modeLink
		}
		clean := be.mode == wantMode && uint32(be.size) == e.Size &&
			be.mtime/1e9 == int64(e.MtimeSec) && be.mtime%1e9 == int64(e.MtimeNsec) &&
			(e.Ino == 0 || uint32(be.ino) == e.Ino) && be.mtime < indexTime
		if clean {
			be.blob = int32(len(b.blobs) / b.hashLen)
			b.blobs = append(b.blobs, e.Hash...)
			n++
		}
		return true
	})
	if err != nil {
		return n, fmt.Errorf("parse git index: %w", err)
	}
	return n, nil
}

// sameBlob says whether the file at the baseline path of idx hashes to the
// blob id the index recorded for it. False when there is none.
func (b *baseline) sameBlob(idx int32) bool {
	e := &b.entries[idx]
	if e.blob < 0 {
		return false
	}
	want := b.blobs[int(e.blob)*b.hashLen : int(e.blob+1)*b.hashLen]
	return hashIs(b.abs(e.path), e.mode, want, b.hashLen)
}
