package bridgenet

import (
	"context"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inNewNetns runs the test on a thread of its own in a fresh network
// namespace (never the machine's), which ends with it.
func inNewNetns(t *testing.T) *netlink.Handle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces")
	}
	runtime.LockOSThread() // never unlocked: the thread exits with the test's goroutine
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func addLink(t *testing.T, h *netlink.Handle, l netlink.Link, master string, addrs ...string) {
	t.Helper()
	if err := h.LinkAdd(l); err != nil {
		t.Fatalf("add %s: %v", l.Attrs().Name, err)
	}
	if master != "" {
		m, err := h.LinkByName(master)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetMaster(l, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range addrs {
		ad, err := netlink.ParseAddr(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.AddrAdd(l, ad); err != nil {
			t.Fatalf("address %s on %s: %v", a, l.Attrs().Name, err)
		}
	}
}

func bridgeLink(name string) netlink.Link {
	return &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
}

// TestScan: only bridges named like docker's, with veth ports only, give
// their subnets; a link that only has the name, a bridge with another
// kind of port, an address wider than a docker network are each noted.
func TestScan(t *testing.T) {
	h := inNewNetns(t)
	addLink(t, h, bridgeLink("docker0"), "", "172.17.0.1/16", "fd00:17::1/64")
	addLink(t, h, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vethc"}, PeerName: "vethp"}, "docker0")
	addLink(t, h, bridgeLink("br-0123456789ab"), "", "172.18.0.1/16")
	addLink(t, h, bridgeLink("br-uplink"), "", "198.19.7.1/24")
	addLink(t, h, &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: "eth9"}}, "br-uplink")
	addLink(t, h, &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: "br-x"}}, "", "198.19.8.1/24")
	addLink(t, h, bridgeLink("br-wide"), "", "4.0.0.1/6", "192.168.9.1/24")
	addLink(t, h, bridgeLink("virbr0"), "", "192.168.122.1/24")

	nets, notes, err := Scan(h)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("172.17.0.0/16"), netip.MustParsePrefix("172.18.0.0/16"),
		netip.MustParsePrefix("192.168.9.0/24"), netip.MustParsePrefix("fd00:17::/64")}
	if !slices.Equal(nets, want) {
		t.Errorf("nets = %v, want %v", nets, want)
	}
	for _, n := range []string{`"br-uplink" is named like one of docker's bridges but has the port "eth9" of kind ifb`,
		`"br-x" is named like one of docker's bridges but is of kind ifb`,
		`bridge "br-wide" has the address 4.0.0.1/6, wider than /8`} {
		if !slices.ContainsFunc(notes, func(s string) bool { return strings.Contains(s, n) }) {
			t.Errorf("no note %q in %q", n, notes)
		}
	}
	if len(notes) != 3 {
		t.Errorf("notes = %q, want 3", notes)
	}
}

// TestWatch: a bridge docker adds while the watch runs reaches Set, and
// its removal too; a link renamed to look like one is noted once.
func TestWatch(t *testing.T) {
	h := inNewNetns(t)
	var mu sync.Mutex
	var sets [][]netip.Prefix
	var notes []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := Watch(ctx, Config{
		Set:  func(ps []netip.Prefix) error { mu.Lock(); sets = append(sets, ps); mu.Unlock(); return nil },
		Note: func(s string) { mu.Lock(); notes = append(notes, s); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			done := ok()
			mu.Unlock()
			if done {
				return
			}
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("%s: sets %v, notes %q", what, sets, notes)
	}
	wait("first scan", func() bool { return len(sets) == 1 && len(sets[0]) == 0 })
	addLink(t, h, bridgeLink("br-new"), "", "192.168.50.1/24")
	want := netip.MustParsePrefix("192.168.50.0/24")
	wait("new bridge", func() bool { return len(sets) > 1 && slices.Contains(sets[len(sets)-1], want) })
	l, err := h.LinkByName("br-new")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkDel(l); err != nil {
		t.Fatal(err)
	}
	wait("bridge gone", func() bool { return !slices.Contains(sets[len(sets)-1], want) })
	addLink(t, h, &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: "eth7"}}, "", "198.19.9.1/24")
	d, err := h.LinkByName("eth7")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetName(d, "docker0"); err != nil {
		t.Fatal(err)
	}
	wait("renamed", func() bool {
		return len(notes) == 1 && strings.Contains(notes[0], `"docker0" is named like one of docker's bridges but is of kind ifb`)
	})
	if err := h.LinkSetUp(d); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(notes) != 1 {
		t.Errorf("notes %q: want the one, once", notes)
	}
	if s := sets[len(sets)-1]; slices.Contains(s, netip.MustParsePrefix("198.19.9.0/24")) {
		t.Errorf("an impostor's subnet was set: %v", s)
	}
}
