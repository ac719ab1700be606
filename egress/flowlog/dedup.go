package flowlog

import (
	"encoding/binary"
	"hash/maphash"
	"time"

	"github.com/harden-runner/harden-runner/egress/packet"
)

// dedup suppresses repeats of a flow's first packet. "ct state new" holds
// for every packet of a connection until the other side answers, so a SYN
// that is retransmitted (a blocked or slow connection: at 1, 3, 7...
// seconds) or a datagram resent on an unanswered UDP flow is logged again;
// it is one flow, not several. A TCP repeat is recognised by its initial
// sequence number (a new connection that reuses the ports has another);
// other protocols by their addresses, ports and protocol for udpFlowTTL,
// conntrack's own lifetime of an unanswered UDP flow. Not safe for
// concurrent use (the reader's one reading goroutine owns it).
//
// The map is keyed by a seeded 64-bit hash of the flow, not the 44-byte
// key: hashing and comparing that key was a fifth of the agent's CPU at
// 40,000 new connections a second (bench/conn.sh, perf). Two flows whose
// hashes collide (about one chance in 2^48 with the map full, and the
// seed is random) would have the second taken for a repeat.
type dedup struct {
	m     map[uint64]seenAt
	seed  maphash.Seed
	swept time.Time
}

// seenAt is when a flow was first seen, in Unix nanoseconds, and its TTL.
type seenAt struct {
	ns  int64
	ttl time.Duration
}

// flowKey is compact (44 bytes): the map may hold tens of thousands.
type flowKey struct {
	src, dst     [16]byte
	sport, dport uint16
	proto        uint8
	forward      bool
	isn          uint32 // TCP initial sequence number
}

const (
	synTTL     = 2 * time.Minute // TCP gives a connection attempt up after ~2 minutes
	udpFlowTTL = 30 * time.Second
	dedupMax   = 1 << 16
)

// key builds the dedup key of a packet whose transport header is l4.
func key(p packet.Packet, l4 []byte, forward bool) flowKey {
	k := flowKey{
		src: p.Src.Addr().As16(), dst: p.Dst.Addr().As16(),
		sport: p.Src.Port(), dport: p.Dst.Port(),
		proto: p.Proto, forward: forward,
	}
	if p.Proto == packet.TCP && len(l4) >= 8 {
		k.isn = binary.BigEndian.Uint32(l4[4:])
	}
	return k
}

func ttl(k flowKey) time.Duration {
	if k.proto == packet.TCP {
		return synTTL
	}
	return udpFlowTTL
}

// seen records k and reports whether it was seen within its TTL.
func (d *dedup) seen(k flowKey, now time.Time) bool {
	if d.m == nil {
		d.m = make(map[uint64]seenAt)
		d.seed = maphash.MakeSeed()
	}
	ns := now.UnixNano()
	h := maphash.Comparable(d.seed, k)
	if s, ok := d.m[h]; ok && time.Duration(ns-s.ns) < s.ttl {
		return true
	}
	if len(d.m) >= dedupMax || now.Sub(d.swept) > synTTL {
		for h, s := range d.m {
			if time.Duration(ns-s.ns) >= s.ttl {
				delete(d.m, h)
			}
		}
		d.swept = now
		if len(d.m) >= dedupMax {
			clear(d.m) // a flood of distinct flows: forget rather than grow
		}
	}
	d.m[h] = seenAt{ns: ns, ttl: ttl(k)}
	return false
}
