//go:build linux

package fanotify

import (
	"encoding/binary"
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// meta builds struct fanotify_event_metadata followed by info records.
func meta(mask uint64, fd, pid int32, info ...[]byte) []byte {
	n := metadataLen
	for _, r := range info {
		n += len(r)
	}
	m := unix.FanotifyEventMetadata{Event_len: uint32(n), Vers: unix.FANOTIFY_METADATA_VERSION,
		Metadata_len: uint16(metadataLen), Mask: mask, Fd: fd, Pid: pid}
	b := make([]byte, metadataLen, n)
	copy(b, unsafe.Slice((*byte)(unsafe.Pointer(&m)), metadataLen))
	for _, r := range info {
		b = append(b, r...)
	}
	return b
}

// fid builds struct fanotify_event_info_fid (with a name for the DFID_NAME
// types), padded to 4 bytes as the kernel does.
func fid(typ uint8, fsid uint64, htype int32, handle []byte, name string) []byte {
	b := make([]byte, fidFixedLen)
	b[0] = typ
	binary.LittleEndian.PutUint64(b[4:], fsid)
	binary.LittleEndian.PutUint32(b[12:], uint32(len(handle)))
	binary.LittleEndian.PutUint32(b[16:], uint32(htype))
	b = append(b, handle...)
	if name != "" {
		b = append(b, name...)
		b = append(b, 0)
	}
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	binary.LittleEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

func TestParse(t *testing.T) {
	h1 := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	h2 := []byte{9, 9, 9, 9, 9, 9, 9, 9}
	pidfd := []byte{4, 0, 8, 0, 7, 0, 0, 0} // a PIDFD record: skipped
	buf := append(meta(0x2, 5, 100), meta(0x200, -1, 101, fid(InfoDFIDName, 42, 1, h1, "victim.go"), fid(InfoFID, 42, 1, h2, ""))...)
	buf = append(buf, meta(0x40, -1, 102, pidfd, fid(InfoDFIDName, 43, 1, h1, "x"))...)
	type got struct {
		mask   uint64
		fd     int32
		pid    int32
		name   string
		dirKey string
		key    string
	}
	var evs []got
	err := Parse(buf, func(e *Event) bool {
		g := got{mask: e.Mask, fd: e.FD, pid: e.PID, name: string(e.Name)}
		if e.HasDir {
			g.dirKey = string(AppendKey(nil, e.DirFSID, e.DirHandle))
		}
		if e.HasFID {
			g.key = string(AppendKey(nil, e.FSID, e.Handle))
		}
		evs = append(evs, g)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []got{
		{mask: 0x2, fd: 5, pid: 100},
		{mask: 0x200, fd: -1, pid: 101, name: "victim.go", dirKey: HandleKey(42, 1, h1), key: HandleKey(42, 1, h2)},
		{mask: 0x40, fd: -1, pid: 102, name: "x", dirKey: HandleKey(43, 1, h1)},
	}
	if len(evs) != len(want) {
		t.Fatalf("got %d events, want %d", len(evs), len(want))
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d: got %+v, want %+v", i, evs[i], want[i])
		}
	}
}

func TestParseStops(t *testing.T) {
	buf := append(meta(1, 3, 1), meta(2, 4, 2)...)
	n := 0
	if err := Parse(buf, func(*Event) bool { n++; return false }); err != nil || n != 1 {
		t.Fatalf("n=%d err=%v", n, err)
	}
}

func TestParseMalformed(t *testing.T) {
	good := meta(1, 3, 1, fid(InfoDFIDName, 1, 1, []byte{1, 2, 3, 4}, "a"))
	for _, tc := range []struct {
		name string
		mut  func([]byte) []byte
	}{
		{"short", func(b []byte) []byte { return b[:10] }},
		{"version", func(b []byte) []byte { b[unsafe.Offsetof(unix.FanotifyEventMetadata{}.Vers)] = 2; return b }},
		{"event too long", func(b []byte) []byte {
			binary.NativeEndian.PutUint32(b[unsafe.Offsetof(unix.FanotifyEventMetadata{}.Event_len):], 1000)
			return b
		}},
		{"metadata too short", func(b []byte) []byte {
			binary.NativeEndian.PutUint16(b[unsafe.Offsetof(unix.FanotifyEventMetadata{}.Metadata_len):], 8)
			return b
		}},
		{"info too long", func(b []byte) []byte { binary.LittleEndian.PutUint16(b[metadataLen+2:], 200); return b }},
		{"handle too long", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[metadataLen+12:], 200); return b }},
		{"name unterminated", func(b []byte) []byte {
			for i := metadataLen + fidFixedLen + 4; i < len(b); i++ {
				b[i] = 'x'
			}
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mut(append([]byte(nil), good...))
			err := Parse(b, func(*Event) bool { return true })
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(meta(0x2, 5, 100))
	f.Add(meta(0x200, -1, 101, fid(InfoDFIDName, 42, 1, []byte{1, 2, 3, 4, 5, 6, 7, 8}, "victim.go"), fid(InfoFID, 42, 1, []byte{1, 2, 3, 4}, "")))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Parse(data, func(e *Event) bool {
			if e.HasDir && len(e.DirHandle) < 4 {
				t.Fatalf("dir handle %x shorter than its type", e.DirHandle)
			}
			if e.HasFID && len(e.Handle) < 4 {
				t.Fatalf("handle %x shorter than its type", e.Handle)
			}
			return true
		})
	})
}
