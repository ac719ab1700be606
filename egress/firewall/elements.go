package firewall

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/egress/policy"
)

// How set elements travel to the kernel. google/nftables puts every
// element of one AddSet or SetAddElements call into one netlink attribute,
// whose length field has 16 bits: past ~1,500 interval elements it wraps
// and the kernel reads a truncated list (4,000 entries installed "fine" and
// enforced none of them). So elements go in messages of at most
// elemsPerMsg, all in the same batch (one transaction: all or nothing),
// and the socket's buffers are raised to hold a batch of 100,000 entries
// (sendmsg fails with EMSGSIZE past the default 208 KiB).
const (
	// elemsPerMsg keeps the worst element (IPv6 interval: 60 bytes) in a
	// message well under the 64 KiB attribute limit.
	elemsPerMsg = 512
	// sockBuf is the netlink socket's send and receive buffer: a limit,
	// not an allocation. 100,000 IPv6 intervals are ~6 MiB.
	sockBuf = 64 << 20
)

// bigBuffers raises the netlink socket's buffers past net.core.wmem_max
// (the FORCE variants; we are root).
func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for _, opt := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt, sockBuf); e != nil && serr == nil {
				serr = fmt.Errorf("netlink socket: set buffer size %d: %w", sockBuf, e)
			}
		}
	}); err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	return serr
}

// addElements queues elems for s in messages of at most elemsPerMsg; the
// caller flushes. An error here is one of encoding (a bug), not the kernel's.
func addElements(c *nftables.Conn, s *nftables.Set, elems []nftables.SetElement) error {
	for chunk := range slices.Chunk(elems, elemsPerMsg) {
		if err := c.SetAddElements(s, chunk); err != nil {
			return fmt.Errorf("firewall: set %s: add %d elements: %w", s.Name, len(chunk), err)
		}
	}
	return nil
}

// deleteElements is addElements for removal.
func deleteElements(c *nftables.Conn, s *nftables.Set, elems []nftables.SetElement) error {
	for chunk := range slices.Chunk(elems, elemsPerMsg) {
		if err := c.SetDeleteElements(s, chunk); err != nil {
			return fmt.Errorf("firewall: set %s: delete %d elements: %w", s.Name, len(chunk), err)
		}
	}
	return nil
}

// addrRange is one interval element: first..last on one port.
type addrRange struct {
	first, last netip.Addr
	port        uint16
}

// intervalElements turns address/CIDR entries into the elements of the
// net4 and net6 interval sets. The kernel rejects overlapping intervals
// (and a list of published cloud ranges overlaps: a /16 and /24s inside
// it), so entries on the same port that overlap or touch are merged into
// one range first; the set then allows exactly the union of the entries.
func intervalElements(eps []policy.Endpoint) (v4, v6 []nftables.SetElement) {
	rs := make([]addrRange, 0, len(eps))
	for _, e := range eps {
		p := e.Prefix.Masked()
		rs = append(rs, addrRange{p.Addr(), lastAddr(p), e.Port})
	}
	for _, r := range mergeRanges(rs) {
		el := nftables.SetElement{Key: concatKey(r.first, r.port), KeyEnd: concatKey(r.last, r.port)}
		if r.first.Is4() {
			v4 = append(v4, el)
		} else {
			v6 = append(v6, el)
		}
	}
	return v4, v6
}

// mergeRanges sorts rs by family, port and start, and merges ranges of the
// same family and port that overlap or are adjacent. It reuses rs.
func mergeRanges(rs []addrRange) []addrRange {
	slices.SortFunc(rs, func(a, b addrRange) int {
		if c := cmp.Compare(a.first.BitLen(), b.first.BitLen()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.port, b.port); c != 0 {
			return c
		}
		return a.first.Compare(b.first)
	})
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 {
			cur := &out[n-1]
			if cur.port == r.port && cur.first.BitLen() == r.first.BitLen() &&
				(r.first.Compare(cur.last) <= 0 || cur.last.Next() == r.first) {
				if r.last.Compare(cur.last) > 0 {
					cur.last = r.last
				}
				continue
			}
		}
		out = append(out, r)
	}
	return out
}
