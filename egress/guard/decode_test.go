package guard

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/event"
)

// msg builds an nf_tables notification of type typ for family fam.
func msg(t testing.TB, typ uint16, fam uint8, enc func(*netlink.AttributeEncoder)) netlink.Message {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	enc(ae)
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ)},
		Data: append([]byte{fam, 0, 0, 0}, b...)}
}

func TestDecode(t *testing.T) {
	cases := []struct {
		name string
		m    netlink.Message
		want string
	}{
		{"delete table", msg(t, unix.NFT_MSG_DELTABLE, unix.NFPROTO_INET, func(ae *netlink.AttributeEncoder) {
			ae.String(unix.NFTA_TABLE_NAME, "harden_runner")
		}), "delete table inet harden_runner"},
		{"flushed set", msg(t, unix.NFT_MSG_DELSETELEM, unix.NFPROTO_INET, func(ae *netlink.AttributeEncoder) {
			ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, "harden_runner")
			ae.String(unix.NFTA_SET_ELEM_LIST_SET, "dyn4")
		}), "delete element inet harden_runner dyn4"},
		{"base chain", msg(t, unix.NFT_MSG_NEWCHAIN, unix.NFPROTO_IPV4, func(ae *netlink.AttributeEncoder) {
			ae.String(unix.NFTA_CHAIN_TABLE, "evil")
			ae.String(unix.NFTA_CHAIN_NAME, "out")
			ae.Nested(unix.NFTA_CHAIN_HOOK, func(ne *netlink.AttributeEncoder) error {
				ne.Uint32(unix.NFTA_HOOK_HOOKNUM, unix.NF_INET_LOCAL_OUT)
				ne.Int32(unix.NFTA_HOOK_PRIORITY, -150)
				return nil
			})
		}), "add chain ip evil out (hook output priority -150)"},
		{"rule", msg(t, unix.NFT_MSG_NEWRULE, unix.NFPROTO_INET, func(ae *netlink.AttributeEncoder) {
			ae.String(unix.NFTA_RULE_TABLE, "harden_runner")
			ae.String(unix.NFTA_RULE_CHAIN, "output")
		}), "add rule inet harden_runner output"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch, gen, err := decode(c.m)
			if err != nil || gen != nil || ch.String() != c.want {
				t.Fatalf("decode: %q, gen %v, err %v; want %q", ch.String(), gen, err, c.want)
			}
		})
	}
	_, gen, err := decode(msg(t, unix.NFT_MSG_NEWGEN, 0, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.NFTA_GEN_ID, 7)
		ae.Uint32(unix.NFTA_GEN_PROC_PID, 4242)
		ae.String(unix.NFTA_GEN_PROC_NAME, "nft")
	}))
	if err != nil || gen == nil || gen.PID != 4242 || gen.Comm != "nft" {
		t.Fatalf("NEWGEN: %+v %v", gen, err)
	}
	if _, _, err := decode(netlink.Message{Header: netlink.Header{Type: 1 << 8}}); err != errNotNFT {
		t.Errorf("another subsystem's message: %v, want errNotNFT", err)
	}
}

// TestCommitJudgement: which commits are tampering, without a kernel.
func TestCommitJudgement(t *testing.T) {
	ours := Change{Object: "table", Family: "inet", Table: "harden_runner"}
	early := Change{Add: true, Object: "chain", Family: "ip", Table: "x", Name: "c", Base: true, Hook: unix.NF_INET_LOCAL_OUT, Priority: -1}
	late := early
	late.Priority = 0
	other := Change{Add: true, Object: "table", Family: "inet", Table: "docker"}
	cases := []struct {
		name      string
		c         Commit
		tampered  int
		restores  int
		selfCheck bool
	}{
		{"other process deletes ours", Commit{PID: 2, Changes: []Change{ours}}, 1, 1, false},
		{"our own commit", Commit{PID: 1, Changes: []Change{ours}}, 0, 0, true},
		// The agent in a pid namespace: the kernel's pid is not ours, the
		// netlink port of our own socket is.
		{"our own socket from a pid namespace", Commit{PID: 7, PortID: 4242, Changes: []Change{ours}}, 0, 0, true},
		{"another socket, a pid not ours", Commit{PID: 7, PortID: 99, Changes: []Change{ours}}, 1, 1, false},
		{"early foreign chain", Commit{PID: 2, Changes: []Change{early}}, 1, 0, false},
		// Added while we run, at our priority: the kernel runs it first.
		{"same-priority foreign chain", Commit{PID: 2, Changes: []Change{late}}, 1, 0, false},
		{"unrelated table", Commit{PID: 2, Changes: []Change{other}}, 0, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var restores, notes int
			g, err := New(Config{Table: "harden_runner", Hooks: []Hook{{unix.NF_INET_LOCAL_OUT, 0}},
				Restore: func() error { restores++; return nil }, Emit: func(rec event.Record) { notes++ },
				Process: func(int) event.Process { return event.Process{} }, isSelf: func(tid int) bool { return tid == 1 },
				OwnPort: func(p uint32) bool { return p == 4242 }})
			if err != nil {
				t.Fatal(err)
			}
			g.commit(c.c, time.Now())
			if g.Tampered() != c.tampered || restores != c.restores || notes != c.tampered {
				t.Errorf("tampered %d, restores %d, notes %d; want %d, %d, %d", g.Tampered(), restores, notes, c.tampered, c.restores, c.tampered)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(uint16(unix.NFT_MSG_NEWCHAIN), []byte{2, 0, 0, 0, 8, 0, 1, 0, 'e', 'v', 'i', 0})
	f.Add(uint16(unix.NFT_MSG_NEWGEN), []byte{0, 0, 0, 0, 8, 0, 2, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, typ uint16, data []byte) {
		m := netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ&0xff)}, Data: data}
		ch, gen, err := decode(m)
		if err == nil && gen == nil {
			_ = ch.String()
		}
	})
}
