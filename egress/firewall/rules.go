package firewall

import (
	"encoding/binary"
	"iter"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/egress/flowlog"
	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/event"
)

// Set and chain names inside our table.
const (
	setDyn4  = "dyn4"
	setDyn6  = "dyn6"
	setNet4  = "net4"
	setNet6  = "net6"
	setL4    = "l4ports" // protocols with ports: tcp, udp, sctp, udplite
	chainOut = "output"
	chainFwd = "forward"
)

// builder queues the whole ruleset on one nftables.Conn; the caller flushes.
type builder struct {
	c       *nftables.Conn
	cfg     Config
	table   *nftables.Table
	sets    map[string]*nftables.Set
	bridges []netip.Prefix // docker's bridges' subnets (Firewall.SetBridgeNets)
}

// filterPriority and natPriority are our base chains' priorities: one
// below those iptables-nft and docker use (filter 0, NAT -100). Among
// chains of equal priority the kernel runs the one registered later first,
// so at equal priority a chain that a job's iptables command creates while
// we run would run ahead of ours (and the guard would report it). One
// below, it runs after ours, as the chains that were there before us
// already did; whatever runs ahead was put there on purpose.
func filterPriority() *nftables.ChainPriority {
	return nftables.ChainPriorityRef(*nftables.ChainPriorityFilter - 1)
}

func natPriority() *nftables.ChainPriority {
	return nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest - 1)
}

func newBuilder(c *nftables.Conn, cfg Config, bridges []netip.Prefix) *builder {
	return &builder{c: c, cfg: cfg, sets: make(map[string]*nftables.Set), bridges: bridges}
}

func (b *builder) build() {
	t := &nftables.Table{Name: b.cfg.Table, Family: nftables.TableFamilyINet}
	// add + delete + add: replaces a table left by an earlier run in the
	// same batch, and works whether or not one exists.
	b.c.AddTable(t)
	b.c.DelTable(t)
	b.table = b.c.AddTable(t)

	b.addSets()
	if b.cfg.AcceptMark != 0 {
		b.c.AddObj(&nftables.CounterObj{Table: b.table, Name: counterAccepted})
	}
	deny := b.denyChain("deny")
	reject := b.rejectChain()
	egress := b.egressChain("egress", false, deny)
	egressFwd := b.egressChain("egress_fwd", true, deny)
	quic := b.quicChain(deny)
	rejectMarked := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(b.cfg.RejectMark)},
		&expr.Verdict{Kind: expr.VerdictGoto, Chain: reject.Name},
	}

	accept := verdict(expr.VerdictAccept)
	prio := filterPriority()
	out := b.c.AddChain(&nftables.Chain{Name: chainOut, Table: b.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: prio})
	// First: packets the gate sent back for rejection (NF_REPEAT re-runs
	// this chain from the top).
	b.rule(out, rejectMarked)
	b.established(out, 53)
	b.jumpQUIC(out, quic)
	b.local(out, true, accept)
	// Loopback destinations by address too: a packet the nat chain
	// redirected to our resolver still shows its original oif here.
	b.rule(out, meta(expr.MetaKeyNFPROTO), eq([]byte{unix.NFPROTO_IPV4}),
		[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 1}}, eq([]byte{127}), accept)
	b.rule(out, meta(expr.MetaKeyNFPROTO), eq([]byte{unix.NFPROTO_IPV6}),
		[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16}}, eq(netip.IPv6Loopback().AsSlice()), accept)
	b.resolverUpstream(out)
	b.dnsGuard(out, deny)
	// A SYN is a new connection even when conntrack calls it established
	// (a 4-tuple reused while its old entry lingers in TIME_WAIT is taken
	// over by conntrack): decide and record it like any new flow.
	b.rule(out, tcpFlags(tcpSYN|tcpACK, tcpSYN), jump(egress.Name))
	b.rule(out, ctEstablished(), accept)
	b.preexisting(out)
	b.linkHousekeeping(out)
	b.rule(out, jump(egress.Name))

	fwd := b.c.AddChain(&nftables.Chain{Name: chainFwd, Table: b.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: prio})
	b.rule(fwd, rejectMarked)
	b.established(fwd, 53)
	b.jumpQUIC(fwd, quic)
	b.local(fwd, false, accept)
	b.dnsGuard(fwd, deny)
	b.rule(fwd, tcpFlags(tcpSYN|tcpACK, tcpSYN), jump(egressFwd.Name))
	b.rule(fwd, ctEstablished(), accept)
	// No exemption for segments without SYN here: what a container had
	// open before we started is in conntrack already (docker's NAT tracks
	// it), so a new entry without SYN is a raw socket's forgery.
	b.rule(fwd, jump(egressFwd.Name))

	nat := b.c.AddChain(&nftables.Chain{Name: "dns_out", Table: b.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: natPriority()})
	b.rule(nat, meta(expr.MetaKeyMARK), eq(binaryutil.NativeEndian.PutUint32(b.cfg.Mark)), verdict(expr.VerdictReturn))
	redirect := []expr.Any{
		&expr.Immediate{Register: 1, Data: be16(b.cfg.ResolverPort)},
		&expr.Redir{RegisterProtoMin: 1},
	}
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		b.rule(nat, meta(expr.MetaKeyL4PROTO), eq([]byte{proto}), dport(), eq(be16(53)), redirect)
	}

	// Containers: DNS arriving from docker's bridges goes to the resolver
	// too (redirect picks the bridge's own address), whatever server the
	// container asked.
	pre := b.c.AddChain(&nftables.Chain{Name: "dns_pre", Table: b.table, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: natPriority()})
	for _, name := range bridgeNames {
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			b.rule(pre, bridge(true, name), meta(expr.MetaKeyL4PROTO), eq([]byte{proto}),
				dport(), eq(be16(53)), redirect)
		}
	}
	b.relayChains()

	// The resolver listens on every address for that; only loopback and
	// the bridges may reach it.
	in := b.c.AddChain(&nftables.Chain{Name: "input", Table: b.table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: prio})
	if b.cfg.RelayPort != 0 {
		b.established(in, b.cfg.ResolverPort, b.cfg.RelayPort)
	} else {
		b.established(in, b.cfg.ResolverPort)
	}
	b.rule(in, loopback(expr.MetaKeyIIF), accept)
	for _, name := range bridgeNames {
		b.rule(in, bridge(true, name), accept)
	}
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		b.rule(in, meta(expr.MetaKeyL4PROTO), eq([]byte{proto}), dport(), eq(be16(b.cfg.ResolverPort)),
			verdict(expr.VerdictDrop))
	}
	b.relayInput(in)
}

func (b *builder) addSets() {
	l4 := &nftables.Set{Table: b.table, Name: setL4, Constant: true, KeyType: nftables.TypeInetProto}
	b.addSet(l4, []nftables.SetElement{
		{Key: []byte{unix.IPPROTO_TCP}}, {Key: []byte{unix.IPPROTO_UDP}},
		{Key: []byte{unix.IPPROTO_SCTP}}, {Key: []byte{unix.IPPROTO_UDPLITE}},
	})
	key4 := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	key6 := nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
	b.addSet(&nftables.Set{Table: b.table, Name: setDyn4, KeyType: key4, Concatenation: true, HasTimeout: true}, nil)
	b.addSet(&nftables.Set{Table: b.table, Name: setDyn6, KeyType: key6, Concatenation: true, HasTimeout: true}, nil)

	b.addRangeSet(&nftables.Set{Table: b.table, Name: setNet4, KeyType: key4, Concatenation: true, Interval: true}, familyRanges(b.cfg.Addrs, true))
	b.addRangeSet(&nftables.Set{Table: b.table, Name: setNet6, KeyType: key6, Concatenation: true, Interval: true}, familyRanges(b.cfg.Addrs, false))
	b.addSideDoorSets()
	b.addBridgeSets()
}

// addRangeSet is addSet for an interval set of ranges, whose elements are
// built one message at a time: google/nftables encodes them as they are
// queued, so only a message's worth is ever held as SetElements.
func (b *builder) addRangeSet(s *nftables.Set, rs iter.Seq[policy.AddrRange]) {
	first := true
	for chunk := range rangeChunks(rs) {
		if first {
			b.addSet(s, chunk)
			first = false
		} else if err := addElements(b.c, s, chunk); err != nil {
			panic(err.Error())
		}
	}
	if first {
		b.addSet(s, nil)
	}
}

func (b *builder) addSet(s *nftables.Set, elems []nftables.SetElement) {
	// AddSet only fails on a malformed Set, which would be a bug here; the
	// kernel's verdict on the contents comes with Flush.
	first := elems[:min(len(elems), elemsPerMsg)]
	if err := b.c.AddSet(s, first); err != nil {
		panic("firewall: set " + s.Name + ": " + err.Error())
	}
	if err := addElements(b.c, s, elems[len(first):]); err != nil {
		panic(err.Error())
	}
	b.sets[s.Name] = s
}

// denyChain hands a flow the policy does not allow to the gate's queue
// (see egress/gate), which records it with its process and gives it back:
// accepted in audit mode, marked for rejectChain in block mode. Without
// the bypass flag: if nobody reads the queue, the kernel drops the packet.
func (b *builder) denyChain(name string) *nftables.Chain {
	ch := b.c.AddChain(&nftables.Chain{Name: name, Table: b.table})
	// The xtables NFQUEUE target (struct xt_NFQ_info_v3: queue number,
	// queues total, flags; host byte order) through nft_compat, as
	// iptables-nft does: some kernels build nft_queue out (this CI's has
	// CONFIG_NFT_QUEUE unset) while xt_NFQUEUE is everywhere.
	info := xt.Unknown(binary.NativeEndian.AppendUint16(binary.NativeEndian.AppendUint16(
		binary.NativeEndian.AppendUint16(nil, b.cfg.Queue), b.cfg.Queues), 0))
	b.rule(ch, []expr.Any{&expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info}})
	return ch
}

// rejectChain answers a packet so the client fails at once: a TCP reset,
// or ICMP administratively prohibited.
func (b *builder) rejectChain() *nftables.Chain {
	ch := b.c.AddChain(&nftables.Chain{Name: "reject", Table: b.table})
	b.rule(ch, meta(expr.MetaKeyL4PROTO), eq([]byte{unix.IPPROTO_TCP}),
		[]expr.Any{&expr.Reject{Type: unix.NFT_REJECT_TCP_RST, Code: unix.NFT_REJECT_TCP_RST}})
	b.rule(ch, []expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}})
	return ch
}

// egressChain decides new outbound flows: allowed destinations are logged
// (the host's marked instead, with Config.AcceptMark) and accepted, the
// rest goes to deny.
func (b *builder) egressChain(name string, forward bool, deny *nftables.Chain) *nftables.Chain {
	ch := b.c.AddChain(&nftables.Chain{Name: name, Table: b.table})
	allowLog := b.log(event.Allowed, forward)
	if !forward && b.cfg.AcceptMark != 0 {
		allowLog = b.markAccepted()
	}
	accept := verdict(expr.VerdictAccept)
	l4 := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: setL4, SetID: b.sets[setL4].ID},
	}
	v4 := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
	v6 := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16},
		&expr.Payload{DestRegister: 2, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
	for _, s := range []struct {
		fam  byte
		load []expr.Any
		set  string
	}{{unix.NFPROTO_IPV4, v4, setDyn4}, {unix.NFPROTO_IPV4, v4, setNet4}, {unix.NFPROTO_IPV6, v6, setDyn6}, {unix.NFPROTO_IPV6, v6, setNet6}} {
		b.rule(ch, meta(expr.MetaKeyNFPROTO), eq([]byte{s.fam}), l4, s.load,
			[]expr.Any{&expr.Lookup{SourceRegister: 1, SetName: s.set, SetID: b.sets[s.set].ID}},
			allowLog, accept)
	}
	b.rule(ch, []expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: deny.Name}})
	return ch
}

// dnsGuard sends port-53 packets that are still addressed to port 53 after
// the nat chain (so not redirected: a conntrack entry from before we
// started, or a client that found a way around) to deny.
func (b *builder) dnsGuard(ch, deny *nftables.Chain) {
	for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		b.rule(ch, meta(expr.MetaKeyL4PROTO), eq([]byte{proto}), dport(), eq(be16(53)),
			[]expr.Any{&expr.Verdict{Kind: expr.VerdictGoto, Chain: deny.Name}})
	}
}

func (b *builder) log(v event.Verdict, forward bool) []expr.Any {
	return []expr.Any{&expr.Log{
		Key:   1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX,
		Group: b.cfg.LogGroup,
		Data:  []byte(flowlog.Prefix(v, forward)),
	}}
}

// counterAccepted is the named counter of the packets markAccepted marked
// (Firewall.AcceptedPackets).
const counterAccepted = "accepted"

// markAccepted counts the packet and sets Config.AcceptMark's bit on it
// (mark |= bit), keeping the bits it had.
func (b *builder) markAccepted() []expr.Any {
	bit := b.cfg.AcceptMark
	return []expr.Any{
		&expr.Objref{Type: int(nftables.ObjTypeCounter), Name: counterAccepted},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bit), Xor: binaryutil.NativeEndian.PutUint32(bit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

func (b *builder) rule(ch *nftables.Chain, parts ...[]expr.Any) {
	var exprs []expr.Any
	for _, p := range parts {
		exprs = append(exprs, p...)
	}
	b.c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: exprs})
}

func meta(k expr.MetaKey) []expr.Any { return []expr.Any{&expr.Meta{Key: k, Register: 1}} }

func eq(data []byte) []expr.Any {
	return []expr.Any{&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data}}
}

func dport() []expr.Any {
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}}
}

func verdict(k expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: k}} }

func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

// tcpFlags matches a TCP segment whose flags, masked, equal want.
func tcpFlags(mask, want byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{want}},
	}
}

// TCP flag bits.
const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

func ctNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// established accepts, ahead of the rest of the chain, the packets it
// would accept anyway: those of an established TCP or UDP flow that are
// not a SYN (a SYN goes to egress whatever conntrack says, see the chain)
// and not to one of except (output and forward: 53, since DNS goes to the
// resolver, or is denied, whatever conntrack says; input: the resolver's
// and the relay's ports, which only loopback and the bridges may reach).
// Every later packet of a connection then costs two rules instead of
// twenty (bench/conn.sh, perf).
func (b *builder) established(ch *nftables.Chain, except ...uint16) {
	est := []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
	notExcept := dport()
	for _, p := range except {
		notExcept = append(notExcept, neq(be16(p))...)
	}
	accept := verdict(expr.VerdictAccept)
	b.rule(ch, est, tcpFlags(tcpSYN, 0), notExcept, accept)
	b.rule(ch, est, meta(expr.MetaKeyL4PROTO), eq([]byte{unix.IPPROTO_UDP}), notExcept, accept)
}

func ctEstablished() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// ifname matches an interface name; a trailing '*' matches any suffix.
func ifname(k expr.MetaKey, name string) []expr.Any {
	var data []byte
	if n := len(name); n > 0 && name[n-1] == '*' {
		data = []byte(name[:n-1])
	} else {
		data = make([]byte, unix.IFNAMSIZ)
		copy(data, name)
	}
	return []expr.Any{&expr.Meta{Key: k, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data}}
}

func be16(v uint16) []byte { return []byte{byte(v >> 8), byte(v)} }
