package firewall

import (
	"fmt"
	"iter"
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

// familyRanges yields the ranges of one family (IPv4 if v4): the contents
// of net4 or net6. The kernel rejects overlapping intervals, which is why
// the ranges come merged (policy.MergeRanges: a list of published cloud
// ranges has a /16 and /24s inside it); the set then allows exactly the
// union of the entries.
func familyRanges(rs iter.Seq[policy.AddrRange], v4 bool) iter.Seq[policy.AddrRange] {
	return func(yield func(policy.AddrRange) bool) {
		for r := range rs {
			if r.First.Is4() == v4 && !yield(r) {
				return
			}
		}
	}
}

// rangeChunks yields the interval set elements of rs, one per range, a
// message's worth (elemsPerMsg) at a time in one reused slice (see
// addRangeSet): 100,000 elements at once would be ~20 MB.
func rangeChunks(rs iter.Seq[policy.AddrRange]) iter.Seq[[]nftables.SetElement] {
	return func(yield func([]nftables.SetElement) bool) {
		els := make([]nftables.SetElement, 0, elemsPerMsg)
		for r := range rs {
			els = append(els, nftables.SetElement{Key: concatKey(r.First, r.Port), KeyEnd: concatKey(r.Last, r.Port)})
			if len(els) == elemsPerMsg {
				if !yield(els) {
					return
				}
				els = els[:0]
			}
		}
		if len(els) > 0 {
			yield(els)
		}
	}
}
