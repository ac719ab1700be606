package lineage

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxFlows bounds the flow table (8 MiB). The firewall's readers ask
// within milliseconds of a flow's first packet, a few thousand flows
// later at 50,000 new flows a second.
const maxFlows = 1 << 17

// flowWays is the table's associativity: a flow can sit in one of this
// many slots, and a new flow takes the slot of the oldest of them.
const flowWays = 8

// flowTable is the userspace flow table, fed from the kernel's flow ring:
// a flow's latest owner. Safe for concurrent use.
//
// It is a fixed array, set-associative by a seeded hash of the flow (the
// flow itself kept and compared). It was a Go map with a ring of the
// insertion order: its inserts, deletes and growth were the agent's
// largest single cost at tens of thousands of new flows a second
// (bench/conn.sh, perf). A flow is forgotten once flowWays newer flows
// fell into its set (it is then unknown, as if forgotten; never another
// flow's). Asked for after m newer flows it is still there unless a
// Poisson variable of mean m/16,384 reached 8: lost one time in 3·10^9
// after 4,096, in 10^5 after 16,384, in 900 after 32,768 (the map this
// replaced kept exactly the last 65,536). The last flowWays flows recorded
// are always there.
type flowTable struct {
	mu    sync.Mutex
	seed  uint64
	mask  uint64 // number of sets - 1
	ways  uint64 // slots per set: flowWays, fewer in a table smaller than that
	slots []flowEntry
	n     uint64 // flows recorded; an entry's seq is n at its recording, from 1
}

type flowEntry struct {
	flow  lineageLinFlow
	owner lineageLinOwner
	seq   uint64 // 0: empty
}

// newFlowTable returns a table of size flows (a power of two).
func newFlowTable(size int) *flowTable {
	ways := min(size, flowWays)
	sets := size / ways
	if size <= 0 || sets&(sets-1) != 0 {
		panic("lineage: flow table size not a power of two")
	}
	var s [8]byte
	seed := maphash.Bytes(maphash.MakeSeed(), s[:]) | 1
	return &flowTable{seed: seed, mask: uint64(sets - 1), ways: uint64(ways), slots: flowSlots(size)}
}

// flowSlots returns n zeroed slots outside the Go heap when it can: the
// 8 MiB of the full table in the heap raised the collector's goal by as
// much again (bench/audit.sh's peak RSS 57.1 MB, against 51.1 MB). A
// flowEntry holds no pointers, so the collector need not see it. The
// mapping lives as long as the process (one table per Tracker; pages
// never written cost nothing).
func flowSlots(n int) []flowEntry {
	size := n * int(unsafe.Sizeof(flowEntry{}))
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return make([]flowEntry, n)
	}
	return unsafe.Slice((*flowEntry)(unsafe.Pointer(&b[0])), n)
}

// set returns the slots k may sit in.
func (t *flowTable) set(k *lineageLinFlow) []flowEntry {
	b := (*[24]byte)(unsafe.Pointer(k))
	h := t.seed
	for i := 0; i < 24; i += 8 {
		hi, lo := bits.Mul64(h^binary.LittleEndian.Uint64(b[i:]), 0x9E3779B97F4A7C15)
		h = hi ^ lo
	}
	i := (h & t.mask) * t.ways
	return t.slots[i : i+t.ways : i+t.ways]
}

// put records o as k's owner, replacing an earlier one.
func (t *flowTable) put(k lineageLinFlow, o lineageLinOwner) {
	t.mu.Lock()
	t.putLocked(k, o)
	t.mu.Unlock()
}

// putLocked is put with t.mu held.
func (t *flowTable) putLocked(k lineageLinFlow, o lineageLinOwner) {
	set := t.set(&k)
	old := 0
	for i := range set {
		if set[i].seq != 0 && set[i].flow == k {
			old = i
			break
		}
		if set[i].seq < set[old].seq {
			old = i
		}
	}
	t.n++
	set[old] = flowEntry{flow: k, owner: o, seq: t.n}
}

// get returns k's latest owner.
func (t *flowTable) get(k lineageLinFlow) (lineageLinOwner, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.set(&k) {
		if e.seq != 0 && e.flow == k {
			return e.owner, true
		}
	}
	return lineageLinOwner{}, false
}

// len is the number of flows held.
func (t *flowTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for i := range t.slots {
		if t.slots[i].seq != 0 {
			n++
		}
	}
	return n
}

// each calls f for every flow held, under the table's lock.
func (t *flowTable) each(f func(lineageLinFlow, lineageLinOwner)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.slots {
		if e.seq != 0 {
			f(e.flow, e.owner)
		}
	}
}
