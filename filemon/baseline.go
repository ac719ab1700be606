package filemon

import (
	"sort"
	"strings"
)

// File type bits of a mode (S_IFMT), as statx reports them.
const (
	modeType = 0o170000
	modeDir  = 0o040000
	modeReg  = 0o100000
	modeLink = 0o120000
)

// entry is one baseline file or directory.
type entry struct {
	path  string // relative to the root, slash-separated; "" is the root
	dev   uint64
	ino   uint64
	size  int64
	mtime int64 // ns since the epoch
	// ctime is the inode's change time (ns), which no one can set back:
	// a write through a mapping or Linux AIO (no fanotify or inotify
	// event) with the mtime restored still moves it. Compared at a close
	// after writing only: a rename, chmod, chown or new link moves it too,
	// and the final rescan cannot tell those from a write for a file git
	// filters (LFS) or does not track.
	ctime int64
	btime int64 // ns; 0 when the file system does not report birth times
	mode  uint32
	blob  int32 // index of the git blob id in baseline.blobs, or -1
}

func (e *entry) isDir() bool { return e.mode&modeType == modeDir }

// sameFile says whether st is the file e recorded: same inode, not a
// recycled inode number (birth time), same type.
func (e *entry) sameFile(st fileStat) bool {
	return st.dev == e.dev && st.ino == e.ino && st.mode&modeType == e.mode&modeType &&
		(e.btime == 0 || st.btime == 0 || e.btime == st.btime)
}

type inoKey struct{ dev, ino uint64 }

// baseline is the workspace as Start found it. It is immutable once built
// and safe for concurrent reads.
type baseline struct {
	root    string  // absolute, clean
	entries []entry // sorted by path
	byPath  map[string]int32
	byIno   map[inoKey]int32
	links   map[inoKey][]int32 // further paths of hard-linked files
	// byHandle maps a directory's fanotify key (fsid, handle type, handle)
	// to its entry.
	byHandle map[string]int32
	blobs    []byte // git blob ids, hashLen bytes each
	hashLen  int
	files    int // entries that are not directories
}

// build sorts the entries and indexes them. handles maps a directory's
// path to its fanotify key.
func (b *baseline) build(handles map[string]string) {
	sort.Slice(b.entries, func(i, j int) bool { return b.entries[i].path < b.entries[j].path })
	b.byPath = make(map[string]int32, len(b.entries))
	b.byIno = make(map[inoKey]int32, len(b.entries))
	b.links = make(map[inoKey][]int32)
	b.byHandle = make(map[string]int32, len(handles))
	b.files = 0
	for i := range b.entries {
		e := &b.entries[i]
		idx := int32(i)
		b.byPath[e.path] = idx
		if e.isDir() {
			if k, ok := handles[e.path]; ok {
				b.byHandle[k] = idx
			}
			continue
		}
		b.files++
		k := inoKey{e.dev, e.ino}
		if _, dup := b.byIno[k]; dup {
			b.links[k] = append(b.links[k], idx)
		} else {
			b.byIno[k] = idx
		}
	}
}

// lookupIno returns the baseline files with this device and inode.
func (b *baseline) lookupIno(dev, ino uint64, fn func(int32)) {
	k := inoKey{dev, ino}
	idx, ok := b.byIno[k]
	if !ok {
		return
	}
	fn(idx)
	for _, l := range b.links[k] {
		fn(l)
	}
}

// filesUnder returns the non-directory entries below directory dir.
func (b *baseline) filesUnder(dir int32) []int32 {
	prefix := b.entries[dir].path + "/"
	start := 0
	if b.entries[dir].path == "" {
		prefix = ""
	} else {
		start = sort.Search(len(b.entries), func(i int) bool { return b.entries[i].path >= prefix })
	}
	var out []int32
	for i := start; i < len(b.entries) && strings.HasPrefix(b.entries[i].path, prefix); i++ {
		if !b.entries[i].isDir() {
			out = append(out, int32(i))
		}
	}
	return out
}

// rel returns name (an absolute path) relative to the root, and whether it
// is inside the root.
func (b *baseline) rel(name string) (string, bool) {
	if name == b.root {
		return "", true
	}
	if len(name) > len(b.root) && strings.HasPrefix(name, b.root) && name[len(b.root)] == '/' {
		return name[len(b.root)+1:], true
	}
	if b.root == "/" && strings.HasPrefix(name, "/") {
		return name[1:], true
	}
	return "", false
}

// abs returns the absolute path of a relative one.
func (b *baseline) abs(rel string) string {
	if rel == "" {
		return b.root
	}
	if b.root == "/" {
		return "/" + rel
	}
	return b.root + "/" + rel
}

// join returns the relative path of name inside relative directory dir.
func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}
