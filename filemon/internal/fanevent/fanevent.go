// Package fanevent decodes the records that a fanotify file descriptor
// returns from read(2): the fixed event metadata and, for groups that report
// file identifiers, the info records that follow it. It does no I/O and
// depends on nothing outside the standard library, so it builds and fuzzes on
// any platform.
package fanevent

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Layout constants from <linux/fanotify.h>.
const (
	metadataLen = 24 // struct fanotify_event_metadata
	version     = 3  // FANOTIFY_METADATA_VERSION

	infoHeaderLen = 4 // struct fanotify_event_info_header
	fidFixedLen   = 4 + 8 + 8

	// Info record types.
	InfoFID         = 1
	InfoDFIDName    = 2
	InfoDFID        = 3
	InfoOldDFIDName = 10
	InfoNewDFIDName = 12
)

// ErrMalformed is returned for a buffer that is not a sequence of
// well-formed fanotify events.
var ErrMalformed = errors.New("fanevent: malformed event")

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
		evLen := int(binary.LittleEndian.Uint32(rest[0:]))
		vers := rest[4]
		metaLen := int(binary.LittleEndian.Uint16(rest[6:]))
		if vers != version {
			return fmt.Errorf("%w: version %d at offset %d", ErrMalformed, vers, off)
		}
		if metaLen < metadataLen || evLen < metaLen || evLen > len(rest) {
			return fmt.Errorf("%w: lengths %d/%d at offset %d", ErrMalformed, evLen, metaLen, off)
		}
		ev = Event{
			Mask: binary.LittleEndian.Uint64(rest[8:]),
			FD:   int32(binary.LittleEndian.Uint32(rest[16:])),
			PID:  int32(binary.LittleEndian.Uint32(rest[20:])),
		}
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
