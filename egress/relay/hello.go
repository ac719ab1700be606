package relay

import (
	"encoding/binary"
	"errors"
)

// TLS framing constants (RFC 8446 §5.1, §4).
const (
	recordHeader     = 5
	recordHandshake  = 22
	handshakeHello   = 1
	extServerName    = 0
	serverNameHost   = 0
	maxHelloLen      = 1 << 14 // a ClientHello longer than one full record is refused
	maxRecordPayload = 1<<14 + 256
)

// errNeedMore means the bytes so far end inside the ClientHello.
var errNeedMore = errors.New("need more bytes")

// parseClientHello reads the server name (SNI host_name) from the first
// bytes a TLS client sent: one or more handshake records carrying the
// ClientHello (reassembled if it was fragmented). It returns errNeedMore if
// b ends before the ClientHello does, another error if the bytes are not a
// well-formed ClientHello, and "" for a ClientHello without SNI. Duplicate
// server_name extensions or host names are an error (a server might honour
// another one than we checked). With ECH the name read is the outer SNI:
// the one the client lets the network see. b is not retained.
func parseClientHello(b []byte) (string, error) {
	var msg []byte // the handshake bytes, reassembled
	for {
		if len(b) < recordHeader {
			return "", errNeedMore
		}
		if b[0] != recordHandshake || b[1] != 3 {
			return "", errors.New("not a TLS handshake record")
		}
		n := int(binary.BigEndian.Uint16(b[3:5]))
		if n == 0 || n > maxRecordPayload {
			return "", errors.New("bad TLS record length")
		}
		if len(b) < recordHeader+n {
			return "", errNeedMore
		}
		msg = append(msg, b[recordHeader:recordHeader+n]...)
		b = b[recordHeader+n:]
		if len(msg) >= 4 {
			if msg[0] != handshakeHello {
				return "", errors.New("first handshake message is not a ClientHello")
			}
			hl := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
			if hl > maxHelloLen {
				return "", errors.New("ClientHello too long")
			}
			if len(msg) >= 4+hl {
				return helloServerName(msg[4 : 4+hl])
			}
		}
	}
}

// reader walks a byte slice; a short read sets bad and yields zeros.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.bad, r.b = true, nil
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() int {
	if b := r.take(1); b != nil {
		return int(b[0])
	}
	return 0
}

func (r *reader) u16() int {
	if b := r.take(2); b != nil {
		return int(binary.BigEndian.Uint16(b))
	}
	return 0
}

// helloServerName parses a ClientHello body (RFC 8446 §4.1.2).
func helloServerName(body []byte) (string, error) {
	r := &reader{b: body}
	r.take(2 + 32)  // legacy_version, random
	r.take(r.u8())  // legacy_session_id
	r.take(r.u16()) // cipher_suites
	r.take(r.u8())  // legacy_compression_methods
	if r.bad {
		return "", errors.New("truncated ClientHello")
	}
	if len(r.b) == 0 {
		return "", nil // no extensions at all (TLS 1.0 style)
	}
	exts := &reader{b: r.take(r.u16())}
	if r.bad || len(r.b) != 0 {
		return "", errors.New("bad ClientHello extensions length")
	}
	name, seen := "", false
	for len(exts.b) > 0 {
		typ := exts.u16()
		data := exts.take(exts.u16())
		if exts.bad {
			return "", errors.New("truncated ClientHello extension")
		}
		if typ != extServerName {
			continue
		}
		if seen {
			return "", errors.New("two server_name extensions")
		}
		seen = true
		sn := &reader{b: data}
		list := &reader{b: sn.take(sn.u16())}
		if sn.bad || len(sn.b) != 0 {
			return "", errors.New("bad server_name extension")
		}
		for len(list.b) > 0 {
			t := list.u8()
			v := list.take(list.u16())
			if list.bad {
				return "", errors.New("truncated server_name entry")
			}
			if t != serverNameHost {
				continue
			}
			if name != "" {
				return "", errors.New("two host names in server_name")
			}
			if len(v) == 0 {
				return "", errors.New("empty host name in server_name")
			}
			name = string(v)
		}
	}
	return name, nil
}
