package firewall

import (
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/egress/flowlog"
)

// The exemptions from the egress policy that are not destinations: TCP
// connections older than the agent, DHCP, and IPv6 neighbour discovery and
// multicast listener reports. Each is as narrow as the protocol allows, so
// that none is a way out for root in a container (nothing here is in the
// forward chain) or a raw socket on the host:
//
//   - A TCP segment without SYN that conntrack sees as new is accepted only
//     if its 4-tuple is in pre4/pre6: the connections sock_diag listed when
//     the table was installed (Config.Preexisting). Any other such segment
//     is a raw socket's forgery, or a connection from a gap in enforcement,
//     and goes to the egress policy like any new flow.
//   - DHCP only from the client's port to the server's, to the broadcast
//     address (DHCPv4) or All_DHCP_Relay_Agents_and_Servers (DHCPv6), or to
//     the lease's server (Config.DHCPServers).
//   - Packets with the resolver's mark (Config.Mark) only to the resolver's
//     upstreams (Config.Upstreams), UDP or TCP: a chain of another table
//     that sets the mark, or root setting SO_MARK on its own socket, gets
//     no further than the upstream DNS servers. The relay's connections
//     carry the mark too: in block mode they pass only to allowed
//     destinations; in audit mode to any, and each new one is logged so
//     that a marked socket not the agent's is reported (flowlog).
//   - NDP (133-136) only with hop limit 255 to a link-local or link-scope
//     multicast address, as RFC 4861 requires of every valid one; MLD (130-132,
//     143) only with hop limit 1, which no router forwards. Redirects (137)
//     are a router's message, not a host's.

// Set names of the side-door exemptions.
const (
	setPre4  = "pre4"
	setPre6  = "pre6"
	setDHCP4 = "dhcp4"
	setDHCP6 = "dhcp6"
	setUp4   = "upstream4"
	setUp6   = "upstream6"
)

// Conn is a TCP connection by its local and remote address.
type Conn struct {
	Local, Remote netip.AddrPort
}

// DHCP multicast destinations that are always allowed.
var (
	dhcp4Broadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})
	dhcp6Servers   = netip.MustParseAddr("ff02::1:2")
)

func (b *builder) addSideDoorSets() {
	var pre4, pre6 []nftables.SetElement
	seen := make(map[Conn]bool)
	for _, c := range b.cfg.Preexisting {
		l, r := c.Local.Addr().Unmap(), c.Remote.Addr().Unmap()
		c = Conn{netip.AddrPortFrom(l, c.Local.Port()), netip.AddrPortFrom(r, c.Remote.Port())}
		if !l.IsValid() || !r.IsValid() || l.Is4() != r.Is4() || seen[c] {
			continue
		}
		seen[c] = true
		key := append(concatKey(l, c.Local.Port()), concatKey(r, c.Remote.Port())...)
		if l.Is4() {
			pre4 = append(pre4, nftables.SetElement{Key: key})
		} else {
			pre6 = append(pre6, nftables.SetElement{Key: key})
		}
	}
	t4 := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService, nftables.TypeIPAddr, nftables.TypeInetService)
	t6 := nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService, nftables.TypeIP6Addr, nftables.TypeInetService)
	b.addSet(&nftables.Set{Table: b.table, Name: setPre4, KeyType: t4, Concatenation: true, Constant: true}, pre4)
	b.addSet(&nftables.Set{Table: b.table, Name: setPre6, KeyType: t6, Concatenation: true, Constant: true}, pre6)

	d4 := []nftables.SetElement{{Key: dhcp4Broadcast.AsSlice()}}
	d6 := []nftables.SetElement{{Key: dhcp6Servers.AsSlice()}}
	for _, a := range b.cfg.DHCPServers {
		if a = a.Unmap(); a.Is4() && a != dhcp4Broadcast {
			d4 = append(d4, nftables.SetElement{Key: a.AsSlice()})
		} else if a.Is6() && a != dhcp6Servers {
			d6 = append(d6, nftables.SetElement{Key: a.AsSlice()})
		}
	}
	b.addSet(&nftables.Set{Table: b.table, Name: setDHCP4, KeyType: nftables.TypeIPAddr, Constant: true}, d4)
	b.addSet(&nftables.Set{Table: b.table, Name: setDHCP6, KeyType: nftables.TypeIP6Addr, Constant: true}, d6)

	var u4, u6 []nftables.SetElement
	for _, u := range b.cfg.Upstreams {
		a := u.Addr().Unmap()
		if a.Is4() {
			u4 = append(u4, nftables.SetElement{Key: concatKey(a, u.Port())})
		} else if a.Is6() {
			u6 = append(u6, nftables.SetElement{Key: concatKey(a, u.Port())})
		}
	}
	k4 := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	k6 := nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
	b.addSet(&nftables.Set{Table: b.table, Name: setUp4, KeyType: k4, Concatenation: true, Constant: true}, u4)
	b.addSet(&nftables.Set{Table: b.table, Name: setUp6, KeyType: k6, Concatenation: true, Constant: true}, u6)
}

// resolverUpstream accepts the resolver's own marked upstream queries: to
// its upstreams only, or, with no Config.Upstreams, anywhere (the firewall's
// own tests).
func (b *builder) resolverUpstream(ch *nftables.Chain) {
	mark := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(b.cfg.Mark)},
	}
	accept := verdict(expr.VerdictAccept)
	if len(b.cfg.Upstreams) == 0 {
		b.rule(ch, mark, accept)
		return
	}
	// The marked packets' rules in a chain of their own, jumped to once:
	// every other packet the chain sees then pays one mark test, not one
	// per rule. What the sub-chain does not accept returns here.
	up := b.c.AddChain(&nftables.Chain{Name: chainMarked, Table: b.table})
	b.rule(ch, mark, jump(up.Name))
	for _, f := range []struct {
		fam       byte
		off, n, r uint32
		set       string
	}{{unix.NFPROTO_IPV4, 16, 4, 9, setUp4}, {unix.NFPROTO_IPV6, 24, 16, 2, setUp6}} {
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			b.rule(up, meta(expr.MetaKeyNFPROTO), eq([]byte{f.fam}), meta(expr.MetaKeyL4PROTO), eq([]byte{proto}), []expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.off, Len: f.n},
				&expr.Payload{DestRegister: f.r, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Lookup{SourceRegister: 1, SetName: f.set, SetID: b.sets[f.set].ID},
			}, accept)
		}
	}
	b.relayUpstream(up, nil)
}

// chainMarked holds the rules for packets with the resolver's mark.
const chainMarked = "marked"

// relayUpstream passes the name-checking relay's own connections (they
// carry the same mark): the relay records each flow itself, with the
// client's process, so the rules must neither log them again (as the
// agent's) nor send them back to the relay. In block mode only TCP to
// what the allow sets hold, which is all the relay dials there; in audit
// mode, where the relay dials whatever it was sent, any TCP.
func (b *builder) relayUpstream(ch *nftables.Chain, mark []expr.Any) {
	if b.cfg.RelayPort == 0 {
		return
	}
	accept := verdict(expr.VerdictAccept)
	tcp := append(meta(expr.MetaKeyL4PROTO), eq([]byte{unix.IPPROTO_TCP})...)
	if !b.cfg.Block {
		// Root can set the mark on its own socket (SO_MARK): each new
		// marked connection is logged (flowlog.MarkedPrefix), and the flow
		// log drops those whose socket is the agent's own.
		marked := []expr.Any{&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX,
			Group: b.cfg.LogGroup, Data: []byte(flowlog.MarkedPrefix)}}
		b.rule(ch, mark, tcpFlags(tcpSYN|tcpACK, tcpSYN), marked, accept)
		b.rule(ch, mark, tcp, accept)
		return
	}
	for _, f := range []struct {
		fam  byte
		sets []string
	}{{unix.NFPROTO_IPV4, []string{setDyn4, setNet4}}, {unix.NFPROTO_IPV6, []string{setDyn6, setNet6}}} {
		for _, set := range f.sets {
			b.rule(ch, mark, tcp, daddrPort(f.fam), b.lookup(set, false), accept)
		}
	}
}

// preexisting accepts a TCP segment without SYN in a new conntrack entry
// when it belongs to a connection that was open when the table went in
// (conntrack, if nothing used it before, picks such connections up
// mid-stream).
func (b *builder) preexisting(ch *nftables.Chain) {
	accept := verdict(expr.VerdictAccept)
	for _, f := range []struct {
		fam        byte
		saddr, len uint32
		set        string
	}{{unix.NFPROTO_IPV4, 12, 4, setPre4}, {unix.NFPROTO_IPV6, 8, 16, setPre6}} {
		// Registers (32-bit, from 8): saddr, sport, daddr, dport, as the
		// set's concatenated key lays them out.
		r := uint32(8)
		sport := r + f.len/4
		daddr := sport + 1
		dport := daddr + f.len/4
		load := []expr.Any{
			&expr.Payload{DestRegister: r, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddr, Len: f.len},
			&expr.Payload{DestRegister: sport, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
			&expr.Payload{DestRegister: daddr, Base: expr.PayloadBaseNetworkHeader, Offset: f.saddr + f.len, Len: f.len},
			&expr.Payload{DestRegister: dport, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: r, SetName: f.set, SetID: b.sets[f.set].ID},
		}
		b.rule(ch, meta(expr.MetaKeyNFPROTO), eq([]byte{f.fam}), tcpFlags(tcpSYN, 0), ctNew(), load, accept)
	}
}

// linkHousekeeping accepts DHCP, NDP and MLD as narrowly as they are sent
// (see the comment at the top of this file). Output chain only.
func (b *builder) linkHousekeeping(ch *nftables.Chain) {
	accept := verdict(expr.VerdictAccept)
	udpPorts := func(sport, dport uint16) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: append(be16(sport), be16(dport)...)},
		}
	}
	lookupDaddr := func(off, n uint32, set string) []expr.Any {
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Lookup{SourceRegister: 1, SetName: set, SetID: b.sets[set].ID},
		}
	}
	b.rule(ch, meta(expr.MetaKeyNFPROTO), eq([]byte{unix.NFPROTO_IPV4}), udpPorts(68, 67), lookupDaddr(16, 4, setDHCP4), accept)
	b.rule(ch, meta(expr.MetaKeyNFPROTO), eq([]byte{unix.NFPROTO_IPV6}), udpPorts(546, 547), lookupDaddr(24, 16, setDHCP6), accept)

	icmp6 := func(from, to byte, hoplimit byte) []expr.Any {
		return []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 7, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{hoplimit}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
			&expr.Range{Op: expr.CmpOpEq, Register: 1, FromData: []byte{from}, ToData: []byte{to}},
		}
	}
	for _, p := range []netip.Prefix{netip.MustParsePrefix("fe80::/10"), netip.MustParsePrefix("ff02::/16")} {
		b.rule(ch, icmp6(133, 136, 255), daddr6In(p), accept)
	}
	b.rule(ch, icmp6(130, 132, 1), accept)
	b.rule(ch, icmp6(143, 143, 1), accept)
}

// daddr6In matches an IPv6 destination inside p.
func daddr6In(p netip.Prefix) []expr.Any {
	mask := make([]byte, 16)
	for i := range p.Bits() {
		mask[i/8] |= 1 << (7 - i%8)
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16, Mask: mask, Xor: make([]byte, 16)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: p.Masked().Addr().AsSlice()},
	}
}
