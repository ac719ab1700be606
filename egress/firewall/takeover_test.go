package firewall

import (
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/testnet"
)

// TestTakeoverKeepsAllowed: an agent that died left its table, with an
// address the resolver had allowed, in the kernel. Its successor's Install
// (Takeover) replaces the table and keeps the address allowed, for what
// is left of its lifetime: a process that resolved the name before the
// death still connects. Without Takeover the fresh table refuses it,
// which is what makes this test able to fail.
func TestTakeoverKeepsAllowed(t *testing.T) {
	testnet.Skip(t, "curl", "nft")
	n := testnet.New(t)
	n.StartServers(os.Args[0], "tls::443")
	dead := installBare(t, n, Config{Block: true})
	if err := dead.Allow([]netip.Addr{testnet.Host4(30), testnet.Host6(30)}, []uint16{443}, time.Minute); err != nil {
		t.Fatal(err)
	}
	// The dead agent's netlink socket is gone; its table stays.
	dead.mu.Lock()
	_ = dead.conn.CloseLasting()
	dead.conn = nil
	dead.mu.Unlock()

	for _, tc := range []struct {
		takeover bool
		want     bool
	}{{false, false}, {true, true}} {
		if tc.takeover {
			// The fresh table of the first case took the address: put it back.
			again := installBare(t, n, Config{Block: true})
			if err := again.Allow([]netip.Addr{testnet.Host4(30), testnet.Host6(30)}, []uint16{443}, time.Minute); err != nil {
				t.Fatal(err)
			}
			again.mu.Lock()
			_ = again.conn.CloseLasting()
			again.conn = nil
			again.mu.Unlock()
		}
		fw := installBare(t, n, Config{Block: true, Takeover: tc.takeover})
		for _, url := range []string{"https://198.18.1.30/", "https://[2001:db8:1::1e]/"} {
			if ok, _ := curl(n, url); ok != tc.want {
				t.Errorf("takeover %v: curl %s ok=%v, want %v", tc.takeover, url, ok, tc.want)
			}
		}
		if !tc.takeover {
			continue
		}
		out, err := n.In(n.Runner, "nft", "list", "set", "inet", DefaultTable, setDyn4).CombinedOutput()
		if err != nil {
			t.Fatalf("nft list set: %v %s", err, out)
		}
		m := regexp.MustCompile(`198\.18\.1\.30 \. 443 timeout (\d+)s`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("the element's timeout is not what was left of it:\n%s", out)
		}
		if s, _ := strconv.Atoi(string(m[1])); s > 60 || s < 50 {
			t.Errorf("carried-over timeout %ds, want what was left of 60s", s)
		}
		// Ours now: Restore keeps it too.
		if err := fw.Restore(); err != nil {
			t.Fatal(err)
		}
		if ok, _ := curl(n, "https://198.18.1.30/"); !ok {
			t.Error("carried-over address refused after Restore")
		}
	}
}

// installBare is install without a gate: denied flows find no reader on
// the queue and are dropped, as while the agent is down.
func installBare(t *testing.T, n *testnet.Net, cfg Config) *Firewall {
	t.Helper()
	f, err := os.Open(filepath.Join("/var/run/netns", n.Runner))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cfg.NetNS, cfg.ResolverPort = int(f.Fd()), 153
	fw, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := fw.Install(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fw.Remove() })
	return fw
}
