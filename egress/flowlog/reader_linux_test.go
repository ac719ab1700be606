package flowlog

import (
	"context"
	"fmt"
	"github.com/harden-runner/harden-runner/internal/testnet"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/proc"
)

const testGroup = 17

// rulesForTest logs new flows to testGroup: port 8081 blocked (and
// dropped), port 8082 audit, everything else to the internet namespace
// allowed; forwarded container traffic is logged as forwarded.
var rulesForTest = fmt.Sprintf(`table inet hrtest {
	chain output {
		type filter hook output priority 0; policy accept;
		ct state != new accept
		tcp dport 8081 log group %[1]d prefix "%[2]s" drop
		tcp dport 8082 log group %[1]d prefix "%[3]s" accept
		ip daddr 198.18.0.2 log group %[1]d prefix "%[4]s" accept
		ip6 daddr 2001:db8::2 log group %[1]d prefix "%[4]s" accept
	}
	chain forwarded {
		type filter hook forward priority 0; policy accept;
		ct state new log group %[1]d prefix "%[5]s" accept
	}
}
`, testGroup, Prefix(event.Blocked, false), Prefix(event.Audit, false), Prefix(event.Allowed, false), Prefix(event.Allowed, true))

// recorder collects emitted records.
type recorder struct {
	mu   sync.Mutex
	recs []event.Record
	ch   chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1)} }

func (r *recorder) emit(rec event.Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

func (r *recorder) records() []event.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event.Record(nil), r.recs...)
}

// waitFlow waits for a flow that match accepts.
func (r *recorder) waitFlow(t testing.TB, match func(event.Flow) bool) event.Flow {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for _, rec := range r.records() {
			if rec.Flow != nil && match(*rec.Flow) {
				return *rec.Flow
			}
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("no matching flow; got %d records: %s", len(r.records()), dumpRecords(r.records()))
			return event.Flow{}
		}
	}
}

func dumpRecords(recs []event.Record) string {
	var sb strings.Builder
	for _, r := range recs {
		switch {
		case r.Flow != nil:
			f := *r.Flow
			fmt.Fprintf(&sb, "\n  flow %s %s:%d %s fwd=%v pid=%d exe=%s uid=%d unknown=%q",
				f.Protocol, f.IP, f.Port, f.Verdict, f.Forward, f.Process.PID, f.Process.Exe, f.Process.UID, f.Process.Unknown)
		case r.Stats != nil:
			fmt.Fprintf(&sb, "\n  stats %+v", *r.Stats)
		case r.Note != nil:
			fmt.Fprintf(&sb, "\n  note %+v", *r.Note)
		}
	}
	return sb.String()
}

func (r *recorder) stats(t testing.TB) event.Stats {
	t.Helper()
	var found []event.Stats
	for _, rec := range r.records() {
		if rec.Stats != nil {
			found = append(found, *rec.Stats)
		}
	}
	if len(found) != 1 {
		t.Fatalf("got %d stats records, want 1", len(found))
	}
	return found[0]
}

// startReaderForTest starts a Reader on testGroup with a proc.Finder (nil
// owner if !lookup), then loads rulesForTest.
func startReaderForTest(t testing.TB, lookup bool, queue int) (*Reader, *recorder, *proc.Finder) {
	t.Helper()
	netnsForTest(t)
	rec := newRecorder()
	cfg := Config{Group: testGroup, Emit: rec.emit, Queue: queue}
	var f *proc.Finder
	if lookup {
		f = proc.NewFinder(nil)
		cfg.Owner = f.Owner
		t.Cleanup(func() { f.Close() })
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	nftForTest(t, rulesForTest)
	return r, rec, f
}

// tcpServerForTest answers every connection on addr in namespace ns with a
// tiny HTTP response after delay and closes it, so clients exit then.
func tcpServerForTest(t testing.TB, ns, network, addr string, delay time.Duration) {
	t.Helper()
	var ln net.Listener
	if err := testnet.InNamespace(ns, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 1024)
				c.Read(buf)
				time.Sleep(delay)
				io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

// udpSinkForTest receives and drops datagrams on addr in namespace ns.
func udpSinkForTest(t testing.TB, ns, network, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := testnet.InNamespace(ns, func() (err error) {
		pc, err = net.ListenPacket(network, addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
}

func exeOf(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	if p, err = filepath.EvalSymlinks(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// icmpEchoForTest sends one echo request from this process over a raw socket.
func icmpEchoForTest(t testing.TB, v6 bool, dst string) {
	t.Helper()
	network, typ := "ip4:icmp", byte(8)
	if v6 {
		network, typ = "ip6:ipv6-icmp", 128
	}
	c, err := net.ListenPacket(network, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A fresh echo id each time, so that conntrack sees a new flow.
	id := uint16(time.Now().UnixNano() >> 10)
	msg := []byte{typ, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'h', 'r'}
	if !v6 { // the kernel sums ICMPv6 itself
		var s uint32
		for i := 0; i < len(msg); i += 2 {
			s += uint32(msg[i])<<8 | uint32(msg[i+1])
		}
		s = (s >> 16) + (s & 0xffff)
		s += s >> 16
		msg[2], msg[3] = byte(^s>>8), byte(^s)
	}
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
		t.Fatal(err)
	}
}

var unpriv = []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}

func TestReader(t *testing.T) {
	inet, ctr := netnsForTest(t)
	for _, a := range []string{"198.18.0.2", "[2001:db8::2]"} {
		for _, p := range []string{"8080", "8081", "8082"} {
			// Clients stay up a while: short-lived ones are TestShortLived's.
			tcpServerForTest(t, inet, "tcp", a+":"+p, 300*time.Millisecond)
		}
		udpSinkForTest(t, inet, "udp", a+":9053")
	}
	_, rec, _ := startReaderForTest(t, true, 0)

	type want struct {
		ip      string
		port    uint16
		proto   string
		verdict event.Verdict
		forward bool
		exe     string // "" = no process expected; then unknown is
		unknown string
		uid     int
	}
	tests := []struct {
		name string
		run  func(t *testing.T) (pid int)
		want want
	}{
		{"curl tcp4 allowed", runClient("curl", "-s", "-m", "5", "http://198.18.0.2:8080/"),
			want{"198.18.0.2", 8080, "tcp", event.Allowed, false, "curl", "", 0}},
		{"curl tcp6 blocked, unprivileged", runClient(append(unpriv, "curl", "-s", "-m", "2", "http://[2001:db8::2]:8081/")...),
			want{"2001:db8::2", 8081, "tcp", event.Blocked, false, "curl", "", 65534}},
		{"curl tcp4 audit", runClient("curl", "-s", "-m", "5", "http://198.18.0.2:8082/"),
			want{"198.18.0.2", 8082, "tcp", event.Audit, false, "curl", "", 0}},
		{"socat udp4", runClientStdin("hello\n", "socat", "-T", "2", "STDIO", "UDP:198.18.0.2:9053"),
			want{"198.18.0.2", 9053, "udp", event.Allowed, false, "socat", "", 0}},
		{"dig udp6, unprivileged", runClient(append(unpriv, "dig", "@2001:db8::2", "-p", "9053", "+tries=1", "+timeout=1", "a.test")...),
			want{"2001:db8::2", 9053, "udp", event.Allowed, false, "dig", "", 65534}},
		{"icmp", func(t *testing.T) int { icmpEchoForTest(t, false, "198.18.0.2"); return 0 },
			want{"198.18.0.2", 0, "icmp", event.Allowed, false, "", UnknownProtocol, 0}},
		{"icmpv6", func(t *testing.T) int { icmpEchoForTest(t, true, "2001:db8::2"); return 0 },
			want{"2001:db8::2", 0, "icmpv6", event.Allowed, false, "", UnknownProtocol, 0}},
		{"forwarded from a container", runClient("nsenter", "--net=/var/run/netns/"+ctr, "curl", "-s", "-m", "5", "http://198.18.0.2:8080/"),
			want{"198.18.0.2", 8080, "tcp", event.Allowed, true, "", UnknownForwarded, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.want
			var wantExe string
			if w.exe != "" {
				wantExe = exeOf(t, w.exe)
			}
			since := time.Now()
			pid := tc.run(t)
			got := rec.waitFlow(t, func(f event.Flow) bool {
				return f.Time.After(since) && f.IP == w.ip && f.Port == w.port && f.Protocol == w.proto
			})
			if got.Verdict != w.verdict || got.Forward != w.forward {
				t.Errorf("flow %+v: want verdict %s, forward %v", got, w.verdict, w.forward)
			}
			p := got.Process
			if w.exe != "" {
				if p.Exe != wantExe || p.PID != pid || p.Unknown != "" {
					t.Errorf("process %+v, want %s pid %d", p, wantExe, pid)
				}
			} else if p.PID != 0 || p.Unknown != w.unknown {
				t.Errorf("process %+v, want unknown %q", p, w.unknown)
			}
			if p.UID != w.uid {
				t.Errorf("uid %d, want %d", p.UID, w.uid)
			}
		})
	}
}

// runClient returns a test step that runs a client to completion and
// returns its pid.
func runClient(args ...string) func(t *testing.T) int {
	return runClientStdin("", args...)
}

func runClientStdin(stdin string, args ...string) func(t *testing.T) int {
	return func(t *testing.T) int {
		if t != nil {
			exeOf(t, args[0])
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin = strings.NewReader(stdin)
		if err := cmd.Start(); err != nil {
			if t == nil {
				return 0
			}
			t.Fatal(err)
		}
		cmd.Wait() // blocked or unanswered clients fail; the flow is what counts
		return cmd.Process.Pid
	}
}

// TestReaderStats checks Close's Stats against what the test sent, with no
// owner lookup, and that Close is safe twice.
func TestReaderStats(t *testing.T) {
	inet, _ := netnsForTest(t)
	tcpServerForTest(t, inet, "tcp", "198.18.0.2:8080", 0)
	r, rec, _ := startReaderForTest(t, false, 0)
	const n = 20
	for i := range n {
		c, err := net.Dial("tcp", "198.18.0.2:8080")
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.Close()
	}
	seen := func() int {
		k := 0
		for _, rec := range rec.records() {
			if rec.Flow != nil && rec.Flow.Port == 8080 {
				k += flowCount(rec.Flow)
			}
		}
		return k
	}
	for deadline := time.Now().Add(10 * time.Second); seen() < n && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := seen(); got != n {
		t.Errorf("%d flows to port 8080, want %d", got, n)
	}
	st := rec.stats(t)
	if st.Component != "flowlog" || st.Events != n || st.Lost != 0 || st.Unattributed != n {
		t.Errorf("Stats = %+v, want %d events, 0 lost, all unattributed (no owner)", st, n)
	}
	for _, r := range rec.records() {
		if r.Flow != nil && r.Flow.Process.Unknown != UnknownNoLookup {
			t.Errorf("flow %+v, want Unknown=%q", *r.Flow, UnknownNoLookup)
		}
	}
	if err := r.Start(context.Background()); err == nil {
		t.Error("Start after Close succeeded")
	}
}

// TestShortLived measures how often the process of a client that exits
// right after its first packet is found: curl (TCP, exits after the
// answer) and socat sending one UDP datagram and exiting. The rate depends
// on how busy the machine is (65-100% on 2 loaded vCPUs); the floor catches
// a reader that hands packets over late (the kernel's default batching
// gives 0%).
func TestShortLived(t *testing.T) {
	inet, _ := netnsForTest(t)
	tcpServerForTest(t, inet, "tcp", "198.18.0.2:8080", 0)
	udpSinkForTest(t, inet, "udp", "198.18.0.2:9053")
	_, rec, _ := startReaderForTest(t, true, 0)
	const n = 40
	clients := []struct {
		name    string
		port    uint16
		args    []string
		stdin   string
		atLeast float64
	}{
		// The floor only catches delivery that waits (the kernel's default
		// NFLOG batching gives 0 %); the rate itself depends on load (85-95 %
		// idle, 18 % seen with two other test packages on 2 vCPUs) and is
		// measured, not asserted. Denied flows don't depend on it: egress/gate
		// holds them until their process is found.
		{"curl", 8080, []string{"curl", "-s", "-m", "5", "http://198.18.0.2:8080/"}, "", 0.05},
		{"socat", 9053, []string{"socat", "-u", "STDIO", "UDP:198.18.0.2:9053"}, "x", 0.05},
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			pids := map[int]bool{}
			for i := range n {
				args := c.args
				if c.name == "socat" {
					// A source port of its own each time: two runs that the
					// kernel gave the same random port would share one
					// conntrack entry, and so one flow (seen: 39 of 40).
					args = append(args[:len(args)-1:len(args)-1], fmt.Sprintf("%s,sourceport=%d", args[len(args)-1], 41000+i))
				}
				pids[runClientStdin(c.stdin, args...)(t)] = true
			}
			var flows, found int
			var why map[string]int
			deadline := time.Now().Add(10 * time.Second)
			for {
				flows, found, why = 0, 0, map[string]int{}
				for _, r := range rec.records() {
					if f := r.Flow; f != nil && f.Port == c.port {
						flows += flowCount(f)
						if pids[f.Process.PID] && f.Process.Unknown == "" {
							found += flowCount(f)
						} else {
							why[f.Process.Unknown] += flowCount(f)
						}
					}
				}
				if flows >= n || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if flows != n {
				t.Fatalf("%d flows, want %d", flows, n)
			}
			rate := float64(found) / n
			t.Logf("%s: process found for %d of %d short-lived clients (%.0f%%); misses: %v", c.name, found, n, 100*rate, why)
			if rate < c.atLeast {
				t.Errorf("found %.0f%%, want at least %.0f%%", 100*rate, 100*c.atLeast)
			}
		})
	}
}

// TestReaderOverflow shrinks the receive buffer and stalls the consumer so
// the kernel's NFLOG messages overflow it, and checks that the loss is
// counted and reported rather than silent.
func TestReaderOverflow(t *testing.T) {
	inet, _ := netnsForTest(t)
	tcpServerForTest(t, inet, "tcp", "198.18.0.2:8080", 0)
	rec := newRecorder()
	stall := make(chan struct{})
	r, err := New(Config{Group: testGroup, Emit: func(e event.Record) {
		if e.Flow != nil {
			<-stall // the reading goroutine blocks here, so the socket fills
		}
		rec.emit(e)
	}})
	if err != nil {
		t.Fatal(err)
	}
	r.rcvbuf = 4096
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	nftForTest(t, rulesForTest)
	const n = 300
	for i := range n {
		c, err := net.Dial("tcp", "198.18.0.2:8080")
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.Close()
	}
	close(stall)
	// Wait until the backlog is read (no new flow for a while), then make
	// one more connection: its sequence number measures the gap.
	settle := func() {
		for last := -1; ; time.Sleep(200 * time.Millisecond) {
			if k := len(rec.records()); k == last {
				break
			} else {
				last = k
			}
		}
	}
	settle()
	c, err := net.Dial("tcp", "198.18.0.2:8080")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	settle()
	r.Close()
	st := rec.stats(t)
	var notes int
	for _, e := range rec.records() {
		if e.Note != nil && e.Note.Level == "warning" && strings.Contains(e.Note.Message, "overflowed") {
			notes++
		}
	}
	t.Logf("%d connections: %+v", n, st)
	if st.Lost == 0 || notes != 1 {
		t.Errorf("Stats %+v and %d overflow notes; want lost > 0 and one note", st, notes)
	}
	// Sequence-number gaps make the count exact.
	if st.Events+st.Lost != n+1 {
		t.Errorf("%d events + %d lost, want %d connections", st.Events, st.Lost, n+1)
	}
}

// TestCaptureSeeds prints the first packets of real flows as Go literals
// for egress/packet/realpackets_test.go. It runs only with HRTEST_CAPTURE_SEEDS=1.
func TestCaptureSeeds(t *testing.T) {
	if os.Getenv("HRTEST_CAPTURE_SEEDS") == "" {
		t.Skip("set HRTEST_CAPTURE_SEEDS=1 to capture fuzz seeds")
	}
	inet, _ := netnsForTest(t)
	tcpServerForTest(t, inet, "tcp", "198.18.0.2:8080", 0)
	tcpServerForTest(t, inet, "tcp", "[2001:db8::2]:8080", 0)
	udpSinkForTest(t, inet, "udp", "198.18.0.2:9053")
	udpSinkForTest(t, inet, "udp", "[2001:db8::2]:9053")
	var mu sync.Mutex
	var seeds []string
	r, err := New(Config{Group: testGroup, Emit: func(event.Record) {}})
	if err != nil {
		t.Fatal(err)
	}
	r.capture = func(b []byte) {
		mu.Lock()
		seeds = append(seeds, fmt.Sprintf("%#v", b))
		mu.Unlock()
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	nftForTest(t, rulesForTest)
	runClient("curl", "-s", "http://198.18.0.2:8080/")(nil)
	runClient("curl", "-s", "http://[2001:db8::2]:8080/")(nil)
	runClient("dig", "@198.18.0.2", "-p", "9053", "+tries=1", "+timeout=1", "a.test")(nil)
	runClient("dig", "@2001:db8::2", "-p", "9053", "+tries=1", "+timeout=1", "aaaa.test")(nil)
	icmpEchoForTest(t, false, "198.18.0.2")
	icmpEchoForTest(t, true, "2001:db8::2")
	time.Sleep(500 * time.Millisecond)
	r.Close()
	mu.Lock()
	defer mu.Unlock()
	fmt.Println(strings.Join(seeds, ",\n"))
}

// TestReaderBatch: with Batch, the kernel hands packets over in batches,
// a lookup queue that is full makes the reader wait (every flow keeps its
// owner), and Close, right after the rules are gone (as the agent does
// it), still reports the flows the kernel was holding: with the longest
// Batch, the kernel's timer would hand the last ones over only a second
// later, so they come from Close's flush.
func TestReaderBatch(t *testing.T) {
	inet, _ := netnsForTest(t)
	tcpServerForTest(t, inet, "tcp", "198.18.0.2:8083", 0)
	rec := newRecorder()
	owner := func(proto string, local, remote netip.AddrPort) event.Process {
		time.Sleep(time.Millisecond) // slower than the flows come: the queue fills
		return event.Process{PID: 42, Exe: "/test/owner"}
	}
	r, err := New(Config{Group: testGroup, Emit: rec.emit, Owner: owner, Workers: 1, Queue: 1, Batch: maxBatch})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	nftForTest(t, rulesForTest)
	const n = 40
	for i := range n {
		c, err := net.Dial("tcp", "198.18.0.2:8083")
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		c.Close()
	}
	if out, err := exec.Command("nft", "delete", "table", "inet", "hrtest").CombinedOutput(); err != nil {
		t.Fatalf("nft delete table: %v %s", err, out)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	got := 0
	for _, rec := range rec.records() {
		if f := rec.Flow; f != nil && f.Port == 8083 {
			got += flowCount(f)
			if f.Process.PID != 42 || f.Process.Unknown != "" {
				t.Errorf("flow %+v: want the owner's process, not %q", *f, f.Process.Unknown)
			}
		}
	}
	st := rec.stats(t)
	if got != n || st.Lost != 0 || st.Unattributed != 0 {
		t.Errorf("%d flows to port 8083 (stats %+v), want %d, none lost or unattributed", got, st, n)
	}
}
