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
// It is a fixed array, set-associative by a seeded 64-bit hash of the flow
// (the hash is what is kept): a Go map of them was the agent's second
// largest cost at tens of thousands of new connections a second, and it
// was cleared whole when a flood of distinct flows filled it. A flow is
// forgotten here once dedupWays newer ones fell into its set (its repeat
// is then recorded again, as a flow of its own); two flows whose hashes
// are equal (one chance in 2^48 with the table full; the seed is random)
// would have the second taken for a repeat.
type dedup struct {
	slots []seenAt
	seed  maphash.Seed
}

// dedupSets and dedupWays size the table: 65,536 flows.
const (
	dedupSets = 1 << 14
	dedupWays = 4
)

// seenAt is a flow's hash, when it was first seen (Unix nanoseconds) and
// until when it counts (0: an empty slot).
type seenAt struct {
	h, ns, until int64
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
	if d.slots == nil {
		d.slots = make([]seenAt, dedupSets*dedupWays)
		d.seed = maphash.MakeSeed()
	}
	ns := now.UnixNano()
	h := maphash.Comparable(d.seed, k)
	i := (h & (dedupSets - 1)) * dedupWays
	set := d.slots[i : i+dedupWays : i+dedupWays]
	// The slot to take: an empty or expired one, else the oldest.
	free := 0
	for j := range set {
		s := &set[j]
		if s.until > ns && s.h == int64(h) {
			return true
		}
		if s.until <= ns {
			if set[free].until > ns || s.until < set[free].until {
				free = j
			}
		} else if set[free].until > ns && s.ns < set[free].ns {
			free = j
		}
	}
	set[free] = seenAt{h: int64(h), ns: ns, until: ns + int64(ttl(k))}
	return false
}
