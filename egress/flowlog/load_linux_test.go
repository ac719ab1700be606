package flowlog

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/proc"
)

// Helpers run as separate processes (the test binary again, with envHelper
// set): "sink ADDR" accepts and drops TCP connections; "load ADDR RATE
// SECONDS HOLD" opens RATE new TCP connections a second for SECONDS, keeps
// each open for HOLD (a short request) and closes it with a reset (no
// TIME_WAIT, so ports are not exhausted), and prints "attempts ok seconds".
func runHelper(h string) int {
	f := strings.Fields(h)
	switch {
	case len(f) == 2 && f[0] == "sink":
		return sink(f[1])
	case len(f) == 5 && f[0] == "load":
		rate, _ := strconv.Atoi(f[2])
		secs, _ := strconv.Atoi(f[3])
		hold, _ := time.ParseDuration(f[4])
		return load(f[1], rate, secs, hold)
	}
	fmt.Fprintf(os.Stderr, "unknown helper %q\n", h)
	return 2
}

func sink(addr string) int {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return 0
		}
		c.Close()
	}
}

func load(addr string, rate, secs int, hold time.Duration) int {
	total := rate * secs
	interval := time.Second / time.Duration(rate)
	tokens := make(chan struct{}, 1024)
	var attempts, ok atomic.Int64
	var wg sync.WaitGroup
	for range 1024 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 3 * time.Second}
			for range tokens {
				attempts.Add(1)
				c, err := d.Dial("tcp4", addr)
				if err != nil {
					continue
				}
				ok.Add(1)
				time.Sleep(hold)
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
		}()
	}
	start := time.Now()
	for i := range total {
		if ahead := time.Until(start.Add(time.Duration(i) * interval)); ahead > time.Millisecond {
			time.Sleep(ahead)
		}
		tokens <- struct{}{}
	}
	close(tokens)
	wg.Wait()
	fmt.Printf("%d %d %.3f\n", attempts.Load(), ok.Load(), time.Since(start).Seconds())
	return 0
}

// helperForTest starts this test binary as a helper, in namespace ns if not "".
func helperForTest(tb testing.TB, ns, helper string) *exec.Cmd {
	tb.Helper()
	var cmd *exec.Cmd
	if ns != "" {
		cmd = exec.Command("nsenter", "--net=/var/run/netns/"+ns, "--", os.Args[0])
	} else {
		cmd = exec.Command(os.Args[0])
	}
	cmd.Env = append(os.Environ(), envHelper+"="+helper)
	cmd.Stderr = os.Stderr
	return cmd
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkReaderLoad opens HRTEST_LOAD_RATE (5000) new TCP connections a
// second for HRTEST_LOAD_SECONDS (10), each held HRTEST_LOAD_HOLD_MS (20), from a load generator process in the
// runner namespace, and reports how many flows the Reader emitted, lost and
// attributed, with and without owner lookups, and what it cost. The run
// takes the whole load whatever b.N is: use -benchtime 1x.
func BenchmarkReaderLoad(b *testing.B) {
	inet, _ := netnsForTest(b)
	rate, secs := envInt("HRTEST_LOAD_RATE", 5000), envInt("HRTEST_LOAD_SECONDS", 10)
	hold := time.Duration(envInt("HRTEST_LOAD_HOLD_MS", 20)) * time.Millisecond
	sinkCmd := helperForTest(b, inet, "sink 198.18.0.2:8090")
	out, _ := sinkCmd.StdoutPipe()
	if err := sinkCmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sinkCmd.Process.Kill(); sinkCmd.Wait() })
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		b.Fatalf("sink: %q", line)
	}
	for _, lookup := range []bool{false, true} {
		name := "no-owner"
		if lookup {
			name = "owner"
		}
		b.Run(name, func(b *testing.B) { loadRun(b, lookup, rate, secs, hold) })
	}
}

func loadRun(b *testing.B, lookup bool, rate, secs int, hold time.Duration) {
	var flows, attributed, byLoadgen, queueFull atomic.Int64
	var loadPid atomic.Int64
	var whyMu sync.Mutex
	why := map[string]int{}
	var stats event.Stats
	var statsMu sync.Mutex
	emit := func(r event.Record) {
		switch {
		case r.Flow != nil && r.Flow.Port == 8090:
			n := int64(flowCount(r.Flow))
			flows.Add(n)
			p := r.Flow.Process
			if p.PID != 0 && p.Unknown == "" {
				attributed.Add(n)
			}
			if int64(p.PID) == loadPid.Load() {
				byLoadgen.Add(n)
			}
			if p.Unknown == UnknownQueueFull {
				queueFull.Add(1)
			}
			if p.Unknown != "" {
				whyMu.Lock()
				why[p.Unknown]++
				whyMu.Unlock()
			}
		case r.Stats != nil:
			statsMu.Lock()
			stats = *r.Stats
			statsMu.Unlock()
		}
	}
	cfg := Config{Group: testGroup, Emit: emit}
	var finder *proc.Finder
	if lookup {
		finder = proc.NewFinder(nil)
		defer finder.Close()
		cfg.Owner = finder.Owner
	}
	r, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	nftForTest(b, rulesForTest)

	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	cmd := helperForTest(b, "", fmt.Sprintf("load 198.18.0.2:8090 %d %d %s", rate, secs, hold))
	out, _ := cmd.StdoutPipe()
	b.ResetTimer()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	loadPid.Store(int64(cmd.Process.Pid))
	line, _ := bufio.NewReader(out).ReadString('\n')
	cmd.Wait()
	var attempts, ok int64
	var elapsed float64
	if _, err := fmt.Sscan(line, &attempts, &ok, &elapsed); err != nil {
		b.Fatalf("load generator said %q: %v", line, err)
	}
	// Let the reader catch up, then stop it.
	for deadline := time.Now().Add(30 * time.Second); flows.Load() < attempts && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	r.Close()
	b.StopTimer()
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond

	rss, hwm := memForTest()
	statsMu.Lock()
	st := stats
	statsMu.Unlock()
	b.ReportMetric(float64(attempts)/elapsed, "conn/s")
	b.ReportMetric(float64(flows.Load())/elapsed, "flows/s")
	b.ReportMetric(float64(st.Lost), "lost")
	b.ReportMetric(float64(max(ok-flows.Load(), 0)), "missing")
	b.ReportMetric(100*float64(attributed.Load())/float64(max(flows.Load(), 1)), "%attributed")
	b.ReportMetric(float64(queueFull.Load()), "queue-full")
	b.ReportMetric(float64(cpu.Microseconds())/float64(max(flows.Load(), 1)), "cpu-us/flow")
	b.ReportMetric(rss, "rss-MiB")
	b.ReportMetric(hwm, "hwm-MiB")
	whyMu.Lock()
	b.Logf("%d attempts (%d connected) in %.1fs; %d flows, %d by the load generator, %d attributed, %d queue full; stats %+v; cpu %v; unattributed: %v",
		attempts, ok, elapsed, flows.Load(), byLoadgen.Load(), attributed.Load(), queueFull.Load(), st, cpu, why)
	whyMu.Unlock()
	// Every connection that got through sent a first packet; an attempt
	// that failed may not have; a retransmitted SYN must not count twice.
	if st.Lost != 0 || flows.Load() < ok || flows.Load() > attempts {
		b.Errorf("lost %d, %d flows for %d connections (%d attempts)", st.Lost, flows.Load(), ok, attempts)
	}
}

// memForTest returns this process's VmRSS and VmHWM in MiB.
func memForTest() (rss, hwm float64) {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && (f[0] == "VmRSS:" || f[0] == "VmHWM:") {
			kb, _ := strconv.ParseFloat(f[1], 64)
			if f[0] == "VmRSS:" {
				rss = kb / 1024
			} else {
				hwm = kb / 1024
			}
		}
	}
	return rss, hwm
}
