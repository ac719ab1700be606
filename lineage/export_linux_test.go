package lineage

import "net/netip"

// flowsToForTest returns every recorded flow to dst with its owner.
func (t *Tracker) flowsToForTest(dst netip.Addr) map[lineageLinFlow]Owner {
	t.drainFlows()
	out := map[lineageLinFlow]Owner{}
	t.flows.each(func(k lineageLinFlow, v lineageLinOwner) {
		if netip.AddrFrom16(k.Daddr).Unmap() == dst.Unmap() {
			out[k] = owner(v)
		}
	})
	return out
}
