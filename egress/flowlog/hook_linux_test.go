package flowlog

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/florianl/go-nflog/v2"
	"github.com/harden-runner/harden-runner/egress/packet"
	"github.com/harden-runner/harden-runner/egress/packet/packettest"
	"github.com/harden-runner/harden-runner/event"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// attrForTest is what go-nflog hands the hook for one logged packet.
func attrForTest(prefix string, payload []byte, uid int) nflog.Attribute {
	a := nflog.Attribute{Payload: &payload}
	if prefix != "" {
		a.Prefix = &prefix
	}
	if uid >= 0 {
		u := uint32(uid)
		a.UID = &u
	}
	return a
}

// TestHook drives the packet handler without the kernel: which packets
// become flows, what their process says, and how the lookup queue behaves
// when the owner lookup is slow.
func TestHook(t *testing.T) {
	// Each flow its own source port: repeats of a first packet are dropped.
	port := uint16(40000)
	tcpFrom := func() []byte {
		port++
		return packettest.IPv4(packet.TCP, "198.18.0.1", "198.18.0.2", 0, 0, packettest.L4(port, 443, 20))
	}
	tcp := tcpFrom()
	udp6 := packettest.IPv6("2001:db8::1", "2001:db8::2", nil, packet.UDP, packettest.L4(50000, 53, 8))
	icmp := packettest.IPv4(packet.ICMP, "198.18.0.1", "198.18.0.2", 0, 0, []byte{8, 0, 0, 0})

	rec := newRecorder()
	release := make(chan struct{})
	type call struct {
		proto         string
		local, remote netip.AddrPort
	}
	calls := make(chan call, 10)
	r, err := New(Config{Emit: rec.emit, Workers: 1, Queue: 1,
		Owner: func(proto string, local, remote netip.AddrPort) event.Process {
			calls <- call{proto, local, remote}
			<-release
			if proto == "udp" {
				return event.Process{Unknown: "no socket", UID: 7}
			}
			return event.Process{PID: 42, Exe: "/usr/bin/curl"}
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.startWorkers()

	// Ignored: no prefix, someone else's prefix. Lost: unparsable.
	r.hook(attrForTest("", tcp, 0))
	r.hook(attrForTest("other", tcp, 0))
	r.hook(attrForTest("hr:a", []byte{0x45, 1, 2}, 0))
	// Straight out, without lookup: forwarded, ICMP.
	r.hook(attrForTest("hr:fb", tcpFrom(), -1))
	r.hook(attrForTest("hr:u", icmp, 1001))
	// Lookups: the first one blocks the only worker, the second waits in
	// the queue, the third finds the queue full.
	r.hook(attrForTest("hr:a", tcp, 0))
	if c := <-calls; c.proto != "tcp" || c.local != netip.MustParseAddrPort("198.18.0.1:40001") || c.remote != netip.MustParseAddrPort("198.18.0.2:443") {
		t.Errorf("Owner called with %+v", c)
	}
	r.hook(attrForTest("hr:a", udp6, 1001))
	r.hook(attrForTest("hr:b", tcpFrom(), 1001))
	r.hook(attrForTest("hr:b", tcp, 1001)) // a retransmission of the first: dropped
	close(release)
	r.onError(&netlink.OpError{Op: "receive", Err: unix.ENOBUFS})
	r.Close()

	var got []string
	for _, rec := range rec.records() {
		switch {
		case rec.Flow != nil:
			f := rec.Flow
			got = append(got, fmt.Sprintf("%s %s:%d %s fwd=%v pid=%d uid=%d %q", f.Protocol, f.IP, f.Port, f.Verdict, f.Forward, f.Process.PID, f.Process.UID, f.Process.Unknown))
		case rec.Note != nil:
			got = append(got, "note "+string(rec.Note.Level))
		case rec.Stats != nil:
			got = append(got, fmt.Sprintf("stats %+v", *rec.Stats))
		}
	}
	want := []string{
		`tcp 198.18.0.2:443 blocked fwd=true pid=0 uid=0 "forwarded (container)"`,
		`icmp 198.18.0.2:0 audit fwd=false pid=0 uid=1001 "no lookup for this protocol"`,
		`tcp 198.18.0.2:443 blocked fwd=false pid=0 uid=1001 "lookup queue full"`,
		`tcp 198.18.0.2:443 allowed fwd=false pid=42 uid=0 ""`,
		`udp 2001:db8::2:53 allowed fwd=false pid=0 uid=1001 "no socket"`, // the kernel's uid wins
		`note warning`,
		`stats {Component:flowlog Events:5 Lost:2 Unattributed:4 Live:false}`, // unparsable + one unmeasured overflow
	}
	if len(got) != len(want) {
		t.Fatalf("got\n%s\nwant\n%s", fmt.Sprint(got), fmt.Sprint(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d = %s\n           want %s", i, got[i], want[i])
		}
	}
	// After Close, packets are counted as lost, not emitted.
	n := len(rec.records())
	r.hook(attrForTest("hr:a", tcp, 0))
	if len(rec.records()) != n {
		t.Error("a flow was emitted after Close")
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without Emit succeeded")
	}
	if _, err := New(Config{Emit: func(event.Record) {}, Workers: -1}); err == nil {
		t.Error("New with negative Workers succeeded")
	}
	r, err := New(Config{Emit: func(event.Record) {}})
	if err != nil || r.cfg.Workers != 2 || r.cfg.Queue != 4096 || r.cfg.Log == nil {
		t.Errorf("New defaults: %+v, %v", r.cfg, err)
	}
}

func TestDedup(t *testing.T) {
	var d dedup
	t0 := time.Now()
	syn := func(sport uint16, isn uint32) flowKey {
		l4 := packettest.L4(sport, 443, 20)
		binary.BigEndian.PutUint32(l4[4:], isn)
		p, l4, err := packet.ParseL4(packettest.IPv4(packet.TCP, "198.18.0.1", "198.18.0.2", 0, 0, l4))
		if err != nil {
			t.Fatal(err)
		}
		return key(p, l4, false)
	}
	udp := key(packet.Packet{Src: netip.MustParseAddrPort("198.18.0.1:5000"), Dst: netip.MustParseAddrPort("198.18.0.2:53"), Proto: packet.UDP}, nil, false)
	fwd := syn(40000, 1)
	fwd.forward = true
	steps := []struct {
		name string
		k    flowKey
		at   time.Duration
		want bool
	}{
		{"first SYN", syn(40000, 1), 0, false},
		{"SYN retransmitted", syn(40000, 1), time.Second, true},
		{"the same ports, a new connection", syn(40000, 2), time.Second, false},
		{"the same packet forwarded", fwd, time.Second, false},
		{"retransmitted late", syn(40000, 1), 90 * time.Second, true},
		{"after TCP gave up", syn(40000, 1), 3 * time.Minute, false},
		{"udp", udp, 0, false},
		{"udp resent", udp, 10 * time.Second, true},
		{"udp after conntrack's timeout", udp, 31 * time.Second, false},
	}
	for _, s := range steps {
		if got := d.seen(s.k, t0.Add(s.at)); got != s.want {
			t.Errorf("%s: seen = %v, want %v", s.name, got, s.want)
		}
	}
	// A flood of distinct flows: each repeat of the last dedupWays flows is
	// still recognised at every step (the old map was cleared whole when
	// it filled), and the table does not grow.
	for i := range 200000 {
		now := t0.Add(time.Hour + time.Duration(i)*time.Microsecond)
		if d.seen(syn(uint16(i), uint32(i>>16)), now) {
			t.Fatalf("flood flow %d taken for a repeat", i)
		}
		for j := max(0, i-dedupWays+1); j <= i; j++ {
			if !d.seen(syn(uint16(j), uint32(j>>16)), now) {
				t.Fatalf("after %d flows: the repeat of flow %d not recognised", i+1, j)
			}
		}
	}
	if len(d.slots) != dedupSets*dedupWays {
		t.Errorf("table of %d slots, want %d", len(d.slots), dedupSets*dedupWays)
	}
}
