// Command relayload measures connections through harden-runner's agent,
// for bench/relay.sh: `relayload -serve ADDR` answers HTTP/1 request heads
// (GET /bulk/N: N bytes; anything else: one byte, then idles until the
// client goes); `relayload -host NAME -addr HOST:PORT` runs, one after the
// other, a bulk download, sequential connect-to-first-byte latency,
// concurrent connection rate and idle connections, and prints
// "MB/s p50-µs p99-µs conns/s idle-bytes/conn" (the last from its parent's
// RSS: run it as `harden-runner run -- relayload ...`). Bounded in time.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	serve := flag.String("serve", "", "listen address")
	addr := flag.String("addr", "", "server to measure: host:port (a name is resolved once, up front)")
	host := flag.String("host", "bulk.test", "Host header")
	size := flag.Int("size", 512<<20, "bulk download bytes")
	lat := flag.Int("n", 2000, "latency samples")
	idle := flag.Int("idle", 2000, "idle connections")
	dur := flag.Duration("d", 5*time.Second, "connection-rate duration")
	conc := flag.Int("c", 8, "concurrent dialers for the rate")
	flag.Parse()
	if *serve != "" {
		serveMain(*serve)
		return
	}
	h, port, err := net.SplitHostPort(*addr)
	check(err)
	ips, err := net.LookupHost(h)
	check(err)
	target := net.JoinHostPort(ips[0], port)

	mbps := bulk(target, *host, *size)
	p50, p99 := latency(target, *host, *lat)
	rate := connRate(target, *host, *conc, *dur)
	perConn := idleMemory(target, *host, *idle)
	fmt.Printf("%.1f %d %d %.0f %d\n", mbps, p50, p99, rate, perConn)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayload:", err)
		os.Exit(1)
	}
}

func request(c net.Conn, host, path string) {
	_, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
	check(err)
}

func bulk(target, host string, size int) float64 {
	c, err := net.DialTimeout("tcp", target, 5*time.Second)
	check(err)
	defer c.Close()
	start := time.Now()
	request(c, host, "/bulk/"+strconv.Itoa(size))
	n, err := io.CopyBuffer(io.Discard, c, make([]byte, 1<<20))
	check(err)
	if n != int64(size) {
		check(fmt.Errorf("bulk: %d of %d bytes", n, size))
	}
	return float64(n) / time.Since(start).Seconds() / 1e6
}

func firstByte(target, host string) (net.Conn, time.Duration) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", target, 5*time.Second)
	check(err)
	request(c, host, "/")
	_, err = io.ReadFull(c, make([]byte, 1))
	check(err)
	return c, time.Since(start)
}

func latency(target, host string, n int) (p50, p99 int64) {
	var ds []time.Duration
	for range n {
		c, d := firstByte(target, host)
		c.Close()
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds[n/2].Microseconds(), ds[n*99/100].Microseconds()
}

func connRate(target, host string, conc int, dur time.Duration) float64 {
	var ok atomic.Int64
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				c, _ := firstByte(target, host)
				c.Close()
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(ok.Load()) / dur.Seconds()
}

// idleMemory opens n connections, each past its first answer, and returns
// how much the parent's (the agent's) RSS grew per connection.
func idleMemory(target, host string, n int) int64 {
	time.Sleep(2 * time.Second) // let the rate test's connections drain
	before := parentRSS()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, _ := firstByte(target, host)
		conns = append(conns, c)
	}
	time.Sleep(500 * time.Millisecond)
	after := parentRSS()
	for _, c := range conns {
		c.Close()
	}
	return (after - before) / int64(n)
}

func parentRSS() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", os.Getppid()))
	check(err)
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func serveMain(addr string) {
	l, err := net.Listen("tcp", addr)
	check(err)
	block := make([]byte, 1<<20)
	fmt.Println("ready")
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == "\r\n" {
					break
				}
			}
			f := strings.Fields(line)
			if len(f) > 1 && strings.HasPrefix(f[1], "/bulk/") {
				n, _ := strconv.Atoi(strings.TrimPrefix(f[1], "/bulk/"))
				for n > 0 {
					k := min(n, len(block))
					if _, err := c.Write(block[:k]); err != nil {
						return
					}
					n -= k
				}
				return
			}
			_, _ = c.Write([]byte{'x'})
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}
