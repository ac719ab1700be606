package relay

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/event"
)

// loop is a relay on loopback in front of real servers, with the
// original destination given by the test instead of conntrack.
type loop struct {
	relay  *Relay
	addr   string
	mu     sync.Mutex
	flows  []event.Flow
	target netip.AddrPort
}

func (l *loop) setTarget(ap netip.AddrPort) {
	l.mu.Lock()
	l.target = ap
	l.mu.Unlock()
}

func (l *loop) waitFlows(n int) []event.Flow {
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		out := append([]event.Flow(nil), l.flows...)
		l.mu.Unlock()
		if len(out) >= n || time.Now().After(deadline) {
			return out
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newLoop starts a relay whose policy is entries; names in resolved map to
// the addresses our resolver is taken to have answered them with.
func newLoop(t testing.TB, mode policy.Mode, entries string, resolved map[string]netip.Addr, timeout time.Duration) *loop {
	t.Helper()
	eps, err := policy.ParseEndpoints(entries)
	if err != nil {
		t.Fatal(err)
	}
	l := &loop{}
	r, err := New(Config{
		Listen: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Policy: policy.New(mode, eps, false),
		Resolved: func(name string, a netip.Addr) bool {
			return resolved[strings.ToLower(strings.TrimSuffix(name, "."))] == a
		},
		NamesOf: func(a netip.Addr) []string {
			var out []string
			for n, ra := range resolved {
				if ra == a {
					out = append(out, n)
				}
			}
			return out
		},
		Emit: func(rec event.Record) {
			if rec.Flow != nil {
				l.mu.Lock()
				l.flows = append(l.flows, *rec.Flow)
				l.mu.Unlock()
			}
		},
		FirstBytesTimeout: timeout,
		OriginalDst: func(*net.TCPConn) (netip.AddrPort, error) {
			l.mu.Lock()
			defer l.mu.Unlock()
			return l.target, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	l.relay, l.addr = r, r.Addrs()[0].String()
	return l
}

// servers are an HTTPS and an HTTP server on loopback that log each Host.
type servers struct {
	tls, plain *httptest.Server
	mu         sync.Mutex
	hosts      []string
}

func newServers(t testing.TB) *servers {
	s := &servers{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hosts = append(s.hosts, r.Host)
		s.mu.Unlock()
		_, _ = io.WriteString(w, "ok "+r.Proto)
	})
	s.tls = httptest.NewUnstartedServer(h)
	s.tls.EnableHTTP2 = true
	s.tls.StartTLS()
	s.plain = httptest.NewServer(h)
	t.Cleanup(s.tls.Close)
	t.Cleanup(s.plain.Close)
	return s
}

func (s *servers) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.hosts...)
}

func addrOf(srv *httptest.Server) netip.AddrPort {
	return srv.Listener.Addr().(*net.TCPAddr).AddrPort()
}

// client makes requests to the relay as if to host.
func client(relayAddr, sni string, h2 bool) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", relayAddr)
		},
		TLSClientConfig:   &tls.Config{ServerName: sni, InsecureSkipVerify: true},
		ForceAttemptHTTP2: h2,
		DisableKeepAlives: true,
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func TestRelayChecksNames(t *testing.T) {
	s := newServers(t)
	lo := netip.MustParseAddr("127.0.0.1")
	tlsAddr, plainAddr := addrOf(s.tls), addrOf(s.plain)
	entries := "allowed.test:" + itoa(tlsAddr.Port()) + " allowed.test:" + itoa(plainAddr.Port()) + " other-port.test:1"
	l := newLoop(t, policy.Block, entries, map[string]netip.Addr{"allowed.test": lo, "evil.test": lo, "other-port.test": lo,
		"stale.test": netip.MustParseAddr("127.0.0.2")}, time.Second)
	for _, c := range []struct {
		name   string
		dst    netip.AddrPort
		url    string
		sni    string
		h2     bool
		ok     bool
		reason string
	}{
		{"allowed https", tlsAddr, "https://allowed.test/", "allowed.test", false, true, ""},
		{"allowed https h2", tlsAddr, "https://allowed.test/", "allowed.test", true, true, ""},
		{"evil sni", tlsAddr, "https://evil.test/", "evil.test", false, false, "evil.test is not allowed on port"},
		{"no sni", tlsAddr, "https://127.0.0.1/", "", false, false, "without a server name"},
		{"allowed http", plainAddr, "http://allowed.test/", "", false, true, ""},
		{"evil host", plainAddr, "http://evil.test/", "", false, false, "evil.test is not allowed"},
		{"ip host", plainAddr, "http://127.0.0.1/", "", false, false, "without a Host name"},
	} {
		before := len(s.seen())
		l.setTarget(c.dst)
		resp, err := client(l.addr, c.sni, c.h2).Get(c.url)
		got := err == nil && resp.StatusCode == 200
		if resp != nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if c.ok && c.h2 && !strings.Contains(string(body), "HTTP/2") {
				t.Errorf("%s: not HTTP/2: %s", c.name, body)
			}
			if !c.ok && resp.StatusCode != http.StatusForbidden {
				t.Errorf("%s: status %d, want 403", c.name, resp.StatusCode)
			}
		}
		if got != c.ok {
			t.Errorf("%s: ok=%v (err %v), want %v", c.name, got, err, c.ok)
		}
		// The far end decides: only allowed requests reached it.
		if reached := len(s.seen()) > before; reached != c.ok {
			t.Errorf("%s: server reached=%v, want %v", c.name, reached, c.ok)
		}
		flows := l.waitFlows(1)
		f := flows[len(flows)-1]
		l.mu.Lock()
		l.flows = nil
		l.mu.Unlock()
		if want := map[bool]event.Verdict{true: event.Allowed, false: event.Blocked}[c.ok]; f.Verdict != want || !strings.Contains(f.Reason, c.reason) || f.Port != c.dst.Port() {
			t.Errorf("%s: flow %+v, want verdict %s reason %q", c.name, f, want, c.reason)
		}
	}
}

func TestRelayAuditLetsThroughAndRecordsName(t *testing.T) {
	s := newServers(t)
	lo := netip.MustParseAddr("127.0.0.1")
	l := newLoop(t, policy.Audit, "allowed.test:1", map[string]netip.Addr{"evil.test": lo}, time.Second)
	l.setTarget(addrOf(s.tls))
	resp, err := client(l.addr, "evil.test", false).Get("https://evil.test/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	f := l.waitFlows(1)[0]
	if f.Verdict != event.Audit || f.Name != "evil.test" {
		t.Errorf("flow %+v, want audit with the name", f)
	}
}

func TestRelaySilentClientTimesOut(t *testing.T) {
	l := newLoop(t, policy.Block, "allowed.test:443", nil, 200*time.Millisecond)
	l.setTarget(netip.MustParseAddrPort("127.0.0.1:9"))
	c, err := net.Dial("tcp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil {
		t.Fatalf("read %d, %v: want the relay to close", n, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %v, want about the 200ms timeout", d)
	}
	if got := l.relay.timeouts.Load(); got != 1 {
		t.Errorf("timeouts = %d", got)
	}
}

func TestRelayOtherProtocolNeedsAnAnsweredAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	dst := ln.Addr().(*net.TCPAddr).AddrPort()
	lo := netip.MustParseAddr("127.0.0.1")
	l := newLoop(t, policy.Block, "git.test:"+itoa(dst.Port()), map[string]netip.Addr{"git.test": lo}, time.Second)
	l.setTarget(dst)
	c, err := net.Dial("tcp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("SSH-2.0-test\r\n"))
	buf := make([]byte, 14)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "SSH-2.0-test\r\n" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// TestCloseEndsEverything: Close ends relayed connections that are still
// open and leaves no goroutine behind.
func TestCloseEndsEverything(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	before := runtime.NumGoroutine()
	dst := ln.Addr().(*net.TCPAddr).AddrPort()
	l := newLoop(t, policy.Block, "git.test:"+itoa(dst.Port()), map[string]netip.Addr{"git.test": dst.Addr()}, time.Second)
	l.setTarget(dst)
	c, err := net.Dial("tcp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("hello\n"))
	if _, err := io.ReadFull(c, make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	if err := l.relay.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || os.IsTimeout(err) {
		t.Fatalf("relayed connection still open after Close: %d, %v", n, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+1 { // +1: the echo server's goroutine for the closed conn may still be ending
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
