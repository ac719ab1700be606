// Command connload measures how many new TCP connections per second a
// client can open: `connload -serve ADDR` accepts and closes connections,
// `connload -dial ADDR -c N -d 5s` opens and closes them from N goroutines
// and prints "conns/s failures successes". Bounded in time; for bench scripts only.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	serve := flag.String("serve", "", "listen address")
	dial := flag.String("dial", "", "address to connect to")
	conc := flag.Int("c", 8, "concurrent dialers")
	dur := flag.Duration("d", 5*time.Second, "how long to dial")
	rate := flag.Int("rate", 0, "total connections per second to aim for (0: as fast as possible)")
	flag.Parse()
	switch {
	case *serve != "":
		l, err := net.Listen("tcp", *serve)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("ready")
		for {
			c, err := l.Accept()
			if err != nil {
				continue
			}
			c.Close()
		}
	case *dial != "":
		var ok, failed atomic.Int64
		deadline := time.Now().Add(*dur)
		var wg sync.WaitGroup
		for range *conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := net.Dialer{Timeout: time.Second}
				var tick <-chan time.Time
				if *rate > 0 {
					t := time.NewTicker(time.Duration(*conc) * time.Second / time.Duration(*rate))
					defer t.Stop()
					tick = t.C
				}
				for time.Now().Before(deadline) {
					if tick != nil {
						<-tick
					}
					c, err := d.Dial("tcp", *dial)
					if err != nil {
						failed.Add(1)
						continue
					}
					// RST on close: no TIME_WAIT pile-up exhausting ports.
					_ = c.(*net.TCPConn).SetLinger(0)
					c.Close()
					ok.Add(1)
				}
			}()
		}
		start := time.Now()
		wg.Wait()
		fmt.Printf("%.0f %d %d\n", float64(ok.Load())/time.Since(start).Seconds(), failed.Load(), ok.Load())
	default:
		flag.Usage()
		os.Exit(2)
	}
}
