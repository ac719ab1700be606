package filemon

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/harden-runner/harden-runner/filemon/internal/gitindex"
)

// rebaseInput is what a baseline is rebuilt from after the checkout wrote
// the root's git index: the index says what the checkout wrote (path, mode,
// blob id and the stat data of the file it wrote), and the previous
// baseline keeps the untracked files that were there before.
type rebaseInput struct {
	prev    *baseline
	tracked map[string]gitindex.Entry // stage 0, in the work tree, relative to the root
	dirs    map[string]bool           // directories above tracked paths
	hashLen int
	// data is the index read, and indexTime its mtime (ns): the blob ids
	// of clean files come from this very index.
	data      []byte
	indexTime int64
	// initial: the baseline at Start of a workspace that is already a
	// checkout. A tracked file that differs from its blob was changed
	// before monitoring began: it is baseline as it is, not reported.
	initial bool
}

// readIndex reads the index of the repository whose top is root: kept,
// the index the checkout wrote (open since it wrote it), or with none
// root/.git/index. A later git (a build's commit) may have renamed its own
// index over the checkout's by now: kept still holds what the checkout
// wrote, and the files the later git changed are differences from it.
func readIndex(root string, prev *baseline, kept *os.File) (*rebaseInput, error) {
	gitDir := filepath.Join(root, ".git")
	f := kept
	if f == nil {
		var err error
		if f, err = os.Open(filepath.Join(gitDir, "index")); err != nil {
			return nil, fmt.Errorf("read git index: %w", err)
		}
		defer f.Close()
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read git index %s: %w", f.Name(), err)
	}
	data, err := io.ReadAll(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return nil, fmt.Errorf("read git index %s: %w", f.Name(), err)
	}
	in := &rebaseInput{prev: prev, tracked: map[string]gitindex.Entry{}, dirs: map[string]bool{}, hashLen: gitHashLen(gitDir),
		data: data, indexTime: fi.ModTime().UnixNano()}
	err = gitindex.Parse(data, in.hashLen, func(e gitindex.Entry) bool {
		if e.SkipWorktree || e.Mode&modeType == modeDir|modeLink /* gitlink: a submodule */ {
			return true
		}
		in.tracked[e.Path] = e
		for d := e.Path; ; {
			i := strings.LastIndexByte(d, '/')
			if i < 0 {
				break
			}
			d = d[:i]
			if in.dirs[d] {
				break
			}
			in.dirs[d] = true
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("parse git index: %w", err)
	}
	return in, nil
}

// keep says whether the walk of a rebuilt baseline records rel: what the
// checkout wrote (tracked paths and .git's config and hooks), and what the
// previous baseline held and is still the same file. A build's own files
// are not baseline.
func (in *rebaseInput) keep(rel string, st fileStat) bool {
	if rel == ".git" || strings.HasPrefix(rel, ".git/") {
		return true
	}
	if st.mode == modeDir {
		if in.dirs[rel] {
			return true
		}
	} else if _, ok := in.tracked[rel]; ok {
		return true
	}
	if in.prev == nil {
		return false
	}
	idx, ok := in.prev.byPath[rel]
	return ok && in.prev.entries[idx].sameFile(st)
}

// carry makes the untracked entries of b that the previous baseline held
// keep their previous stat data: a change made to them before the rebuild
// is still a difference from the baseline.
func (in *rebaseInput) carry(b *baseline) {
	if in.prev == nil {
		return
	}
	for i := range b.entries {
		e := &b.entries[i]
		if _, tracked := in.tracked[e.path]; tracked || e.isDir() {
			continue
		}
		if j, ok := in.prev.byPath[e.path]; ok {
			p := in.prev.entries[j]
			e.size, e.mtime, e.ctime = p.size, p.mtime, p.ctime
		}
	}
}

// afterCheckout is a tracked file that differs from what the checkout
// wrote, found when the baseline was rebuilt: changed or deleted between
// the checkout's index write and the rebuild.
type afterCheckout struct {
	path    string
	deleted bool
	shorter bool
}

// verify checks every tracked path against the index: a file whose stat
// data matches was left as the checkout wrote it (loadBlobs gave it its
// blob); any other must hash to its blob id. It returns the paths that do
// not, and gives blob ids to the ones that do.
func (in *rebaseInput) verify(b *baseline) []afterCheckout {
	var out []afterCheckout
	for path, e := range in.tracked {
		idx, ok := b.byPath[path]
		if !ok {
			if !in.initial {
				out = append(out, afterCheckout{path: path, deleted: true})
			}
			continue
		}
		be := &b.entries[idx]
		if be.blob >= 0 {
			continue
		}
		if in.initial {
			continue
		}
		if hashIs(b.abs(path), be.mode, e.Hash, in.hashLen) {
			be.blob = int32(len(b.blobs) / in.hashLen)
			b.blobs = append(b.blobs, e.Hash...)
			b.hashLen = in.hashLen
			continue
		}
		out = append(out, afterCheckout{path: path, shorter: be.size < int64(e.Size)})
	}
	return out
}

// hashIs says whether the file at abs (mode: its S_IFMT bits) hashes to
// the git blob id want.
func hashIs(abs string, mode uint32, want []byte, hashLen int) bool {
	var h hash.Hash = sha1.New()
	if hashLen == 32 {
		h = sha256.New()
	}
	switch mode {
	case modeLink:
		target, err := os.Readlink(abs)
		if err != nil {
			return false
		}
		fmt.Fprintf(h, "blob %d\x00%s", len(target), target)
	case modeReg:
		f, err := os.Open(abs)
		if err != nil {
			return false
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return false
		}
		fmt.Fprintf(h, "blob %d\x00", fi.Size())
		if n, err := io.Copy(h, f); err != nil || n != fi.Size() {
			return false
		}
	default:
		return false
	}
	return bytes.Equal(h.Sum(nil), want)
}
