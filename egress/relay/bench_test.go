package relay

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/egress/policy"
)

// Direct against through the relay, side by side in one run, on loopback:
// the relay's decision path is the real one (an HTTP request head with a
// Host, checked against the policy and the resolver's answers); only the
// original destination comes from the test instead of conntrack, so the
// nftables redirect (one NAT lookup per packet, paid by both sides in
// production) is not in these figures. bench/relay.sh runs them.

const benchReq = "GET /bytes HTTP/1.1\r\nHost: allowed.test\r\n\r\n"

// benchServer answers each request head with size bytes, or with one byte
// if size is 0, then closes.
func benchServer(b *testing.B, size int) netip.AddrPort {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	block := make([]byte, 1<<20)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				if size == 0 {
					_, _ = c.Write([]byte{'x'})
					_, _ = io.Copy(io.Discard, c) // idle until the client goes
					return
				}
				for left := size; left > 0; left -= len(block) {
					if _, err := c.Write(block[:min(left, len(block))]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// benchTargets returns where a client dials for each way: the server
// itself, and a relay in front of it.
func benchTargets(b *testing.B, srv netip.AddrPort) map[string]string {
	l := newLoop(b, policy.Block, "allowed.test:"+itoa(srv.Port()),
		map[string]netip.Addr{"allowed.test": srv.Addr()}, 5*time.Second)
	l.setTarget(srv)
	return map[string]string{"direct": srv.String(), "relay": l.addr}
}

// BenchmarkBulk: one 256 MiB download per op.
func BenchmarkBulk(b *testing.B) {
	const size = 256 << 20
	targets := benchTargets(b, benchServer(b, size))
	buf := make([]byte, 1<<20)
	for _, way := range []string{"direct", "relay"} {
		b.Run(way, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				c, err := net.Dial("tcp", targets[way])
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.WriteString(c, benchReq)
				n, _ := io.CopyBuffer(io.Discard, c, buf)
				c.Close()
				if n != size {
					b.Fatalf("%s: got %d bytes", way, n)
				}
			}
		})
	}
}

// BenchmarkFirstByte: connect, send the request head, read the first byte
// of the answer; p50 and p99 of that, and connections/s one at a time.
func BenchmarkFirstByte(b *testing.B) {
	targets := benchTargets(b, benchServer(b, 1))
	for _, way := range []string{"direct", "relay"} {
		b.Run(way, func(b *testing.B) {
			var lat []time.Duration
			one := make([]byte, 1)
			for b.Loop() {
				start := time.Now()
				c, err := net.Dial("tcp", targets[way])
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.WriteString(c, benchReq)
				if _, err := io.ReadFull(c, one); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				c.Close()
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkConnRate: connections/s with 8 clients at once, each a full
// connect, request, first byte, close.
func BenchmarkConnRate(b *testing.B) {
	targets := benchTargets(b, benchServer(b, 1))
	for _, way := range []string{"direct", "relay"} {
		b.Run(way, func(b *testing.B) {
			b.SetParallelism(4) // × GOMAXPROCS clients
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				one := make([]byte, 1)
				for pb.Next() {
					c, err := net.Dial("tcp", targets[way])
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.WriteString(c, benchReq)
					_, _ = io.ReadFull(c, one)
					c.Close()
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "conns/s")
		})
	}
}

// BenchmarkIdleMemory reports bytes of Go memory (heap in use + stacks)
// per idle connection, direct and through the relay.
func BenchmarkIdleMemory(b *testing.B) {
	const n = 2000
	targets := benchTargets(b, benchServer(b, 0))
	measure := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	for _, way := range []string{"direct", "relay"} {
		b.Run(way, func(b *testing.B) {
			for b.Loop() {
				before := measure()
				conns := make([]net.Conn, 0, n)
				one := make([]byte, 1)
				for range n {
					c, err := net.Dial("tcp", targets[way])
					if err != nil {
						b.Fatal(err)
					}
					_, _ = io.WriteString(c, benchReq)
					if _, err := io.ReadFull(c, one); err != nil {
						b.Fatal(err)
					}
					conns = append(conns, c)
				}
				after := measure()
				b.ReportMetric(float64(after-before)/n, "B/conn")
				for _, c := range conns {
					c.Close()
				}
			}
		})
	}
}
