// Package firewall owns harden-runner's nftables table: it installs the whole
// ruleset in one atomic batch, adds the addresses the resolver learns as
// expiring set elements, and removes the table again. It is the only package
// that imports google/nftables.
//
// The ruleset (inet family, so one table covers IPv4 and IPv6):
//
//	output  (filter, hook output): packets the gate marked for rejection ->
//	        reject; loopback (by interface and by address) and docker's
//	        bridges; our resolver's marked upstream queries; a guard that
//	        denies port-53 packets that escaped the DNS redirect; every TCP
//	        SYN -> egress (even if conntrack reuses an old entry);
//	        established/related; a TCP segment without SYN in a new entry
//	        only if it is a connection from before we started (pre4/pre6);
//	        DHCP to the broadcast address or the lease's server, NDP/MLD
//	        that cannot leave the link (see sidedoor.go); then egress
//	forward (filter, hook forward): the same for containers, egress_fwd,
//	        without any of those exemptions
//	egress, egress_fwd: allowed address·port (sets) -> log + accept;
//	        everything else -> deny
//	deny:   NFQUEUE to the gate (egress/gate), which records the flow with
//	        its process, then accepts it (audit) or gives it back with the
//	        reject mark (block)
//	dns_out (nat, hook output): every UDP and TCP packet to port 53 not
//	        carrying our mark -> our resolver
//	dns_pre (nat, hook prerouting): the same for port 53 arriving from
//	        docker's bridges
//	input   (filter, hook input): the resolver's port only from loopback
//	        and docker's bridges
//	relay_out, relay_pre, relay, quic: new TCP to the
//	        name-checking relay, QUIC refused (see relay_rules.go)
//
// Allowed destinations live in four sets: dyn4/dyn6 (address . port, with
// per-element timeouts, filled by the resolver) and net4/net6 (address
// interval . port, from CIDR entries of the policy). Lookups in both are
// O(1)/O(log n) in the kernel, so the cost does not grow with the list.
package firewall

import (
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/egress/policy"
)

// Defaults for Config fields left zero.
const (
	DefaultTable    = "harden_runner"
	DefaultMark     = 0x4852_0001
	DefaultLogGroup = 4852
	DefaultQueue    = 4852
	DefaultReject   = 0x4852_0002
	// AcceptMarkBit is the mark bit for Config.AcceptMark: one bit that
	// the fwmark schemes a runner is likely to carry leave alone
	// (kube-proxy 0x4000/0x8000, CNI portmap 0x2000, Cilium's host bits
	// 0x0f00, Tailscale 0xff0000, AWS VPC CNI 0x80, wg-quick 0xca6c) and
	// that our own marks do not contain. Calico (0xffff0000) and Cilium's
	// identity bits may use it; neither runs on a GitHub-hosted runner.
	AcceptMarkBit = 0x0100_0000
)

// ErrNotInstalled is returned by Allow before Install or after Remove.
var ErrNotInstalled = errors.New("firewall: table not installed")

// Config says what to install. Zero values take the defaults above.
type Config struct {
	Table string
	Block bool // reject what is not allowed; otherwise log and accept
	// Addrs are the address/CIDR entries, merged, as (*policy.Policy).
	// AddrRanges yields them: installed up front, and again on a restore.
	Addrs        iter.Seq[policy.AddrRange]
	ResolverPort uint16 // where DNS is redirected; must not be 53
	Mark         uint32 // SO_MARK of the resolver's upstream sockets
	LogGroup     uint16 // NFLOG group for new allowed flows
	// AcceptMark, when not 0, is one mark bit set (OR) on the host's new
	// allowed flows' packets instead of logging them to LogGroup: the
	// kernel-side capture (lineage.Config.AcceptMark) clears it after
	// the output and postrouting hooks and records the flow. Forwarded
	// (container) flows are logged as before.
	AcceptMark uint32
	Queue      uint16 // first NFQUEUE for flows the policy does not allow (egress/gate)
	Queues     uint16 // flows are balanced over Queue..Queue+Queues-1 by hash; default 1
	RejectMark uint32 // mark the gate sets on packets to reject
	NetNS      int    // netns fd to work in; 0 = the caller's namespace
	// RelayPort is where new TCP connections are redirected to the
	// name-checking relay (egress/relay); 0 = no relay. RelayPorts are the
	// ports redirected in audit mode: those the policy's name entries name.
	RelayPort  uint16
	RelayPorts []uint16
	// Preexisting are the TCP connections open before the table (see
	// proc.TCPConns): their segments keep passing even if conntrack first
	// sees them mid-stream. Any other TCP segment without SYN in a new
	// conntrack entry is treated as a new flow.
	Preexisting []Conn
	// Upstreams are the resolver's upstream servers: the only destinations
	// of packets carrying Mark. Empty: marked packets go anywhere.
	Upstreams []netip.AddrPort
	// DHCPServers are the lease's servers, which DHCP renewals go to by
	// unicast; broadcast and ff02::1:2 are always allowed.
	DHCPServers []netip.Addr
	// Takeover: Install keeps the addresses the resolver had allowed in a
	// table of ours already in the kernel (dyn4/dyn6, for the rest of
	// their lifetime): an agent restarted after its predecessor died
	// replaces that table without a moment in which they are refused.
	Takeover bool
	Log      *slog.Logger
}

// Firewall manages one nftables table. Safe for concurrent use.
type Firewall struct {
	cfg Config
	log *slog.Logger

	ports sync.Map // uint32 netlink port ids of our sockets: see OwnsPort

	mu        sync.Mutex
	conn      *nftables.Conn
	table     *nftables.Table
	sets      map[string]*nftables.Set
	installed bool
	expiry    map[elemKey]time.Time // our view of dyn-set elements' expiry
	lastPrune time.Time
	shape     shape          // the table as installed (restore.go)
	bridges   []netip.Prefix // SetBridgeNets
}

type elemKey struct {
	addr netip.Addr
	port uint16
}

// New validates cfg. It does no I/O.
func New(cfg Config) (*Firewall, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.Mark == 0 {
		cfg.Mark = DefaultMark
	}
	if cfg.LogGroup == 0 {
		cfg.LogGroup = DefaultLogGroup
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Queues == 0 {
		cfg.Queues = 1
	}
	if cfg.RejectMark == 0 {
		cfg.RejectMark = DefaultReject
	}
	if cfg.RejectMark == cfg.Mark {
		return nil, fmt.Errorf("firewall: reject mark %#x equals the resolver mark", cfg.RejectMark)
	}
	if cfg.AcceptMark != 0 && (cfg.AcceptMark&(cfg.AcceptMark-1) != 0 || cfg.AcceptMark&(cfg.Mark|cfg.RejectMark) != 0) {
		return nil, fmt.Errorf("firewall: accept mark %#x: must be one bit, not one of the resolver mark %#x or the reject mark %#x", cfg.AcceptMark, cfg.Mark, cfg.RejectMark)
	}
	if cfg.RelayPort == 53 || (cfg.RelayPort != 0 && cfg.RelayPort == cfg.ResolverPort) {
		return nil, fmt.Errorf("firewall: relay port %d: must not be 53 or the resolver's", cfg.RelayPort)
	}
	if cfg.ResolverPort == 0 || cfg.ResolverPort == 53 {
		return nil, fmt.Errorf("firewall: resolver port %d: must be set and not 53 (port 53 is what gets redirected)", cfg.ResolverPort)
	}
	if cfg.Addrs == nil {
		cfg.Addrs = func(func(policy.AddrRange) bool) {}
	}
	for r := range cfg.Addrs {
		if !r.First.IsValid() || r.First.BitLen() != r.Last.BitLen() || r.Last.Less(r.First) || r.First.Zone() != "" || r.First.Is4In6() {
			return nil, fmt.Errorf("firewall: address range %v-%v: not a range of one family", r.First, r.Last)
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Firewall{cfg: cfg, log: cfg.Log, expiry: make(map[elemKey]time.Time)}, nil
}

// Mark returns the packet mark that exempts a socket from the DNS redirect
// and from the egress policy. Only the resolver's upstream sockets set it.
func (f *Firewall) Mark() uint32 { return f.cfg.Mark }

// LogGroup returns the NFLOG group that new allowed flows are logged to.
func (f *Firewall) LogGroup() uint16 { return f.cfg.LogGroup }

// AcceptMark returns Config.AcceptMark: the bit set on the host's new
// allowed flows instead of logging them (0: they are logged).
func (f *Firewall) AcceptMark() uint32 { return f.cfg.AcceptMark }

// AcceptedPackets is how many packets the rules have marked with
// Config.AcceptMark since Install (0 without it): what the kernel-side
// recorder must have seen, unless a later rule dropped them or a kernel
// tunnel socket sent them (its cgroup hook does not run for those).
func (f *Firewall) AcceptedPackets() (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return 0, ErrNotInstalled
	}
	if f.cfg.AcceptMark == 0 {
		return 0, nil
	}
	o, err := f.conn.GetObject(&nftables.CounterObj{Table: f.table, Name: counterAccepted})
	if err != nil {
		return 0, fmt.Errorf("firewall: read counter %q: %w", counterAccepted, err)
	}
	c, ok := o.(*nftables.CounterObj)
	if !ok {
		return 0, fmt.Errorf("firewall: counter %q is a %T", counterAccepted, o)
	}
	return c.Packets, nil
}

// Queue returns the first NFQUEUE that flows the policy does not allow are
// sent to, and Queues how many consecutive ones share them.
func (f *Firewall) Queue() uint16 { return f.cfg.Queue }

// Queues returns how many queues, from Queue on, share the denied flows.
func (f *Firewall) Queues() uint16 { return f.cfg.Queues }

// RejectMark returns the mark that makes the firewall reject a packet the
// gate gives back.
func (f *Firewall) RejectMark() uint32 { return f.cfg.RejectMark }

// notePort remembers the netlink port id of a socket of ours (a SockOption).
func (f *Firewall) notePort(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var sa unix.Sockaddr
	var serr error
	if err := rc.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) }); err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("netlink socket: getsockname: %w", serr)
	}
	if nl, ok := sa.(*unix.SockaddrNetlink); ok {
		f.ports.Store(nl.Pid, true)
	}
	return nil
}

// OwnsPort reports whether portID is the netlink port of one of the
// firewall's own sockets: what the guard tells our commits apart by.
func (f *Firewall) OwnsPort(portID uint32) bool {
	_, ok := f.ports.Load(portID)
	return ok
}

// Install replaces any table of ours with a fresh one in a single atomic
// batch: either the whole ruleset is in force afterwards or nothing changed.
func (f *Firewall) Install() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigBuffers, f.notePort)}
	if f.cfg.NetNS != 0 {
		opts = append(opts, nftables.WithNetNSFd(f.cfg.NetNS))
	}
	if f.conn == nil {
		c, err := nftables.New(opts...)
		if err != nil {
			return fmt.Errorf("firewall: open netlink: %w", err)
		}
		f.conn = c
	}
	var carried map[elemKey]time.Time
	if f.cfg.Takeover {
		carried = f.allowedInKernelLocked()
	}
	b := newBuilder(f.conn, f.cfg, f.bridges)
	b.build()
	now := time.Now()
	if err := f.queueAllowedLocked(b.sets, carried, now); err != nil {
		return fmt.Errorf("firewall: install table %q: %w", f.cfg.Table, err)
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("firewall: install table %q: %w", f.cfg.Table, err)
	}
	f.table, f.sets, f.installed = b.table, b.sets, true
	clear(f.expiry)
	for k, exp := range carried {
		if exp.Sub(now) >= time.Second {
			f.expiry[k] = exp
		}
	}
	sh, err := f.readShapeLocked()
	if err != nil {
		return fmt.Errorf("firewall: install table %q: read it back: %w", f.cfg.Table, err)
	}
	f.shape = sh
	return nil
}

// Allow lets traffic to each address on each port through for ttl. Calling
// it again for an element that is still present extends its lifetime when
// the new expiry is later.
func (f *Firewall) Allow(addrs []netip.Addr, ports []uint16, ttl time.Duration) error {
	if len(addrs) == 0 || len(ports) == 0 {
		return nil
	}
	if ttl < time.Second {
		ttl = time.Second
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return ErrNotInstalled
	}
	now := time.Now()
	exp := now.Add(ttl)
	f.pruneLocked(now)
	// fresh: not in the kernel, add. live: in the kernel (its expiry, set
	// after ours was recorded, is later than ours), delete and add in one
	// batch, which refreshes the timeout atomically (kernels before 6.10 keep
	// the old timeout on a plain re-add). edge: expired by our clock moments
	// ago, the kernel may still hold it: add (a no-op if it is there), then
	// refresh it as a live one.
	var fresh, live, edge []elemKey
	for _, a := range addrs {
		a = a.Unmap()
		for _, p := range ports {
			k := elemKey{a, p}
			old, ok := f.expiry[k]
			switch {
			case !ok || now.Sub(old) > 2*time.Second:
				fresh = append(fresh, k)
			case old.After(now):
				if !old.Before(exp.Add(-ttl / 4)) {
					continue // present, and not much shorter-lived than asked
				}
				live = append(live, k)
			default:
				edge = append(edge, k)
			}
			f.expiry[k] = exp
		}
	}
	err := f.batch(live, append(append(fresh, live...), edge...), ttl)
	if err == nil && len(edge) > 0 {
		if err = f.batch(edge, edge, ttl); err != nil {
			// It expired between the two batches: it is gone, add it.
			err = f.batch(nil, edge, ttl)
		}
	}
	if err != nil {
		// Our view may now be wrong: forget these keys so a retry re-adds them.
		for _, ks := range [][]elemKey{fresh, live, edge} {
			for _, k := range ks {
				delete(f.expiry, k)
			}
		}
		return fmt.Errorf("firewall: allow %d addresses: %w", len(addrs), err)
	}
	return nil
}

// batch deletes del, then adds add with timeout ttl, in one transaction.
func (f *Firewall) batch(del, add []elemKey, ttl time.Duration) error {
	if len(add) == 0 && len(del) == 0 {
		return nil
	}
	byFamily := func(ks []elemKey, timeout time.Duration) (v4, v6 []nftables.SetElement) {
		for _, k := range ks {
			el := nftables.SetElement{Key: concatKey(k.addr, k.port), Timeout: timeout}
			if k.addr.Is4() {
				v4 = append(v4, el)
			} else {
				v6 = append(v6, el)
			}
		}
		return v4, v6
	}
	d4, d6 := byFamily(del, 0)
	a4, a6 := byFamily(add, ttl)
	var errs []error
	for _, op := range []struct {
		del  bool
		set  string
		elms []nftables.SetElement
	}{{true, setDyn4, d4}, {true, setDyn6, d6}, {false, setDyn4, a4}, {false, setDyn6, a6}} {
		if len(op.elms) == 0 {
			continue
		}
		if op.del {
			errs = append(errs, deleteElements(f.conn, f.sets[op.set], op.elms))
		} else {
			errs = append(errs, addElements(f.conn, f.sets[op.set], op.elms))
		}
	}
	errs = append(errs, f.conn.Flush())
	return errors.Join(errs...)
}

// pruneLocked forgets elements that the kernel has expired by now, at most
// once a minute, so the map does not grow without bound.
func (f *Firewall) pruneLocked(now time.Time) {
	if now.Sub(f.lastPrune) < time.Minute {
		return
	}
	f.lastPrune = now
	for k, e := range f.expiry {
		if e.Before(now) {
			delete(f.expiry, k)
		}
	}
}

// Remove deletes the table, ending enforcement. Safe to call twice and
// when Install never ran or failed; a table that is already gone is no error.
func (f *Firewall) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		return nil
	}
	// add + delete in one batch: deleting a table that does not exist would
	// fail the batch, adding one that exists is a no-op.
	t := &nftables.Table{Name: f.cfg.Table, Family: nftables.TableFamilyINet}
	f.conn.AddTable(t)
	f.conn.DelTable(t)
	err := f.conn.Flush()
	f.installed = false
	cerr := f.conn.CloseLasting()
	f.conn = nil
	if err != nil {
		return fmt.Errorf("firewall: remove table %q: %w", f.cfg.Table, err)
	}
	if cerr != nil {
		return fmt.Errorf("firewall: close netlink: %w", cerr)
	}
	return nil
}

// concatKey encodes address . port as the kernel stores a concatenation:
// each field padded to a multiple of four bytes.
func concatKey(a netip.Addr, port uint16) []byte {
	ab := a.AsSlice()
	k := make([]byte, len(ab)+4)
	copy(k, ab)
	k[len(ab)] = byte(port >> 8)
	k[len(ab)+1] = byte(port)
	return k
}
