package resolver

import (
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/event"
)

// FuzzUDPQuery feeds any datagram to the UDP loop's handler, as a client
// on the machine could: block mode with nothing allowed, so every query is
// answered at once (no upstream). An answer, when there is one, must be a
// DNS message with the query's ID that refuses the name.
func FuzzUDPQuery(f *testing.F) {
	q := new(dns.Msg)
	q.SetQuestion("exfil.example.", dns.TypeTXT)
	b, _ := q.Pack()
	f.Add(b)
	q.SetEdns0(4096, true)
	b, _ = q.Pack()
	f.Add(b)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	r, err := New(Config{
		Policy:    policy.New(policy.Block, nil, false),
		Upstreams: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.53:53")},
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Emit:      func(event.Record) {},
	})
	if err != nil {
		f.Fatal(err)
	}
	s := &udpServer{r: r}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := &ipv4.Message{Buffers: [][]byte{data}, N: len(data), Addr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}}
		w := s.handle(m)
		if w == nil || w.reply == nil {
			return
		}
		var req, resp dns.Msg
		if err := req.Unpack(data); err != nil {
			t.Fatalf("answered a datagram that is not DNS: %x", data)
		}
		if err := resp.Unpack(w.reply); err != nil {
			t.Fatalf("answer does not unpack: %v", err)
		}
		if resp.Id != req.Id || !resp.Response {
			t.Fatalf("answer id %d response %v, query id %d", resp.Id, resp.Response, req.Id)
		}
		if resp.Rcode == dns.RcodeSuccess && len(resp.Answer) > 0 {
			t.Fatalf("a refused policy answered %v", resp.Answer)
		}
	})
}

// TestUDPShedsWhenUpstreamSlotsAreFull: with every upstream slot taken, a
// query that needs the upstream gets SERVFAIL at once (no goroutine, no
// upstream), and the journal says so once.
func TestUDPShedsWhenUpstreamSlotsAreFull(t *testing.T) {
	var notes []string
	r, err := New(Config{
		Policy:    policy.New(policy.Audit, nil, false),
		Upstreams: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.53:53")},
		Listen:    []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Emit: func(rec event.Record) {
			if rec.Note != nil {
				notes = append(notes, rec.Note.Message)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	for range cap(r.upstreamSlots) {
		r.upstreamSlots <- struct{}{}
	}
	s := &udpServer{r: r}
	for i := range 2 {
		q := new(dns.Msg)
		q.SetQuestion("new-name.example.", dns.TypeA)
		q.Id = uint16(100 + i)
		b, _ := q.Pack()
		w := s.handle(&ipv4.Message{Buffers: [][]byte{b}, N: len(b), Addr: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5353}})
		if w == nil || w.reply == nil {
			t.Fatal("no answer at once")
		}
		var resp dns.Msg
		if err := resp.Unpack(w.reply); err != nil || resp.Rcode != dns.RcodeServerFailure || resp.Id != q.Id {
			t.Fatalf("answer %v (rcode %d id %d), want SERVFAIL with id %d", err, resp.Rcode, resp.Id, q.Id)
		}
	}
	if len(notes) != 1 || r.shed.Load() != 2 {
		t.Errorf("notes %q, shed %d; want one note, 2 shed", notes, r.shed.Load())
	}
}
