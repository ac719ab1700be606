package lineage

import (
	"fmt"
	"testing"
)

func TestFlowTable(t *testing.T) {
	key := func(port uint16) lineageLinFlow { return lineageLinFlow{Proto: 6, Sport: port, Dport: 443} }
	own := func(pid uint32) lineageLinOwner { return lineageLinOwner{Tgid: pid, Pid: pid} }
	tests := []struct {
		name string
		puts []uint16 // keys by port, owner pid = index+1
		want map[uint16]uint32
		gone []uint16
	}{
		{name: "empty", want: map[uint16]uint32{}, gone: []uint16{1}},
		{name: "latest owner wins", puts: []uint16{1, 2, 1}, want: map[uint16]uint32{1: 3, 2: 2}},
		{name: "oldest forgotten when full", puts: []uint16{1, 2, 3, 4, 5}, want: map[uint16]uint32{2: 2, 3: 3, 4: 4, 5: 5}, gone: []uint16{1}},
		{name: "recorded again is not forgotten", puts: []uint16{1, 2, 3, 1, 4, 5}, want: map[uint16]uint32{1: 4, 3: 3, 4: 5, 5: 6}, gone: []uint16{2}},
		{name: "one key over and over", puts: []uint16{7, 7, 7, 7, 7, 7, 7, 7, 7}, want: map[uint16]uint32{7: 9}},
		{name: "wraps twice", puts: []uint16{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, want: map[uint16]uint32{7: 7, 8: 8, 9: 9, 10: 10}, gone: []uint16{1, 2, 3, 4, 5, 6}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ft := newFlowTable(4)
			for i, p := range tc.puts {
				ft.put(key(p), own(uint32(i+1)))
			}
			for p, pid := range tc.want {
				if o, ok := ft.get(key(p)); !ok || o.Tgid != pid {
					t.Errorf("get(%d) = %+v, %v; want pid %d", p, o, ok, pid)
				}
			}
			for _, p := range tc.gone {
				if o, ok := ft.get(key(p)); ok {
					t.Errorf("get(%d) = %+v; want forgotten", p, o)
				}
			}
			if got := ft.len(); got != len(tc.want) {
				t.Errorf("len = %d; want %d", got, len(tc.want))
			}
		})
	}
}

// TestFlowTableSets: with many sets, the table never holds more than its
// size, and the last flowWays flows recorded are always found, whatever
// fell into their sets before.
func TestFlowTableSets(t *testing.T) {
	const size = 64
	ft := newFlowTable(size)
	for i := range 10000 {
		k := lineageLinFlow{Proto: 17, Sport: uint16(i), Dport: uint16(i >> 16)}
		ft.put(k, lineageLinOwner{Tgid: uint32(i + 1)})
		for j := max(0, i-flowWays+1); j <= i; j++ {
			k := lineageLinFlow{Proto: 17, Sport: uint16(j), Dport: uint16(j >> 16)}
			if o, ok := ft.get(k); !ok || o.Tgid != uint32(j+1) {
				t.Fatalf("after %d puts: get(%d) = %+v, %v; want pid %d", i+1, j, o, ok, j+1)
			}
		}
	}
	if n := ft.len(); n > size || n < size/2 {
		t.Errorf("len = %d after 10,000 flows; want at most %d and most of it used", n, size)
	}
}

func BenchmarkFlowTablePut(b *testing.B) {
	ft := newFlowTable(maxFlows)
	keys := make([]lineageLinFlow, 4*maxFlows)
	for i := range keys {
		keys[i] = lineageLinFlow{Proto: 6, Sport: uint16(i), Dport: uint16(i >> 16)}
	}
	b.ResetTimer()
	for i := range b.N {
		ft.put(keys[i%len(keys)], lineageLinOwner{Tgid: uint32(i)})
	}
	_ = fmt.Sprint(ft.len())
}
