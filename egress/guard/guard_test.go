package guard

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/egress/firewall"
	"github.com/harden-runner/harden-runner/egress/gate"
	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/testnet"
	"github.com/harden-runner/harden-runner/proc"
)

func TestMain(m *testing.M) {
	testnet.MaybeServe()
	os.Exit(m.Run())
}

// records keeps what the guard emitted.
type records struct {
	mu   sync.Mutex
	list []event.Note
}

func (r *records) emit(rec event.Record) {
	if rec.Note != nil {
		r.mu.Lock()
		r.list = append(r.list, *rec.Note)
		r.mu.Unlock()
	}
}

func (r *records) notes() []event.Note {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.list)
}

// world is a runner namespace with our table in block mode (one address
// allowed through the dyn set), a gate, and a guard watching it.
type world struct {
	*testnet.Net
	fw  *firewall.Firewall
	g   *Guard
	rec *records
}

func newWorld(t *testing.T, setup ...[]string) *world {
	t.Helper()
	testnet.Skip(t, "curl")
	n := testnet.New(t)
	n.StartServers(os.Args[0], "tls::443")
	for _, args := range setup {
		if out, err := n.In(n.Runner, append([]string{"nft"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v %s", args, err, out)
		}
	}
	f, err := os.Open(filepath.Join("/var/run/netns", n.Runner))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fd := int(f.Fd())
	fw, err := firewall.New(firewall.Config{Block: true, ResolverPort: 153, NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	gt, err := gate.New(gate.Config{Queue: fw.Queue(), Queues: fw.Queues(), Block: true, RejectMark: fw.RejectMark(), NetNS: fd, Emit: func(event.Record) {}})
	if err != nil {
		t.Fatal(err)
	}
	if err := gt.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = gt.Close() })
	if err := fw.Install(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fw.Remove() })
	if err := fw.Allow([]netip.Addr{testnet.Host4(10)}, []uint16{443}, time.Hour); err != nil {
		t.Fatal(err)
	}
	rec := &records{}
	var hooks []Hook
	for _, h := range fw.Hooks() {
		hooks = append(hooks, Hook{Hook: h.Hook, Priority: h.Priority})
	}
	var existing []Change
	chains, err := fw.ForeignBaseChains()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chains {
		existing = append(existing, Change{Family: FamilyName(c.Family), Table: c.Table, Name: c.Name, Hook: c.Hook, Priority: c.Priority})
	}
	g, err := New(Config{Table: firewall.DefaultTable, Hooks: hooks, Restore: fw.Restore, Verify: fw.Verify,
		Existing: existing, NetNS: fd, Emit: rec.emit, Process: proc.Info})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.Close() })
	return &world{Net: n, fw: fw, g: g, rec: rec}
}

// nft runs nft in the runner namespace as root would.
func (w *world) nft(t *testing.T, args ...string) {
	t.Helper()
	if out, err := w.In(w.Runner, append([]string{"nft"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("nft %v: %v\n%s", args, err, out)
	}
}

func (w *world) curl(url string) bool {
	return w.In(w.Runner, "curl", "-sk", "--max-time", "2", "-o", "/dev/null", url).Run() == nil
}

// waitRestores waits until the guard has restored n times.
func (w *world) waitRestores(t *testing.T, n int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for w.g.Restores() < n {
		if time.Since(start) > within {
			t.Fatalf("no restore within %v (restores %d, want %d); notes: %+v", within, w.g.Restores(), n, w.rec.notes())
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

// TestRestoresAfterTampering: root switches enforcement off in each way
// nft offers. Each time the table is back (bench/tamper.sh measures how
// fast: within 100 ms), a probe to a
// host the policy does not allow is refused and never reaches the far
// side, the allowed address (a dyn set element) works again, and an error
// names the change and the process.
func TestRestoresAfterTampering(t *testing.T) {
	w := newWorld(t)
	blocked := testnet.Host4(11)
	if w.curl("https://198.18.1.11/") || !w.curl("https://198.18.1.10/") {
		t.Fatal("the policy is not in force to begin with")
	}
	// Proof that each attack works: with the guard stopped, the
	// first one lets the probe out.
	attacks := []struct {
		name string
		args [][]string
		want string // in the error
	}{
		{"delete table", [][]string{{"delete", "table", "inet", "harden_runner"}}, "delete table inet harden_runner"},
		{"flush output chain", [][]string{{"flush", "chain", "inet", "harden_runner", "output"}}, "delete rule inet harden_runner output"},
		{"flush ruleset", [][]string{{"flush", "ruleset"}}, "delete table inet harden_runner"},
		{"flush dyn set", [][]string{{"flush", "set", "inet", "harden_runner", "dyn4"}}, "delete element inet harden_runner dyn4"},
		{"insert accept rule", [][]string{{"insert", "rule", "inet", "harden_runner", "output", "accept"}}, "add rule inet harden_runner output"},
	}
	for i, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			before := len(w.rec.notes())
			for _, args := range a.args {
				w.nft(t, args...)
			}
			// The restore takes milliseconds (bench/tamper.sh); the kernel's
			// commit can take longer on a loaded machine, so the deadline
			// here is generous and the latency is measured there.
			took := w.waitRestores(t, i+1, 2*time.Second)
			t.Logf("restored %v after nft exited", took)
			hits := len(w.HitsTo("tcp", blocked, 443))
			if w.curl("https://198.18.1.11/") {
				t.Error("a blocked probe got out after the restore")
			}
			if n := len(w.HitsTo("tcp", blocked, 443)); n != hits {
				t.Errorf("the far side saw %d new connections from the blocked probe", n-hits)
			}
			if !w.curl("https://198.18.1.10/") {
				t.Error("the allowed address no longer works after the restore")
			}
			var found bool
			for _, n := range w.rec.notes()[before:] {
				found = found || n.Tamper && n.Level == "error" && strings.Contains(n.Message, a.want) &&
					strings.Contains(n.Message, "nft") && n.Process != nil && n.Process.PID != 0
			}
			if !found {
				t.Errorf("no error naming %q and nft: %+v", a.want, w.rec.notes()[before:])
			}
		})
	}
	if got := w.g.Tampered(); got != len(attacks) {
		t.Errorf("Tampered() = %d, want %d", got, len(attacks))
	}
	// The control: without the guard, the same deletion lets the probe
	// out, so the probe above could have seen it.
	_ = w.g.Close()
	w.nft(t, "delete", "table", "inet", "harden_runner")
	if !w.curl("https://198.18.1.11/") || len(w.HitsTo("tcp", blocked, 443)) == 0 {
		t.Error("without the guard the probe did not get out either: the test proves nothing")
	}
}

// TestReportsChainsBeforeOurs: a chain in another table on our output hook
// at an earlier priority (it can set our resolver's mark, so our chain
// would accept) is an error naming it and nft; a later one is not; our own
// table's updates (Allow) are not.
func TestReportsChainsBeforeOurs(t *testing.T) {
	w := newWorld(t)
	w.nft(t, "add", "table", "ip", "late")
	w.nft(t, "add", "chain", "ip", "late", "out", "{ type filter hook output priority 10; }")
	if err := w.fw.Allow([]netip.Addr{testnet.Host4(20)}, []uint16{443}, time.Minute); err != nil {
		t.Fatal(err)
	}
	w.nft(t, "add", "table", "ip", "evil")
	w.nft(t, "add", "chain", "ip", "evil", "out", "{ type route hook output priority -150; }")
	w.nft(t, "add", "rule", "ip", "evil", "out", "meta", "mark", "set", strconv.Itoa(firewall.DefaultMark))
	deadline := time.Now().Add(time.Second)
	for w.g.Tampered() < 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	notes := w.rec.notes()
	if len(notes) != 2 || !strings.Contains(notes[0].Message, "add chain ip evil out (hook output priority -150)") ||
		!strings.Contains(notes[1].Message, "add rule ip evil out") {
		t.Fatalf("want two errors, the chain and its rule: %+v", notes)
	}
	for _, n := range notes {
		if !n.Tamper || n.Level != "error" || !strings.Contains(n.Message, "nft") {
			t.Errorf("note does not name the tampering and nft: %+v", n)
		}
	}
	// What iptables creates while we run (filter, priority 0) runs after
	// ours (one below it) and is not reported; a chain added at our own
	// priority is: the kernel runs the chain registered later first.
	w.nft(t, "add", "table", "ip", "ipt")
	w.nft(t, "add", "chain", "ip", "ipt", "OUTPUT", "{ type filter hook output priority 0; }")
	w.nft(t, "add", "rule", "ip", "ipt", "OUTPUT", "counter")
	w.nft(t, "add", "table", "ip", "same")
	w.nft(t, "add", "chain", "ip", "same", "out", "{ type filter hook output priority -1; }")
	w.nft(t, "add", "rule", "ip", "same", "out", "udp", "dport", "443", "meta", "mark", "set", strconv.Itoa(firewall.DefaultMark))
	for deadline := time.Now().Add(time.Second); w.g.Tampered() < 4 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // and nothing more
	notes = w.rec.notes()
	if len(notes) != 4 || !strings.Contains(notes[2].Message, "add chain ip same out (hook output priority -1)") ||
		!strings.Contains(notes[3].Message, "add rule ip same out") {
		t.Fatalf("want two more errors, for the chain at our priority and its rule, and none for iptables' chain: %+v", notes[2:])
	}
}

// TestReportsRewritesAfterOurs: a chain that runs after ours (priority
// 10) and only counts is no error; rules there that rewrite a packet's
// destination, copy it elsewhere or hand it to a process (which may give
// back another one) are, also from a regular chain it jumps to: our rules
// decided on the packet as it was.
func TestReportsRewritesAfterOurs(t *testing.T) {
	w := newWorld(t)
	w.nft(t, "add", "table", "ip", "late")
	w.nft(t, "add", "chain", "ip", "late", "out", "{ type filter hook output priority 10; }")
	w.nft(t, "add", "chain", "ip", "late", "sub")
	w.nft(t, "add", "rule", "ip", "late", "out", "counter")
	w.nft(t, "add", "rule", "ip", "late", "out", "jump", "sub")
	time.Sleep(50 * time.Millisecond)
	if n := w.rec.notes(); len(n) != 0 {
		t.Fatalf("a chain after ours that only counts was reported: %+v", n)
	}
	for i, rule := range [][]string{
		{"out", "ip", "daddr", "198.18.1.10", "udp", "dport", "9999", "ip", "daddr", "set", "198.18.1.11"},
		{"sub", "udp", "dport", "9999", "udp", "dport", "set", "22"},
		{"out", "dup", "to", "198.18.0.2"},
		// iptables-nft's NFQUEUE target (this kernel has no nft queue).
		{"POSTROUTING", "iptables-nft", "-t", "mangle", "-A", "POSTROUTING", "-p", "udp", "-j", "NFQUEUE", "--queue-num", "7"},
	} {
		if rule[1] == "iptables-nft" {
			if out, err := w.In(w.Runner, rule[1:]...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", rule[1:], err, out)
			}
			rule[0] = "mangle " + rule[0]
		} else {
			w.nft(t, append([]string{"add", "rule", "ip", "late"}, rule...)...)
			rule[0] = "late " + rule[0]
		}
		for deadline := time.Now().Add(time.Second); w.g.Tampered() < i+1 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		notes := w.rec.notes()
		if len(notes) != i+1 {
			t.Fatalf("rule %q: notes %+v", rule, notes)
		}
		n := notes[i]
		if !n.Tamper || n.Level != "error" || !strings.Contains(n.Message, "add rule ip "+rule[0]) ||
			!strings.Contains(n.Message, "rewrites or re-sends packets") || !strings.Contains(n.Message, "by ") {
			t.Errorf("rule %q: note %+v", rule, n)
		}
	}
}

// TestRestoreLatency deletes our table HR_TAMPER_ROUNDS times and reports
// the time from the commit's notification, and from nft's exit, until the
// guard's restore has committed (bench/tamper.sh; figures in bench/README.md).
func TestRestoreLatency(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("HR_TAMPER_ROUNDS"))
	if rounds == 0 {
		t.Skip("a benchmark: run by bench/tamper.sh (HR_TAMPER_ROUNDS=50)")
	}
	w := newWorld(t)
	var lat, own []time.Duration
	for i := range rounds {
		c := w.In(w.Runner, "nft", "delete", "table", "inet", "harden_runner")
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("round %d: %v %s", i, err, out)
		}
		lat = append(lat, w.waitRestores(t, i+1, time.Second))
		own = append(own, w.g.LastRestore())
	}
	quantiles := func(d []time.Duration) (p50, p90, p99, max time.Duration) {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		q := func(f float64) time.Duration { return d[min(len(d)-1, int(f*float64(len(d))))] }
		return q(0.5), q(0.9), q(0.99), d[len(d)-1]
	}
	a, b, c, d := quantiles(own)
	t.Logf("notification -> restore committed, %d rounds: median %v, p90 %v, p99 %v, max %v", rounds, a, b, c, d)
	e, f, g, h := quantiles(lat)
	t.Logf("nft exit -> restore committed, %d rounds: median %v, p90 %v, p99 %v, max %v", rounds, e, f, g, h)

}

// TestReportsChainsThatWereThere: a chain ahead of ours that existed before
// the guard is a warning at start (not tampering: nothing in the job did
// it), and a rule added to it later is tampering.
func TestReportsChainsThatWereThere(t *testing.T) {
	w := newWorld(t, []string{"add", "table", "ip", "early"},
		[]string{"add", "chain", "ip", "early", "out", "{ type filter hook output priority -5; }"},
		[]string{"add", "table", "ip", "late"},
		[]string{"add", "chain", "ip", "late", "out", "{ type filter hook output priority 5; }"})
	notes := w.rec.notes()
	if len(notes) != 1 || notes[0].Level != "warning" || notes[0].Tamper || !strings.Contains(notes[0].Message, "chain ip early out (hook output priority -5)") {
		t.Fatalf("want one warning about ip early out: %+v", notes)
	}
	w.nft(t, "add", "rule", "ip", "late", "out", "counter")
	w.nft(t, "add", "rule", "ip", "early", "out", "meta", "mark", "set", strconv.Itoa(firewall.DefaultMark))
	deadline := time.Now().Add(2 * time.Second)
	// The count goes up before the error is emitted: wait for both.
	for (w.g.Tampered() < 1 || len(w.rec.notes()) < 2) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	notes = w.rec.notes()
	if w.g.Tampered() != 1 || len(notes) != 2 || !notes[1].Tamper || !strings.Contains(notes[1].Message, "add rule ip early out") {
		t.Errorf("want one tamper error for the rule in ip early out: %d, %+v", w.g.Tampered(), notes)
	}
}
