package firewall

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/egress/policy"
)

// Traffic that stays on the machine leaves through loopback or one of
// docker's bridges (host to container, container to container), and is
// not policed. Neither is told by its name alone: root renames any link,
// lo too, so "oifname lo" and "oifname br-*" would exempt an uplink
// renamed lo or br-x. Loopback is the link with ifindex 1, which no other
// link can have in its namespace; a bridge must be of kind "bridge" and
// the destination inside a subnet of a genuine docker bridge (setBridge4
// and setBridge6, see Firewall.SetBridgeNets): a bridge built around the
// uplink, which then carries the internet, is no such thing.

// bridgeNames are docker's bridges' names (a trailing '*' matches any
// suffix): docker0 and a user-defined network's br-<id>.
var bridgeNames = []string{"docker0", "br-*"}

const (
	setBridge4 = "bridge4"
	setBridge6 = "bridge6"
	// loopbackIndex is lo's ifindex, in every network namespace.
	loopbackIndex = 1
	// metaKeyIIFKIND and metaKeyOIFKIND are NFT_META_IIFKIND and
	// NFT_META_OIFKIND (Linux 5.1), which google/nftables does not name:
	// the link's rtnl kind ("bridge", "veth"; none for a physical NIC).
	metaKeyIIFKIND expr.MetaKey = 26
	metaKeyOIFKIND expr.MetaKey = 27
)

// loopback matches lo as the input (expr.MetaKeyIIF) or output
// (expr.MetaKeyOIF) interface.
func loopback(k expr.MetaKey) []expr.Any {
	return append(meta(k), eq(binaryutil.NativeEndian.PutUint32(loopbackIndex))...)
}

// bridge matches a bridge called name as the input (in) or output
// interface: its kind first, the cheaper test for every other packet.
func bridge(in bool, name string) []expr.Any {
	kind, nameKey := metaKeyOIFKIND, expr.MetaKeyOIFNAME
	if in {
		kind, nameKey = metaKeyIIFKIND, expr.MetaKeyIIFNAME
	}
	data := make([]byte, unix.IFNAMSIZ)
	copy(data, "bridge")
	return append([]expr.Any{&expr.Meta{Key: kind, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data}},
		ifname(nameKey, name)...)
}

// local adds to ch one rule per way out that stays on the machine, each
// ending in then: loopback (with lo), and each of docker's bridges to a
// destination in a bridge's subnet.
func (b *builder) local(ch *nftables.Chain, lo bool, then []expr.Any) {
	if lo {
		b.rule(ch, loopback(expr.MetaKeyOIF), then)
	}
	for _, name := range bridgeNames {
		b.rule(ch, bridge(false, name), meta(expr.MetaKeyNFPROTO), eq([]byte{unix.NFPROTO_IPV4}),
			[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}},
			b.lookup(setBridge4, false), then)
		b.rule(ch, bridge(false, name), meta(expr.MetaKeyNFPROTO), eq([]byte{unix.NFPROTO_IPV6}),
			[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 24, Len: 16}},
			b.lookup(setBridge6, false), then)
	}
}

// addBridgeSets adds the bridge subnet sets with b.bridges.
func (b *builder) addBridgeSets() {
	v4, v6 := bridgeElements(b.bridges)
	b.addSet(&nftables.Set{Table: b.table, Name: setBridge4, KeyType: nftables.TypeIPAddr, Interval: true}, v4)
	b.addSet(&nftables.Set{Table: b.table, Name: setBridge6, KeyType: nftables.TypeIP6Addr, Interval: true}, v6)
}

// bridgeElements turns prefixes into the elements of the bridge4 and
// bridge6 interval sets: each range's first address, and the address after
// its last one marked as an interval's end. Overlapping prefixes are
// merged (the kernel refuses overlapping intervals).
func bridgeElements(ps []netip.Prefix) (v4, v6 []nftables.SetElement) {
	rs := make([]policy.AddrRange, 0, len(ps))
	for _, p := range ps {
		rs = append(rs, policy.PrefixRange(netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-bitsIfMapped(p)), 0))
	}
	for _, r := range policy.MergeRanges(rs) {
		els := []nftables.SetElement{{Key: r.First.AsSlice()}}
		if next := r.Last.Next(); next.IsValid() {
			els = append(els, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
		}
		if r.First.Is4() {
			v4 = append(v4, els...)
		} else {
			v6 = append(v6, els...)
		}
	}
	return v4, v6
}

// MinBridgeBits is the shortest prefix SetBridgeNets takes for p's family:
// /8 for IPv4, /16 for IPv6 (no docker network is wider).
func MinBridgeBits(p netip.Prefix) int {
	if p.Addr().Unmap().Is4() {
		return 8
	}
	return 16
}

// bitsIfMapped is what an IPv4-mapped prefix's length has over its IPv4 one.
func bitsIfMapped(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

// SetBridgeNets makes ps the subnets of docker's bridges that traffic to
// stays unpoliced (see local.go), in one batch; the table keeps them when
// the guard restores it. Before Install it only records them. A prefix
// that is not valid, or an IPv4 one shorter than /8 or IPv6 shorter than
// /16 (no docker network is that wide), is an error and changes nothing.
func (f *Firewall) SetBridgeNets(ps []netip.Prefix) error {
	for _, p := range ps {
		if min := MinBridgeBits(p); !p.IsValid() || p.Bits()-bitsIfMapped(p) < min {
			return fmt.Errorf("firewall: bridge subnet %v: not a prefix of at least /%d", p, min)
		}
	}
	ps = slices.Clone(ps)
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		f.bridges = ps
		return nil
	}
	v4, v6 := bridgeElements(ps)
	for _, set := range []struct {
		name string
		els  []nftables.SetElement
	}{{setBridge4, v4}, {setBridge6, v6}} {
		s, els := f.sets[set.name], set.els
		f.conn.FlushSet(s)
		if err := addElements(f.conn, s, els); err != nil {
			return err
		}
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("firewall: set the bridge subnets to %v: %w", ps, err)
	}
	f.bridges = ps
	return nil
}
