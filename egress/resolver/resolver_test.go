package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/event"
)

// upstream is a fake upstream DNS server on loopback that counts questions.
type upstream struct {
	addr  netip.AddrPort
	delay time.Duration
	mu    sync.Mutex
	asked map[string]int
	srvs  []*dns.Server
}

func startUpstream(t *testing.T, delay time.Duration) *upstream {
	t.Helper()
	u := &upstream{asked: map[string]int{}, delay: delay}
	pc, l := listenPair(t)
	u.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	var wg sync.WaitGroup
	wg.Add(2)
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: u, NotifyStartedFunc: wg.Done}, {Listener: l, Handler: u, NotifyStartedFunc: wg.Done}} {
		u.srvs = append(u.srvs, s)
		go func() { _ = s.ActivateAndServe() }()
	}
	wg.Wait()
	t.Cleanup(u.stop)
	return u
}

// listenPair listens on one loopback port for UDP and TCP: a free UDP port
// may be in use for TCP, so it picks again until both are free.
func listenPair(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l
		}
		pc.Close()
		if try == 20 {
			t.Fatal(err)
		}
	}
}

func (u *upstream) stop() {
	for _, s := range u.srvs {
		_ = s.Shutdown()
	}
}

func (u *upstream) count(name string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.asked[name]
}

func (u *upstream) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	u.mu.Lock()
	u.asked[strings.ToLower(q.Name)]++
	u.mu.Unlock()
	time.Sleep(u.delay)
	m := new(dns.Msg)
	m.SetReply(req)
	rr := func(s string) dns.RR { r, _ := dns.NewRR(s); return r }
	switch strings.ToLower(q.Name) {
	case "allowed.test.":
		if q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, rr("allowed.test. 30 IN A 198.18.1.10"))
		}
		if q.Qtype == dns.TypeAAAA {
			m.Answer = append(m.Answer, rr("allowed.test. 30 IN AAAA 2001:db8:1::a"))
		}
	case "cname.test.":
		m.Answer = append(m.Answer, rr("cname.test. 300 IN CNAME edge.cdn.test."), rr("edge.cdn.test. 20 IN A 198.18.1.20"))
	case "big.test.":
		for i := range 40 {
			m.Answer = append(m.Answer, rr("big.test. 60 IN TXT \""+strings.Repeat("x", 60)+string(rune('a'+i%26))+"\""))
		}
	default:
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, rr("test. 60 IN SOA ns.test. admin.test. 1 60 60 60 30"))
	}
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), o.Do())
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

type allowCall struct {
	addrs []netip.Addr
	ports []uint16
	ttl   time.Duration
}

type harness struct {
	r      *Resolver
	addr   string
	mu     sync.Mutex
	allows []allowCall
	events []event.DNS
	fail   atomic.Bool
}

func (h *harness) allowed() []allowCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]allowCall(nil), h.allows...)
}

// waitEvents returns the DNS events once there are at least n (they are
// recorded just after the reply is written), or what there is after 5 s.
func (h *harness) waitEvents(n int) []event.DNS {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ev := h.dnsEvents()
		if len(ev) >= n || time.Now().After(deadline) {
			return ev
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (h *harness) dnsEvents() []event.DNS {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]event.DNS(nil), h.events...)
}

func newHarness(t *testing.T, mode policy.Mode, allow string, ups ...netip.AddrPort) *harness {
	t.Helper()
	eps, err := policy.ParseEndpoints(allow)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{}
	r, err := New(Config{
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Upstreams: ups,
		Policy:    policy.New(mode, eps, false),
		Timeout:   2 * time.Second, // a loaded machine delays the 150 ms upstream well past 500 ms
		Allow: func(a []netip.Addr, p []uint16, ttl time.Duration) error {
			time.Sleep(20 * time.Millisecond) // a reply sent before this returns would be caught
			if h.fail.Load() {
				return errors.New("nft says no")
			}
			h.mu.Lock()
			h.allows = append(h.allows, allowCall{a, p, ttl})
			h.mu.Unlock()
			return nil
		},
		Emit: func(rec event.Record) {
			if rec.DNS != nil {
				h.mu.Lock()
				h.events = append(h.events, *rec.DNS)
				h.mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	h.r = r
	h.addr = r.Addrs()[0].String()
	return h
}

func query(t *testing.T, net, addr, name string, qtype uint16, edns uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: net, Timeout: 3 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s: %v", net, name, err)
	}
	return resp
}

func TestAllowedNameIsForwardedAndAllowedBeforeReply(t *testing.T) {
	up := startUpstream(t, 0)
	h := newHarness(t, policy.Block, "allowed.test:443 allowed.test:8443 *.cname.test:22 cname.test:80", up.addr)
	for _, c := range []struct {
		name  string
		qtype uint16
		addr  string
		ports []uint16
	}{
		{"allowed.test.", dns.TypeA, "198.18.1.10", []uint16{443, 8443}},
		{"ALLOWED.Test.", dns.TypeAAAA, "2001:db8:1::a", []uint16{443, 8443}},
		{"cname.test.", dns.TypeA, "198.18.1.20", []uint16{80}}, // end of the CNAME chain, the queried name's ports
	} {
		before := len(h.allowed())
		resp := query(t, "udp", h.addr, c.name, c.qtype, 0)
		if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
			t.Fatalf("%s: %v", c.name, resp)
		}
		// The reply is only written after Allow returned.
		calls := h.allowed()
		if len(calls) != before+1 {
			t.Fatalf("%s: reply arrived before the firewall was told (%d calls)", c.name, len(calls)-before)
		}
		got := calls[len(calls)-1]
		if len(got.addrs) != 1 || got.addrs[0].String() != c.addr || !equalPorts(got.ports, c.ports) {
			t.Errorf("%s: Allow(%v, %v), want (%s, %v)", c.name, got.addrs, got.ports, c.addr, c.ports)
		}
		if got.ttl < minAllowTTL+DefaultGrace {
			t.Errorf("%s: allowed for %v, want at least TTL floor + grace", c.name, got.ttl)
		}
	}
}

func equalPorts(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBlockedNameNeverLeaves(t *testing.T) {
	up := startUpstream(t, 0)
	h := newHarness(t, policy.Block, "allowed.test:443", up.addr)
	for _, name := range []string{"secret.exfil.test.", "allowed.test.evil.test.", "evilallowed.test.", "test."} {
		for _, qt := range []uint16{dns.TypeA, dns.TypeTXT, dns.TypeAAAA} {
			resp := query(t, "udp", h.addr, name, qt, 0)
			if resp.Rcode != dns.RcodeNameError {
				t.Errorf("%s: rcode %s, want NXDOMAIN", name, dns.RcodeToString[resp.Rcode])
			}
		}
		if n := up.count(name); n != 0 {
			t.Errorf("%s reached the upstream %d times", name, n)
		}
	}
	if len(h.allowed()) != 0 {
		t.Errorf("blocked names opened the firewall: %v", h.allowed())
	}
	ev := h.waitEvents(12)
	if len(ev) != 12 || ev[0].Verdict != event.Blocked || ev[0].Name != "secret.exfil.test" {
		t.Errorf("events: %+v", ev)
	}
}

func TestAuditModeForwardsEverything(t *testing.T) {
	up := startUpstream(t, 0)
	h := newHarness(t, policy.Audit, "allowed.test:443", up.addr)
	resp := query(t, "udp", h.addr, "cname.test.", dns.TypeA, 0)
	if resp.Rcode != dns.RcodeSuccess || up.count("cname.test.") != 1 {
		t.Fatalf("audit mode did not forward: %v", resp)
	}
	if len(h.allowed()) != 0 {
		t.Errorf("a name not on the list was added to the allow sets in audit mode")
	}
	ev := h.waitEvents(1)
	if len(ev) != 1 || ev[0].Verdict != event.Audit || len(ev[0].Answers) != 2 {
		t.Errorf("events: %+v", ev)
	}
}

func TestCacheAndSingleflight(t *testing.T) {
	up := startUpstream(t, 150*time.Millisecond)
	h := newHarness(t, policy.Block, "allowed.test:443", up.addr)
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp := query(t, "udp", h.addr, "allowed.test.", dns.TypeA, 0); len(resp.Answer) != 1 {
				t.Errorf("answer: %v", resp)
			}
		}()
	}
	wg.Wait()
	if n := up.count("allowed.test."); n != 1 {
		t.Errorf("20 concurrent questions made %d upstream queries, want 1", n)
	}
	time.Sleep(1100 * time.Millisecond)
	resp := query(t, "udp", h.addr, "allowed.test.", dns.TypeA, 0)
	if ttl := resp.Answer[0].Header().Ttl; ttl >= 30 || ttl < 25 {
		t.Errorf("cached TTL %d, want counted down from 30", ttl)
	}
	if n := up.count("allowed.test."); n != 1 {
		t.Errorf("cached answer went upstream again (%d)", n)
	}
	// Negative answers are cached too (audit mode forwards them).
}

func TestTruncationAndTCP(t *testing.T) {
	up := startUpstream(t, 0)
	h := newHarness(t, policy.Block, "big.test:443", up.addr)
	small := query(t, "udp", h.addr, "big.test.", dns.TypeTXT, 0)
	small.Compress = true // as sent on the wire
	if !small.Truncated || small.Len() > dns.MinMsgSize {
		t.Errorf("plain UDP answer: truncated=%v len=%d, want TC within 512 bytes", small.Truncated, small.Len())
	}
	big := query(t, "udp", h.addr, "big.test.", dns.TypeTXT, 8192)
	if big.Truncated || len(big.Answer) != 40 {
		t.Errorf("EDNS0 8192 answer: truncated=%v answers=%d, want all 40", big.Truncated, len(big.Answer))
	}
	if o := big.IsEdns0(); o == nil {
		t.Error("EDNS0 query answered without OPT")
	}
	if small.IsEdns0() != nil {
		t.Error("non-EDNS query answered with OPT")
	}
	// Several queries on one TCP connection.
	conn, err := dns.DialTimeout("tcp", h.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i, name := range []string{"big.test.", "allowed.test.", "big.test."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeTXT)
		m.Id = uint16(100 + i)
		if err := conn.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		resp, err := conn.ReadMsg()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Id != m.Id {
			t.Errorf("TCP answer id %d, want %d", resp.Id, m.Id)
		}
		if name == "big.test." && (resp.Truncated || len(resp.Answer) != 40) {
			t.Errorf("TCP answer truncated=%v answers=%d", resp.Truncated, len(resp.Answer))
		}
	}
}

func TestAllowFailureIsServfail(t *testing.T) {
	up := startUpstream(t, 0)
	h := newHarness(t, policy.Block, "allowed.test:443", up.addr)
	h.fail.Store(true)
	if resp := query(t, "udp", h.addr, "allowed.test.", dns.TypeA, 0); resp.Rcode != dns.RcodeServerFailure || len(resp.Answer) != 0 {
		t.Errorf("answer despite a firewall failure: %v", resp)
	}
}

func TestUpstreamFailover(t *testing.T) {
	dead := startUpstream(t, 0)
	dead.stop()
	up := startUpstream(t, 0)
	h := newHarness(t, policy.Block, "allowed.test:443", dead.addr, up.addr)
	if resp := query(t, "udp", h.addr, "allowed.test.", dns.TypeA, 0); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("no failover to the second upstream: %v", resp)
	}
	up.stop()
	if resp := query(t, "udp", h.addr, "allowed.test.", dns.TypeAAAA, 0); resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("all upstreams down: rcode %s, want SERVFAIL", dns.RcodeToString[resp.Rcode])
	}
}

func TestCloseLeaksNoGoroutines(t *testing.T) {
	up := startUpstream(t, 0)
	base := runtime.NumGoroutine()
	h := newHarness(t, policy.Block, "allowed.test:443", up.addr)
	query(t, "tcp", h.addr, "allowed.test.", dns.TypeA, 0)
	query(t, "udp", h.addr, "allowed.test.", dns.TypeA, 0)
	for range 2 {
		if err := h.r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base+1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+1 {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

func TestResolvedRemembersAnswers(t *testing.T) {
	up := startUpstream(t, 0)
	h := newHarness(t, policy.Block, "allowed.test:443 cname.test:443", up.addr)
	a10, cdn := netip.MustParseAddr("198.18.1.10"), netip.MustParseAddr("198.18.1.20")
	if h.r.Resolved("allowed.test", a10) {
		t.Fatal("Resolved before any query")
	}
	query(t, "udp", h.addr, "allowed.test.", dns.TypeA, 0)
	query(t, "udp", h.addr, "cname.test.", dns.TypeA, 0)
	query(t, "udp", h.addr, "blocked.test.", dns.TypeA, 0)
	for _, c := range []struct {
		name string
		addr netip.Addr
		want bool
	}{
		{"allowed.test", a10, true},
		{"ALLOWED.test.", a10, true},
		{"allowed.test", cdn, false},
		{"cname.test", cdn, true}, // the name asked, not the CNAME target
		{"evil.test", a10, false},
	} {
		if got := h.r.Resolved(c.name, c.addr); got != c.want {
			t.Errorf("Resolved(%s, %s) = %v, want %v", c.name, c.addr, got, c.want)
		}
	}
	if got := h.r.NamesOf(netip.MustParseAddr("::ffff:198.18.1.10")); len(got) != 1 || got[0] != "allowed.test" {
		t.Errorf("NamesOf(198.18.1.10) = %q", got)
	}
}

func TestBookExpiresAndEvicts(t *testing.T) {
	b := newBook()
	now := time.Now()
	a := netip.MustParseAddr("198.18.1.1")
	b.add("x.test", []netip.Addr{a}, now.Add(time.Minute))
	b.add("y.test", []netip.Addr{a}, now.Add(time.Second))
	if !b.has("y.test", a, now) || b.has("y.test", a, now.Add(2*time.Second)) {
		t.Error("expiry not honoured")
	}
	b.prune(now.Add(2 * time.Second))
	if got := b.names(a, now); len(got) != 1 || got[0] != "x.test" {
		t.Errorf("after prune: %q", got)
	}
	for i := range maxBookNames + 10 {
		b.add(fmt.Sprintf("n%d.test", i), []netip.Addr{a}, now.Add(time.Hour+time.Duration(i)))
	}
	if len(b.byName) > maxBookNames {
		t.Errorf("%d names kept, limit %d", len(b.byName), maxBookNames)
	}
	if !b.has(fmt.Sprintf("n%d.test", maxBookNames+9), a, now) {
		t.Error("the newest name was evicted")
	}
}
