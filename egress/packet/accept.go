package packet

import "net/netip"

// Accept is a packet the firewall accepted as the first of a new flow to
// an allowed destination, as it left, recorded in the kernel (lineage's
// egress program) and read by the flow log: its protocol, addresses, a
// TCP SYN's sequence number (the same for a retransmitted SYN), its
// socket's uid and when it left (CLOCK_MONOTONIC ns).
type Accept struct {
	Proto    uint8
	Src, Dst netip.AddrPort
	ISN      uint32 // 0 for a TCP segment without SYN
	UID      uint32 // the socket's owner
	At       uint64
}
