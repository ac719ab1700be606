package resolver

import (
	"encoding/binary"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/harden-runner/harden-runner/egress/policy"
)

// wireQuery builds an A query for the name made of labels, byte for byte
// as the wire carries it (no text form in between, so a label may hold a
// dot, NUL, a space or be longer than 63 bytes).
func wireQuery(id uint16, labels []string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD, one question
	for _, l := range labels {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, dns.TypeA), dns.ClassINET)
}

// TestWireNamesNeverLeave sends names whose labels no host name has under
// an allowed wildcard: each is refused (NXDOMAIN, or FORMERR when the
// message is not even valid DNS) and the upstream never hears of it.
func TestWireNamesNeverLeave(t *testing.T) {
	up := startUpstream(t, 0)
	h := newHarness(t, policy.Block, "*.allowed.test:443", up.addr)
	c, err := net.Dial("udp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, labels := range [][]string{
		{"x.allowed", "test"}, // one label under test: the escaped-dot attack
		{"x.y", "allowed", "test"},
		{"a\x00", "allowed", "test"},
		{"a b", "allowed", "test"},
		{"a\\", "allowed", "test"},
		{"*", "allowed", "test"},
		// A length byte of 64 or more is no label at all (0x40 and up are
		// pointer and extended label types): the query is dropped unanswered.
		{strings.Repeat("a", 64), "allowed", "test"},
	} {
		unparsable := len(labels[0]) > 63
		if _, err := c.Write(wireQuery(uint16(i+1), labels)); err != nil {
			t.Fatal(err)
		}
		wait := 3 * time.Second
		if unparsable {
			wait = 300 * time.Millisecond // how long silence counts as no answer
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil && unparsable {
			continue
		}
		if err != nil {
			t.Fatalf("%q: no answer: %v", labels, err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil {
			t.Fatalf("%q: answer: %v", labels, err)
		}
		if m.Rcode != dns.RcodeNameError && m.Rcode != dns.RcodeFormatError {
			t.Errorf("%q: rcode %s, want NXDOMAIN", labels, dns.RcodeToString[m.Rcode])
		}
	}
	// A valid name under the wildcard still goes out (so the check above can fail).
	if resp := query(t, "udp", h.addr, "ok.allowed.test.", dns.TypeA, 0); resp == nil {
		t.Fatal("no answer")
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	for name := range up.asked {
		if name != "ok.allowed.test." {
			t.Errorf("upstream was asked %q", name)
		}
	}
	if up.asked["ok.allowed.test."] == 0 {
		t.Error("the valid name never reached the upstream")
	}
}

// FuzzWireName checks the whole path a query name takes (wire bytes,
// miekg/dns's text form, canonical, Policy.Ports) against a reference on
// the wire labels: only names of host-name labels match, label by label.
func FuzzWireName(f *testing.F) {
	f.Add("x.allowed", "test", "")
	f.Add("x", "allowed", "test")
	f.Add("a\x00", "allowed", "test")
	f.Add("A-b_c", "Allowed", "TEST")
	f.Add("a\\", "allowed", "test")
	eps, _ := policy.ParseEndpoints("*.allowed.test:443 allowed.test:80 *.test:8443 x.allowed.test:22")
	p := policy.New(policy.Block, eps, false)
	f.Fuzz(func(t *testing.T, l1, l2, l3 string) {
		var labels []string
		for _, l := range []string{l1, l2, l3} {
			if l == "" {
				break
			}
			if len(l) > 63 {
				return // not packable; the wire has no longer labels
			}
			labels = append(labels, l)
		}
		m := new(dns.Msg)
		if err := m.Unpack(wireQuery(1, labels)); err != nil || len(m.Question) != 1 {
			return
		}
		got, _ := p.Ports(canonical(m.Question[0].Name))
		if want := referenceWirePorts(labels); !slices.Equal(got, want) {
			t.Fatalf("labels %q (text %q): Ports = %v, want %v", labels, m.Question[0].Name, got, want)
		}
	})
}

// referenceWirePorts answers for the policy of FuzzWireName by comparing labels.
func referenceWirePorts(labels []string) []uint16 {
	for _, l := range labels {
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return nil
			}
		}
	}
	lower := make([]string, len(labels))
	for i, l := range labels {
		lower[i] = strings.ToLower(l)
	}
	var out []uint16
	n := len(lower)
	under := func(d ...string) bool { return n > len(d) && slices.Equal(lower[n-len(d):], d) }
	if under("allowed", "test") {
		out = append(out, 443)
	}
	if slices.Equal(lower, []string{"allowed", "test"}) {
		out = append(out, 80)
	}
	if under("test") {
		out = append(out, 8443)
	}
	if slices.Equal(lower, []string{"x", "allowed", "test"}) {
		out = append(out, 22)
	}
	slices.Sort(out)
	return out
}
