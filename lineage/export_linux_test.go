package lineage

import "net/netip"

// flowsToForTest returns every recorded flow to dst with its owner.
func (t *Tracker) flowsToForTest(dst netip.Addr) map[lineageLinFlow]Owner {
	t.mu.Lock()
	objs := t.objs
	t.mu.Unlock()
	out := map[lineageLinFlow]Owner{}
	if objs == nil {
		return out
	}
	var k lineageLinFlow
	var v lineageLinOwner
	it := objs.Flows.Iterate()
	for it.Next(&k, &v) {
		if netip.AddrFrom16(k.Daddr).Unmap() == dst.Unmap() {
			out[k] = owner(v)
		}
	}
	return out
}
