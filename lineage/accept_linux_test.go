package lineage

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/egress/packet"
	"github.com/harden-runner/harden-runner/internal/testnet"
	"golang.org/x/sys/unix"
)

// testAcceptMark is not the agent's bit (firewall.AcceptMarkBit): the
// egress programs are attached machine-wide, and an agent another
// package's test runs at the same time clears its bit on every packet
// and records it in its own ring, so with a shared bit this test's
// tracker lost records whenever the suite ran in parallel.
const testAcceptMark = 0x0200_0000

// acceptsForTest collects what tr hands to OnAccept.
type acceptsForTest struct {
	mu  sync.Mutex
	got []packet.Accept
}

func (a *acceptsForTest) add(b []packet.Accept) {
	a.mu.Lock()
	a.got = append(a.got, b...)
	a.mu.Unlock()
}

// to returns the records to dst, draining tr first.
func (a *acceptsForTest) to(tr *Tracker, dst netip.AddrPort) []packet.Accept {
	tr.Drain()
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []packet.Accept
	for _, r := range a.got {
		if r.Dst == dst {
			out = append(out, r)
		}
	}
	return out
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
}

// counted is the packet count of the named counter of the netdev table
// accepttest_dev.
func counted(t *testing.T, name string) int {
	t.Helper()
	out, err := exec.Command("nft", "list", "counter", "netdev", "accepttest_dev", name).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list counter %s: %v: %s", name, err, out)
	}
	m := regexp.MustCompile(`packets (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no packet count in:\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestAcceptMark: packets a firewall rule marked with the accept bit (the
// agent's "allowed" rule) reach the ring with their addresses, ports and
// TCP's ISN, once per packet that left (a retransmitted SYN again, with
// the same ISN), from a process that exited at once too; the bit is gone
// by the time the packet reaches the device (a netdev egress counter of
// it counts nothing, while one of another mark bit the sender set itself
// counts its packets); unmarked packets are not recorded.
func TestAcceptMark(t *testing.T) {
	tr := startConfigForTest(t, Config{AcceptMark: testAcceptMark})
	if tr.AcceptMark() != testAcceptMark {
		t.Fatalf("AcceptMark() = %#x", tr.AcceptMark())
	}
	var acc acceptsForTest
	tr.OnAccept(acc.add)

	short := netip.AddrPortFrom(testnet.Host4(70), 7070)    // a sender that exits at once
	silent := netip.AddrPortFrom(testnet.Host4(71), 7071)   // no answer: the SYN is sent again
	udp6 := netip.AddrPortFrom(testnet.Host6(72), 7072)     // a datagram, IPv6
	unmarked := netip.AddrPortFrom(testnet.Host4(73), 7073) // no rule marks it
	// The netdev egress chain runs after the cgroup hook: accbit counts
	// packets still carrying the accept bit, own those carrying 0x4000
	// (the silent dial sets it itself), and what goes to silent is
	// dropped there, so that its SYN is sent again.
	rules := fmt.Sprintf(`table inet accepttest {
	chain out {
		type filter hook output priority 0; policy accept;
		ip daddr { %s, %s } tcp flags syn / syn,ack meta mark set meta mark | %#x
		ip6 daddr %s udp dport %d meta mark set meta mark | %#x
	}
}
table netdev accepttest_dev {
	counter accbit {}
	counter own {}
	chain e {
		type filter hook egress device "veth0" priority 0; policy accept;
		meta mark & %#x == %#x counter name "accbit"
		meta mark & 0x4000 == 0x4000 counter name "own"
		ip daddr %s drop
	}
}
`, short.Addr(), silent.Addr(), testAcceptMark, udp6.Addr(), udp6.Port(), testAcceptMark,
		testAcceptMark, testAcceptMark, silent.Addr())
	f := t.TempDir() + "/rules.nft"
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "nft", "-f", f)
	t.Cleanup(func() {
		_ = exec.Command("nft", "delete", "table", "inet", "accepttest").Run()
		_ = exec.Command("nft", "delete", "table", "netdev", "accepttest_dev").Run()
	})

	helper := helperForTest(t)
	cmd := exec.Command(helper)
	cmd.Env = append(os.Environ(), "LINEAGE_SEND=tcp,"+short.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sender: %v: %s", err, out)
	}

	// The SYN is sent again after 1 s: 2.5 s leaves room for it on a loaded
	// machine (1.5 s did not under the whole suite).
	d := net.Dialer{Timeout: 2500 * time.Millisecond, Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, 0x4000) }); err != nil {
			return err
		}
		return serr
	}}
	if c, err := d.Dial("tcp4", silent.String()); err == nil {
		c.Close()
		t.Fatalf("dial %v: answered", silent)
	}
	u, err := net.Dial("udp6", udp6.String())
	if err != nil {
		t.Fatal(err)
	}
	u.Write([]byte("x"))
	u.Close()
	if c, err := net.DialTimeout("tcp4", unmarked.String(), 200*time.Millisecond); err == nil {
		c.Close()
	}

	deadline := time.Now().Add(5 * time.Second)
	for len(acc.to(tr, short)) < 1 || len(acc.to(tr, silent)) < 2 || len(acc.to(tr, udp6)) < 1 {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := acc.to(tr, short); len(got) != 1 || got[0].Proto != unix.IPPROTO_TCP || got[0].Src.Addr() != testnet.Runner4 ||
		got[0].Src.Port() == 0 || got[0].UID != 65534 || got[0].ISN == 0 {
		t.Errorf("short-lived sender's SYN: %+v; want one TCP record from %v, uid 65534, an ISN", got, testnet.Runner4)
	}
	if got := acc.to(tr, silent); len(got) < 2 || got[0].ISN != got[1].ISN || got[0].Src != got[1].Src || got[1].At <= got[0].At {
		t.Errorf("retransmitted SYN: %+v; want two or more records, same source and ISN, later times", got)
	}
	if got := acc.to(tr, udp6); len(got) != 1 || got[0].Proto != unix.IPPROTO_UDP || got[0].Src.Addr() != testnet.Runner6 {
		t.Errorf("UDP over IPv6: %+v; want one UDP record from %v", got, testnet.Runner6)
	}
	if got := acc.to(tr, unmarked); len(got) != 0 {
		t.Errorf("unmarked SYN recorded: %+v", got)
	}
	if n := counted(t, "accbit"); n != 0 {
		t.Errorf("%d packets reached the device with the accept bit still set", n)
	}
	if n := counted(t, "own"); n < 2 {
		t.Errorf("the counter of the sender's own mark bit counted %d packets, want its SYNs (the test cannot see marks)", n)
	}
}
