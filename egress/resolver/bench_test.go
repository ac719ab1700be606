package resolver

import (
	"encoding/json"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/event"
)

// BenchmarkCachedQuery is one client asking a cached allowed name over UDP,
// with events encoded as the journal does. Compare with bench/dns.sh for
// the whole path (nftables redirect, dnsperf, dnsmasq side by side).
func BenchmarkCachedQuery(b *testing.B) {
	t := &testing.T{}
	up := startUpstream(t, 0)
	eps, _ := policy.ParseEndpoints("allowed.test:443")
	enc := json.NewEncoder(io.Discard)
	r, err := New(Config{
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Upstreams: []netip.AddrPort{up.addr},
		Policy:    policy.New(policy.Block, eps, false),
		Allow:     func([]netip.Addr, []uint16, time.Duration) error { return nil },
		Owner: func(string, netip.AddrPort, netip.AddrPort) event.Process {
			return event.Process{PID: 1, Exe: "/usr/bin/x"}
		},
		Emit: func(rec event.Record) { _ = enc.Encode(rec) },
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := r.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	defer up.stop()
	c, err := dns.Dial("udp", r.Addrs()[0].String())
	if err != nil {
		b.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeA)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := c.WriteMsg(m); err != nil {
			b.Fatal(err)
		}
		if _, err := c.ReadMsg(); err != nil {
			b.Fatal(err)
		}
	}
}
