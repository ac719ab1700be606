package lineage

import (
	"hash/maphash"
	"sync"
)

// maxFlows bounds the flow table: the oldest flow recorded is forgotten
// first. The firewall's readers ask within milliseconds of a flow's first
// packet; at 50,000 new flows a second a flow stays over a second.
const maxFlows = 1 << 16

// flowTable is the userspace flow table, fed from the kernel's flow ring:
// a flow's latest owner. Safe for concurrent use.
//
// It is keyed by a seeded hash of the flow, the flow itself kept to be
// compared: a map keyed by the 24-byte flow spent most of its time
// hashing and comparing keys. A flow whose hash collides with another's
// replaces it (that one is then unknown, as if forgotten).
type flowTable struct {
	mu     sync.Mutex
	seed   maphash.Seed
	owners map[uint64]flowEntry
	// order is a ring of the hashes as recorded; put forgets the flow at
	// order[n%size] unless it was recorded again since.
	order []uint64
	n     uint64
}

type flowEntry struct {
	flow  lineageLinFlow
	owner lineageLinOwner
	seq   uint64 // n when recorded
}

func newFlowTable(size int) *flowTable {
	return &flowTable{seed: maphash.MakeSeed(), owners: make(map[uint64]flowEntry), order: make([]uint64, size)}
}

// put records o as k's owner, replacing an earlier one.
func (t *flowTable) put(k lineageLinFlow, o lineageLinOwner) {
	h := maphash.Comparable(t.seed, k)
	t.mu.Lock()
	defer t.mu.Unlock()
	size := uint64(len(t.order))
	slot := t.n % size
	if t.n >= size {
		old := t.order[slot]
		if e, ok := t.owners[old]; ok && e.seq == t.n-size {
			delete(t.owners, old)
		}
	}
	t.order[slot] = h
	t.owners[h] = flowEntry{flow: k, owner: o, seq: t.n}
	t.n++
}

// get returns k's latest owner.
func (t *flowTable) get(k lineageLinFlow) (lineageLinOwner, bool) {
	h := maphash.Comparable(t.seed, k)
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.owners[h]
	if !ok || e.flow != k {
		return lineageLinOwner{}, false
	}
	return e.owner, true
}

// len is the number of flows held.
func (t *flowTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.owners)
}

// each calls f for every flow held, under the table's lock.
func (t *flowTable) each(f func(lineageLinFlow, lineageLinOwner)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.owners {
		f(e.flow, e.owner)
	}
}
