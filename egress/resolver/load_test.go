package resolver

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/testnet"
)

// records collects what a resolver emits.
type records struct {
	mu    sync.Mutex
	dns   int // queries recorded (a folded record counts Count times)
	stats []event.Stats
	notes []string
}

func (rc *records) emit(r event.Record) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	switch {
	case r.DNS != nil:
		rc.dns += max(r.DNS.Count, 1)
	case r.Stats != nil:
		rc.stats = append(rc.stats, *r.Stats)
	case r.Note != nil:
		rc.notes = append(rc.notes, r.Note.Message)
	}
}

// startIn starts a resolver on 127.0.0.1, forwarding to a
// fake upstream there; owner, if not nil, is its Owner func.
func startIn(t *testing.T, owner func(string, netip.AddrPort, netip.AddrPort) event.Process, rc *records) (*Resolver, string) {
	t.Helper()
	up := startUpstream(t, 0)
	r, err := New(Config{
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Upstreams: []netip.AddrPort{up.addr},
		Policy:    policy.New(policy.Audit, nil, false),
		Timeout:   500 * time.Millisecond,
		Owner:     owner,
		Emit:      rc.emit,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	var addr string
	for _, a := range r.Addrs() {
		if _, ok := a.(*net.TCPAddr); ok {
			addr = a.String()
		}
	}
	return r, addr
}

// dialIn opens n TCP connections to addr.
func dialIn(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			// Reset, so no client port lingers in TIME_WAIT: the next
			// test's resolver binds port 0 for UDP and then the same
			// port for TCP.
			_ = c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	})
	for range n {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	return conns
}

func sendQuery(c net.Conn, i int) error {
	m := new(dns.Msg)
	m.SetQuestion(fmt.Sprintf("q%d.flood.test.", i), dns.TypeA)
	dc := &dns.Conn{Conn: c}
	return dc.WriteMsg(m)
}

// TestCloseWithTCPQueriesInFlight is the shutdown hang: thousands of TCP
// queries in flight while their owner lookups are slow (a socket dump per
// query under load). Close must return within its deadline, and whatever
// had not finished is counted as lost in the resolver's stats, never
// silently zero: recorded + lost covers every query sent.
func TestCloseWithTCPQueriesInFlight(t *testing.T) {
	testnet.Current(t) // in a namespace of its own (TestMain), or skipped
	var ownerMu sync.Mutex
	var owned atomic.Int64
	slowOwner := func(string, netip.AddrPort, netip.AddrPort) event.Process {
		ownerMu.Lock() // one dump at a time, as the kernel serializes them
		defer ownerMu.Unlock()
		owned.Add(1)
		time.Sleep(20 * time.Millisecond)
		return event.Process{}
	}
	rc := &records{}
	r, addr := startIn(t, slowOwner, rc)
	const n = 600
	conns := dialIn(t, addr, n)
	for i, c := range conns {
		if err := sendQuery(c, i); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until handlers are running (their owner lookups have started).
	for deadline := time.Now().Add(10 * time.Second); owned.Load() < 5; {
		if time.Now().After(deadline) {
			t.Fatal("no query reached the handler")
		}
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- r.Close() }()
	select {
	case err := <-done:
		took := time.Since(start)
		if err != nil {
			t.Errorf("Close: %v", err)
		}
		if took > DefaultShutdown+time.Second {
			t.Errorf("Close took %v, want at most %v", took, DefaultShutdown+time.Second)
		}
		t.Logf("Close returned after %v", took)
	case <-time.After(DefaultShutdown + 10*time.Second):
		t.Fatalf("Close did not return within %v", DefaultShutdown+10*time.Second)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var lost uint64
	for _, s := range rc.stats {
		if s.Component == "resolver" {
			lost = s.Lost
		}
	}
	t.Logf("%d queries sent, %d recorded, %d counted lost; notes %q", n, rc.dns, lost, rc.notes)
	if lost == 0 {
		t.Error("queries were in flight at shutdown but none counted as lost")
	}
	if uint64(rc.dns)+lost < n {
		t.Errorf("recorded %d + lost %d < %d sent: queries vanished silently", rc.dns, lost, n)
	}
}

// TestTCPConnectionFlood: 5,000 TCP connections at once hold at most
// MaxTCPConns of ours; UDP is still answered during the flood, and the
// resolver still shuts down within its deadline.
func TestTCPConnectionFlood(t *testing.T) {
	testnet.Current(t) // in a namespace of its own (TestMain), or skipped
	rc := &records{}
	r, addr := startIn(t, nil, rc)
	conns := dialIn(t, addr, 5000)
	for i, c := range conns {
		if i%2 == 0 { // half of them query, half sit idle
			_ = sendQuery(c, i)
		}
	}
	// Give the accept loop time to take what it may: wait until it holds
	// the bound (or everything if there is none), then a little more.
	deadline := time.Now().Add(5 * time.Second)
	for r.tcpOpen.Load() < MaxTCPConns && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	udp := r.Addrs()[0].String()
	m := new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeA)
	// Every UDP query gets an answer during the flood. On a loaded machine
	// the upstream (in this process, busy with the flood's queries) can
	// miss the 500 ms attempt deadline, and that answer is SERVFAIL (not
	// cached), or the answer is late: a later try must then succeed.
	var resp *dns.Msg
	var err error
	for try := 0; try < 5; try++ {
		resp, _, err = (&dns.Client{Net: "udp", Timeout: 2 * time.Second}).Exchange(m, udp)
		if err == nil && resp.Rcode == dns.RcodeSuccess {
			break
		}
		t.Logf("UDP during the TCP flood, try %d: %v %v", try, resp, err)
	}
	if err != nil || resp.Rcode != dns.RcodeSuccess {
		t.Errorf("UDP during the TCP flood: no success in 5 tries: %v %v", resp, err)
	}
	if hw := r.tcpHigh.Load(); hw > MaxTCPConns {
		t.Errorf("held %d TCP connections at once, bound is %d", hw, MaxTCPConns)
	}
	t.Logf("TCP connections held at most: %d (bound %d)", r.tcpHigh.Load(), MaxTCPConns)
	start := time.Now()
	if err := r.Close(); err != nil {
		t.Error(err)
	}
	if took := time.Since(start); took > DefaultShutdown+time.Second {
		t.Errorf("Close took %v", took)
	}
}
