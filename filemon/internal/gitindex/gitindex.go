// Package gitindex reads the entries of a git index file (.git/index,
// versions 2 to 4): each tracked path with the stat data git recorded and
// the hash of its blob. It does no I/O; the caller reads the file. Only what
// a change detector needs is decoded: extensions are skipped and the
// trailing checksum is not verified (a corrupt index yields wrong hashes,
// which only makes the caller report more, never less).
package gitindex

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrFormat is returned for data that is not a git index this package reads.
var ErrFormat = errors.New("gitindex: not a git index")

// Entry is one index entry at stage 0 (entries of unmerged paths are
// skipped).
type Entry struct {
	Path      string // slash-separated, relative to the repository's top
	Mode      uint32 // git mode: 0100644, 0100755, 0120000 (symlink), 0160000 (gitlink)
	MtimeSec  uint32
	MtimeNsec uint32
	Ino       uint32
	Size      uint32 // low 32 bits of the size
	Hash      []byte // blob id, hashLen bytes
	// SkipWorktree is set for a path a sparse checkout left out of the
	// work tree: its absence there is not a change.
	SkipWorktree bool
}

const (
	fixedLen = 40 // ctime, mtime (8 each), dev, ino, mode, uid, gid, size (4 each)
	maxPath  = 1 << 16
)

// Parse decodes data, the whole content of an index file. hashLen is 20 for
// SHA-1 repositories and 32 for SHA-256 ones. fn is called for each stage-0
// entry in index order; it returns false to stop.
func Parse(data []byte, hashLen int, fn func(Entry) bool) error {
	if hashLen != 20 && hashLen != 32 {
		return fmt.Errorf("gitindex: hash length %d", hashLen)
	}
	if len(data) < 12 || string(data[:4]) != "DIRC" {
		return ErrFormat
	}
	ver := binary.BigEndian.Uint32(data[4:])
	if ver < 2 || ver > 4 {
		return fmt.Errorf("%w: version %d", ErrFormat, ver)
	}
	n := binary.BigEndian.Uint32(data[8:])
	off := 12
	var prev []byte // previous path, for version 4 prefix compression
	if ver == 4 {
		prev = make([]byte, 0, 256)
	}
	for i := uint32(0); i < n; i++ {
		start := off
		if len(data)-off < fixedLen+hashLen+2 {
			return fmt.Errorf("%w: entry %d truncated", ErrFormat, i)
		}
		e := Entry{
			MtimeSec:  binary.BigEndian.Uint32(data[off+8:]),
			MtimeNsec: binary.BigEndian.Uint32(data[off+12:]),
			Ino:       binary.BigEndian.Uint32(data[off+20:]),
			Mode:      binary.BigEndian.Uint32(data[off+24:]),
			Size:      binary.BigEndian.Uint32(data[off+36:]),
		}
		off += fixedLen
		e.Hash = data[off : off+hashLen : off+hashLen]
		off += hashLen
		flags := binary.BigEndian.Uint16(data[off:])
		off += 2
		stage := (flags >> 12) & 3
		if flags&0x4000 != 0 { // extended flags (version 3+)
			if ver < 3 || len(data)-off < 2 {
				return fmt.Errorf("%w: entry %d: bad extended flags", ErrFormat, i)
			}
			e.SkipWorktree = binary.BigEndian.Uint16(data[off:])&0x4000 != 0
			off += 2
		}
		var name []byte
		if ver == 4 {
			// git's varint is not Go's: see gitVarint.
			strip, k := gitVarint(data[off:])
			if k <= 0 || strip > uint64(len(prev)) {
				return fmt.Errorf("%w: entry %d: bad name prefix", ErrFormat, i)
			}
			off += k
			end := bytes.IndexByte(data[off:], 0)
			keep := len(prev) - int(strip)
			if end < 0 || keep+end > maxPath {
				return fmt.Errorf("%w: entry %d: bad name", ErrFormat, i)
			}
			// The previous name is edited in place: no allocation per entry.
			name = append(prev[:keep], data[off:off+end]...)
			off += end + 1
		} else {
			end := bytes.IndexByte(data[off:], 0)
			if end < 0 || end > maxPath {
				return fmt.Errorf("%w: entry %d: bad name", ErrFormat, i)
			}
			name = data[off : off+end]
			// Entries are padded with 1 to 8 NULs to a multiple of 8 bytes.
			off = start + (off-start+end+8)&^7
			if off > len(data) {
				return fmt.Errorf("%w: entry %d truncated", ErrFormat, i)
			}
		}
		prev = name
		if stage != 0 {
			continue
		}
		e.Path = string(name)
		if !fn(e) {
			return nil
		}
	}
	return nil
}

// gitVarint decodes git's offset varint (varint.c): each continuation adds
// one before shifting, so every value has exactly one encoding.
func gitVarint(b []byte) (uint64, int) {
	if len(b) == 0 {
		return 0, 0
	}
	c := b[0]
	v := uint64(c & 0x7f)
	i := 1
	for c&0x80 != 0 {
		if i >= len(b) || i > 9 {
			return 0, 0
		}
		v++
		c = b[i]
		i++
		v = (v << 7) + uint64(c&0x7f)
	}
	return v, i
}
