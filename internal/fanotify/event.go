//go:build linux

package fanotify

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// metadataLen is the size of struct fanotify_event_metadata, which
	// starts every event.
	metadataLen = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))

	// The info records after the metadata have no x/sys type:
	// struct fanotify_event_info_header is {u8 info_type; u8 pad; u16 len},
	// and struct fanotify_event_info_fid is that header, a
	// __kernel_fsid_t (8 bytes), then a struct file_handle
	// {u32 handle_bytes; s32 handle_type; f_handle[handle_bytes]}.
	infoHeaderLen = 4
	fidFixedLen   = infoHeaderLen + 8 + 8

	// Info record types.
	InfoFID         = unix.FAN_EVENT_INFO_TYPE_FID
	InfoDFIDName    = unix.FAN_EVENT_INFO_TYPE_DFID_NAME
	InfoDFID        = unix.FAN_EVENT_INFO_TYPE_DFID
	InfoOldDFIDName = unix.FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
	InfoNewDFIDName = unix.FAN_EVENT_INFO_TYPE_NEW_DFID_NAME
)

// ErrMalformed is returned for a buffer that is not a sequence of
// well-formed fanotify events.
var ErrMalformed = errors.New("fanotify: malformed event")

// Event is one decoded fanotify event. Handle, DirHandle and Name alias the
// buffer given to Parse and are valid only during the callback.
type Event struct {
	Mask uint64
	FD   int32 // -1 (FAN_NOFD) when the group reports identifiers, not descriptors
	PID  int32

	// Set when the event carries a FAN_EVENT_INFO_TYPE_FID record: the
	// object the event is about.
	HasFID bool
	FSID   uint64
	Handle []byte // handle type (4 bytes, little endian) then f_handle

	// Set when the event carries a DFID or DFID_NAME record: the directory
	// in which the event happened, and the entry's name if reported.
	HasDir    bool
	DirFSID   uint64
	DirHandle []byte // same encoding as Handle
	Name      []byte
}

// HandleKey returns the map key under which an object with this file
// system id and file handle (handle type, then the handle's bytes) is
// indexed: the same encoding as Event.Handle prefixed with the fsid.
func HandleKey(fsid uint64, handleType int32, handle []byte) string {
	b := make([]byte, 12+len(handle))
	binary.LittleEndian.PutUint64(b, fsid)
	binary.LittleEndian.PutUint32(b[8:], uint32(handleType))
	copy(b[12:], handle)
	return string(b)
}

// AppendKey appends the HandleKey encoding of fsid and an Event handle
// (as in Event.Handle) to dst, so that lookups need not allocate.
func AppendKey(dst []byte, fsid uint64, handle []byte) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, fsid)
	return append(dst, handle...)
}

// Parse calls fn for each event in buf, in order, until fn returns false.
// It returns ErrMalformed (wrapped with the offset) for a record whose
// lengths are inconsistent; events before it have been delivered.
func Parse(buf []byte, fn func(*Event) bool) error {
	var ev Event
	for off := 0; off < len(buf); {
		rest := buf[off:]
		if len(rest) < metadataLen {
			return fmt.Errorf("%w: %d trailing bytes at offset %d", ErrMalformed, len(rest), off)
		}
		m := metadata(rest)
		evLen, metaLen := int(m.Event_len), int(m.Metadata_len)
		if m.Vers != unix.FANOTIFY_METADATA_VERSION {
			return fmt.Errorf("%w: version %d at offset %d", ErrMalformed, m.Vers, off)
		}
		if metaLen < metadataLen || evLen < metaLen || evLen > len(rest) {
			return fmt.Errorf("%w: lengths %d/%d at offset %d", ErrMalformed, evLen, metaLen, off)
		}
		ev = Event{Mask: m.Mask, FD: m.Fd, PID: m.Pid}
		if err := parseInfo(rest[metaLen:evLen], &ev); err != nil {
			return fmt.Errorf("%w at offset %d", err, off)
		}
		if !fn(&ev) {
			return nil
		}
		off += evLen
	}
	return nil
}

// metadata copies the struct fanotify_event_metadata at the start of b
// (at least metadataLen bytes, in the kernel's byte order) into x/sys's
// type: one copy, whatever b's alignment.
func metadata(b []byte) unix.FanotifyEventMetadata {
	var m unix.FanotifyEventMetadata
	*(*[metadataLen]byte)(unsafe.Pointer(&m)) = [metadataLen]byte(b)
	return m
}

// parseInfo decodes the info records that follow the metadata.
func parseInfo(b []byte, ev *Event) error {
	for len(b) > 0 {
		if len(b) < infoHeaderLen {
			return fmt.Errorf("%w: short info header", ErrMalformed)
		}
		typ := b[0]
		n := int(binary.LittleEndian.Uint16(b[2:]))
		if n < infoHeaderLen || n > len(b) {
			return fmt.Errorf("%w: info length %d", ErrMalformed, n)
		}
		rec := b[:n]
		b = b[n:]
		switch typ {
		case InfoFID, InfoDFID, InfoDFIDName, InfoOldDFIDName, InfoNewDFIDName:
		default:
			continue // pidfd, error, range, mount: not used here
		}
		if len(rec) < fidFixedLen {
			return fmt.Errorf("%w: short fid record", ErrMalformed)
		}
		fsid := binary.LittleEndian.Uint64(rec[4:])
		hlen := int(binary.LittleEndian.Uint32(rec[12:]))
		if hlen > len(rec)-fidFixedLen {
			return fmt.Errorf("%w: handle length %d", ErrMalformed, hlen)
		}
		handle := rec[16 : fidFixedLen+hlen] // handle type then bytes
		tail := rec[fidFixedLen+hlen:]
		switch typ {
		case InfoFID:
			if !ev.HasFID {
				ev.HasFID, ev.FSID, ev.Handle = true, fsid, handle
			}
		case InfoDFID:
			if !ev.HasDir {
				ev.HasDir, ev.DirFSID, ev.DirHandle = true, fsid, handle
			}
		default: // a DFID_NAME flavour: the name follows, NUL-terminated
			end := 0
			for end < len(tail) && tail[end] != 0 {
				end++
			}
			if end == len(tail) {
				return fmt.Errorf("%w: name not terminated", ErrMalformed)
			}
			if !ev.HasDir {
				ev.HasDir, ev.DirFSID, ev.DirHandle, ev.Name = true, fsid, handle, tail[:end]
			}
		}
	}
	return nil
}
