package flowlog

import (
	"encoding/binary"
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
type dedup struct {
	m     map[flowKey]int64 // when each was first seen, in Unix nanoseconds
	swept time.Time
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
		d.m = make(map[flowKey]int64)
	}
	ns := now.UnixNano()
	if t, ok := d.m[k]; ok && time.Duration(ns-t) < ttl(k) {
		return true
	}
	if len(d.m) >= dedupMax || now.Sub(d.swept) > synTTL {
		for k, t := range d.m {
			if time.Duration(ns-t) >= ttl(k) {
				delete(d.m, k)
			}
		}
		d.swept = now
		if len(d.m) >= dedupMax {
			clear(d.m) // a flood of distinct flows: forget rather than grow
		}
	}
	d.m[k] = ns
	return false
}
