package flowlog

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/florianl/go-nflog/v2"
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
	tcp := ip4ForTest(protoTCP, "198.18.0.1", "198.18.0.2", 0, 0, l4ForTest(40000, 443, 20))
	udp6 := ip6ForTest("2001:db8::1", "2001:db8::2", nil, protoUDP, l4ForTest(50000, 53, 8))
	icmp := ip4ForTest(protoICMP, "198.18.0.1", "198.18.0.2", 0, 0, []byte{8, 0, 0, 0})

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
	r.hook(attrForTest("hr:fb", tcp, -1))
	r.hook(attrForTest("hr:u", icmp, 1001))
	// Lookups: the first one blocks the only worker, the second waits in
	// the queue, the third finds the queue full.
	r.hook(attrForTest("hr:a", tcp, 0))
	if c := <-calls; c.proto != "tcp" || c.local != netip.MustParseAddrPort("198.18.0.1:40000") || c.remote != netip.MustParseAddrPort("198.18.0.2:443") {
		t.Errorf("Owner called with %+v", c)
	}
	r.hook(attrForTest("hr:a", udp6, 1001))
	r.hook(attrForTest("hr:b", tcp, 1001))
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
			got = append(got, "note "+rec.Note.Level)
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
		`stats {Component:flowlog Events:5 Lost:2 Unattributed:4}`, // unparsable + one unmeasured overflow
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
