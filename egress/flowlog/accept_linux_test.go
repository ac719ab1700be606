package flowlog

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/egress/packet"
	"github.com/harden-runner/harden-runner/event"
	"golang.org/x/sys/unix"
)

// sourceForTest is an AcceptSource: push hands records over as a drain
// would; Drain hands over late (what the kernel still held at Close).
type sourceForTest struct {
	mu     sync.Mutex
	fn     func([]packet.Accept)
	late   []packet.Accept
	drains int
}

func (s *sourceForTest) OnAccept(f func([]packet.Accept)) { s.mu.Lock(); s.fn = f; s.mu.Unlock() }

func (s *sourceForTest) Drain() {
	s.mu.Lock()
	fn, late := s.fn, s.late
	s.late = nil
	s.drains++
	s.mu.Unlock()
	if len(late) > 0 {
		fn(late)
	}
}

func (s *sourceForTest) push(b ...packet.Accept) {
	s.mu.Lock()
	fn := s.fn
	s.mu.Unlock()
	fn(b)
}

func monoNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// TestAccepts drives the kernel-record path of allowed flows without the
// kernel: each record is an allowed flow with the process Owner names
// for its addresses and the time it left; a retransmitted SYN (same
// addresses and ISN) is one flow, a new connection on the same ports
// (another ISN) another; what the kernel still holds at Close is
// reported before the Stats, and a record after Close is counted lost.
func TestAccepts(t *testing.T) {
	rec := newRecorder()
	src := &sourceForTest{}
	type call struct {
		proto         string
		local, remote netip.AddrPort
	}
	var mu sync.Mutex
	var calls []call
	r, err := New(Config{Emit: rec.emit, Accepts: src, Batch: 10 * time.Millisecond,
		Owner: func(proto string, local, remote netip.AddrPort) event.Process {
			mu.Lock()
			calls = append(calls, call{proto, local, remote})
			mu.Unlock()
			return event.Process{PID: 42, Exe: "/usr/bin/curl"}
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.startWorkers()
	r.startAccepts()

	tcpSrc, tcpDst := netip.MustParseAddrPort("198.18.0.1:40001"), netip.MustParseAddrPort("198.18.1.5:443")
	udpSrc, udpDst := netip.MustParseAddrPort("[2001:db8::1]:50000"), netip.MustParseAddrPort("[2001:db8:1::5]:8443")
	lateDst := netip.MustParseAddrPort("198.18.1.6:443")
	sent := monoNow() - uint64(2*time.Second) // left two seconds ago
	src.push(
		packet.Accept{Proto: unix.IPPROTO_TCP, Src: tcpSrc, Dst: tcpDst, ISN: 7, At: sent},
		packet.Accept{Proto: unix.IPPROTO_TCP, Src: tcpSrc, Dst: tcpDst, ISN: 7, At: sent + uint64(time.Second)},
	)
	src.push(
		packet.Accept{Proto: unix.IPPROTO_TCP, Src: tcpSrc, Dst: tcpDst, ISN: 8, At: sent},
		packet.Accept{Proto: unix.IPPROTO_UDP, Src: udpSrc, Dst: udpDst, At: sent},
	)
	src.late = []packet.Accept{{Proto: unix.IPPROTO_TCP, Src: tcpSrc, Dst: lateDst, ISN: 9, At: monoNow()}}

	f := rec.waitFlow(t, func(f event.Flow) bool { return f.Protocol == "udp" })
	if f.IP != "2001:db8:1::5" || f.Port != 8443 || f.Verdict != event.Allowed || f.Process.PID != 42 || f.Forward {
		t.Errorf("UDP flow: %+v", f)
	}
	if d := time.Since(f.Time); d < 1900*time.Millisecond || d > 3*time.Second {
		t.Errorf("UDP flow's time is %v ago, want the 2 s since it left", d)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if src.drains != 1 {
		t.Errorf("Close drained the source %d times, want 1", src.drains)
	}
	src.push(packet.Accept{Proto: unix.IPPROTO_TCP, Src: tcpSrc, Dst: lateDst, ISN: 10, At: monoNow()})

	n := map[netip.AddrPort]int{}
	for _, rc := range rec.records() {
		if rc.Flow != nil {
			n[netip.AddrPortFrom(netip.MustParseAddr(rc.Flow.IP), rc.Flow.Port)] += flowCount(rc.Flow)
		}
	}
	if n[tcpDst] != 2 || n[udpDst] != 1 || n[lateDst] != 1 {
		t.Errorf("flows per destination %v; want %v: 2 (a SYN sent twice is one), %v: 1, %v: 1 (drained at Close)", n, tcpDst, udpDst, lateDst)
	}
	if st := rec.stats(t); st.Events != 4 || st.Lost != 0 || st.Unattributed != 0 {
		t.Errorf("stats at Close %+v; want 4 events, 0 lost, 0 unattributed", st)
	}
	if st := r.Stats(); st.Lost != 1 {
		t.Errorf("after a record that came after Close: %d lost, want 1", st.Lost)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range calls {
		if (c.proto != "tcp" || c.local != tcpSrc) && (c.proto != "udp" || c.local != udpSrc) {
			t.Errorf("Owner asked for %+v", c)
		}
	}
}

// TestFlushTakesAcceptsInFlight: Flush (a snapshot) returns only once the
// flows the kernel recorded before it are in the journal: the records the
// source still holds (a drain) and the lookups behind a slow Owner. With
// the wait removed from Flush, the flow is not there when it returns.
func TestFlushTakesAcceptsInFlight(t *testing.T) {
	rec := newRecorder()
	src := &sourceForTest{}
	r, err := New(Config{Emit: rec.emit, Accepts: src, Batch: 10 * time.Millisecond,
		Owner: func(proto string, local, remote netip.AddrPort) event.Process {
			time.Sleep(50 * time.Millisecond)
			return event.Process{PID: 42, Exe: "/usr/bin/curl"}
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.startWorkers()
	r.startAccepts()
	defer r.Close()
	src.mu.Lock()
	src.late = []packet.Accept{
		{Proto: unix.IPPROTO_TCP, Src: netip.MustParseAddrPort("198.18.0.1:40001"), Dst: netip.MustParseAddrPort("198.18.1.7:443"), ISN: 1, At: monoNow()},
		{Proto: unix.IPPROTO_UDP, Src: netip.MustParseAddrPort("198.18.0.1:40002"), Dst: netip.MustParseAddrPort("198.18.1.8:53"), At: monoNow()},
	}
	src.mu.Unlock()
	r.Flush()
	got := map[string]int{}
	for _, rc := range rec.records() {
		if rc.Flow != nil && rc.Flow.Process.PID == 42 {
			got[rc.Flow.IP] += flowCount(rc.Flow)
		}
	}
	if got["198.18.1.7"] != 1 || got["198.18.1.8"] != 1 {
		t.Errorf("flows in the journal when Flush returned: %v; want 198.18.1.7 and 198.18.1.8 once each, with their process", got)
	}
}
