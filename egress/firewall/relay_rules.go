package firewall

import (
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The name-checking relay's rules (egress/relay), kept apart from the rest
// of the ruleset:
//
//	relay_out (nat, hook output): not our mark, not to a local interface ->
//	        relay
//	relay_pre (nat, hook prerouting): arriving from docker's bridges -> relay
//	relay:  TCP only; not port 53 (the DNS redirect's); address·port in an
//	        address/CIDR entry (net4/net6) -> untouched; block mode: address·port
//	        the resolver allowed (dyn4/dyn6) -> redirect to the relay (what is
//	        not allowed at all goes on to the gate as before); audit mode: any
//	        port a name entry names (relayports) -> redirect
//	quic (jumped to by output and forward for UDP; block mode): new UDP
//	        to port 443 not in an address/CIDR entry -> deny, so HTTP/3
//	        clients fall back to TCP, where the relay checks the name
//	input:  the relay's port only from loopback and docker's bridges
const (
	chainRelay = "relay"
	setRelayP  = "relayports"
)

// relayChains adds the relay's chains when cfg.RelayPort is set.
func (b *builder) relayChains() {
	if b.cfg.RelayPort == 0 {
		return
	}
	var ports []nftables.SetElement
	for _, p := range b.cfg.RelayPorts {
		ports = append(ports, nftables.SetElement{Key: be16(p)})
	}
	b.addSet(&nftables.Set{Table: b.table, Name: setRelayP, Constant: true, KeyType: nftables.TypeInetService}, ports)

	ret := verdict(expr.VerdictReturn)
	relay := b.c.AddChain(&nftables.Chain{Name: chainRelay, Table: b.table})
	b.rule(relay, meta(expr.MetaKeyL4PROTO), neq([]byte{unix.IPPROTO_TCP}), ret)
	b.rule(relay, dport(), eq(be16(53)), ret)
	b.rule(relay, daddrPort(unix.NFPROTO_IPV4), b.lookup(setNet4, false), ret)
	b.rule(relay, daddrPort(unix.NFPROTO_IPV6), b.lookup(setNet6, false), ret)
	redirect := []expr.Any{
		&expr.Immediate{Register: 1, Data: be16(b.cfg.RelayPort)},
		&expr.Redir{RegisterProtoMin: 1},
	}
	if b.cfg.Block {
		b.rule(relay, daddrPort(unix.NFPROTO_IPV4), b.lookup(setDyn4, false), redirect)
		b.rule(relay, daddrPort(unix.NFPROTO_IPV6), b.lookup(setDyn6, false), redirect)
	} else {
		b.rule(relay, dport(), b.lookup(setRelayP, false), redirect)
	}

	out := b.c.AddChain(&nftables.Chain{Name: "relay_out", Table: b.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: natPriority()})
	b.rule(out, meta(expr.MetaKeyMARK), eq(binaryutil.NativeEndian.PutUint32(b.cfg.Mark)), ret)
	b.rule(out, loopback(expr.MetaKeyOIF), ret)
	for _, name := range bridgeNames {
		b.rule(out, bridge(false, name), ret)
	}
	b.rule(out, jump(chainRelay))
	pre := b.c.AddChain(&nftables.Chain{Name: "relay_pre", Table: b.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: natPriority()})
	for _, name := range bridgeNames {
		b.rule(pre, bridge(true, name), jump(chainRelay))
	}

}

// quicChain adds the chain that refuses QUIC where the relay checks names
// (block mode with a relay; otherwise nil): output and forward jump to it
// for UDP, after their fast paths for established flows.
//
// It was a base chain of its own on each hook, just before output and
// forward: every packet of every protocol then ran one more hook, and TCP
// packets do not need it.
func (b *builder) quicChain(deny *nftables.Chain) *nftables.Chain {
	if b.cfg.RelayPort == 0 || !b.cfg.Block {
		return nil
	}
	ret := verdict(expr.VerdictReturn)
	ch := b.c.AddChain(&nftables.Chain{Name: "quic", Table: b.table})
	b.rule(ch, meta(expr.MetaKeyMARK), eq(binaryutil.NativeEndian.PutUint32(b.cfg.Mark)), ret)
	b.rule(ch, loopback(expr.MetaKeyOIF), ret)
	for _, name := range bridgeNames {
		b.rule(ch, bridge(false, name), ret)
	}
	b.rule(ch, dport(), neq(be16(443)), ret)
	b.rule(ch, daddrPort(unix.NFPROTO_IPV4), b.lookup(setNet4, false), ret)
	b.rule(ch, daddrPort(unix.NFPROTO_IPV6), b.lookup(setNet6, false), ret)
	// The gate gives a denied packet back with the reject mark and
	// NF_REPEAT, which re-runs the base chain: output's or forward's first
	// rule rejects it then.
	b.rule(ch, ctNew(), []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: deny.Name}})
	return ch
}

// jumpQUIC sends ch's UDP packets through quic (nil: none).
func (b *builder) jumpQUIC(ch, quic *nftables.Chain) {
	if quic == nil {
		return
	}
	b.rule(ch, meta(expr.MetaKeyL4PROTO), eq([]byte{unix.IPPROTO_UDP}), jump(quic.Name))
}

// relayInput keeps the relay's port to loopback and docker's bridges (the
// input chain has accepted those by then).
func (b *builder) relayInput(in *nftables.Chain) {
	if b.cfg.RelayPort == 0 {
		return
	}
	b.rule(in, meta(expr.MetaKeyL4PROTO), eq([]byte{unix.IPPROTO_TCP}), dport(), eq(be16(b.cfg.RelayPort)),
		verdict(expr.VerdictDrop))
}

func neq(data []byte) []expr.Any {
	return []expr.Any{&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: data}}
}

// daddrPort loads destination address . destination port for a lookup in
// an address·port set, matching only family fam.
func daddrPort(fam byte) []expr.Any {
	if fam == unix.NFPROTO_IPV4 {
		return append(meta(expr.MetaKeyNFPROTO), append(eq([]byte{fam}),
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})...)
	}
	return append(meta(expr.MetaKeyNFPROTO), append(eq([]byte{fam}),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		&expr.Payload{DestRegister: 2, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})...)
}

func (b *builder) lookup(set string, invert bool) []expr.Any {
	return []expr.Any{&expr.Lookup{SourceRegister: 1, SetName: set, SetID: b.sets[set].ID, Invert: invert}}
}
