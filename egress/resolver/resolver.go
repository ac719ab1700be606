// Package resolver is harden-runner's DNS server: every DNS query on the
// machine is redirected to it by the firewall. It answers names the policy
// allows by forwarding them upstream, and before it writes the answer it asks
// the firewall to let the answer's addresses through, so a client's connect
// never races the rule. A name the policy does not allow is answered with
// NXDOMAIN in block mode and never sent upstream: that closes DNS as an
// exfiltration channel. In audit mode every name is forwarded and recorded.
//
// It is the only package that imports miekg/dns. Query policy lives here;
// the cache (cache.go) sits in front of forwarding (forward.go), and upstream
// discovery (upstreams.go) is separate from both.
package resolver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/event"
)

// Defaults for Config fields left zero.
const (
	DefaultGrace   = 15 * time.Minute
	DefaultTimeout = 2 * time.Second
	// DefaultShutdown bounds Close: queries still being answered then are
	// counted as lost (event.Stats.Lost) and not waited for.
	DefaultShutdown = 2 * time.Second
	minAllowTTL     = 60 * time.Second
	ownerCacheTTL   = 2 * time.Second
)

// Config configures a Resolver. Policy, Upstreams and Listen are required.
type Config struct {
	Listen    []netip.AddrPort // each gets a UDP and a TCP listener
	Upstreams []netip.AddrPort // tried in order
	Policy    *policy.Policy
	// Allow lets traffic to addrs on ports through the firewall for ttl. It is
	// called before an allowed answer is written; if it fails the client
	// gets SERVFAIL. Nil means no firewall (tests of the resolver alone).
	Allow func(addrs []netip.Addr, ports []uint16, ttl time.Duration) error
	Mark  uint32 // SO_MARK for upstream sockets; 0 = none
	// Servers are the addresses clients are likely to have sent their
	// queries to before the redirect (resolv.conf's nameservers). A client
	// socket connected to one of them is found by an exact lookup; others
	// need a slower search. Optional.
	Servers []netip.AddrPort
	// Owner finds the process behind a client socket. May be nil.
	Owner func(proto string, local, remote netip.AddrPort) event.Process
	// ForwardedOwner finds it in a container's network namespace, for a
	// query Owner could not place (containers' DNS is redirected here
	// too). May be nil.
	ForwardedOwner func(proto string, local, remote netip.AddrPort) event.Process
	Emit           event.Emit // required
	Grace          time.Duration
	Timeout        time.Duration // per upstream attempt
	Shutdown       time.Duration // how long Close waits for queries in flight
	Log            *slog.Logger
}

// Resolver is a policy-enforcing forwarding DNS server. Safe for concurrent use.
type Resolver struct {
	cfg   Config
	log   *slog.Logger
	cache *cache
	fwd   *forwarder
	fold  *folder
	book  *book // name -> answered addresses, for the relay
	done  chan struct{}

	likely                []netip.AddrPort
	queries, unattributed atomic.Uint64
	// upstreamSlots bounds the UDP queries waiting for an upstream at once.
	upstreamSlots chan struct{}
	shed          atomic.Uint64 // queries refused because all slots were taken

	// TCP connections open now and at most so far (tcp.go).
	tcpOpen, tcpHigh atomic.Int64
	tcpRefused       atomic.Int64 // connections closed unserved at shutdown
	tcpUnread        atomic.Int64 // connections closed at shutdown with a query unread
	tcpConns         sync.Map     // *countedConn → struct{}: open TCP connections
	closing          atomic.Bool
	rawTCP           []*net.TCPListener
	// inflight counts queries being answered (TCP handlers, UDP queries
	// waiting for an upstream); what is left at the shutdown deadline is
	// lost. After sealed, stragglers record nothing (they are counted).
	inflight atomic.Int64
	recMu    sync.RWMutex
	sealed   bool

	mu      sync.Mutex
	servers []*dns.Server // TCP
	udp     []*udpServer
	loops   sync.WaitGroup // the UDP servers' loops
	owners  map[ownerKey]ownerEntry
	closed  bool
}

// New validates cfg. It does no I/O.
func New(cfg Config) (*Resolver, error) {
	if cfg.Policy == nil {
		return nil, errors.New("resolver: no policy")
	}
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("resolver: no upstream servers")
	}
	if len(cfg.Listen) == 0 {
		return nil, errors.New("resolver: no listen address")
	}
	if cfg.Emit == nil {
		return nil, errors.New("resolver: no Emit func")
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Shutdown == 0 {
		cfg.Shutdown = DefaultShutdown
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	r := &Resolver{cfg: cfg, log: cfg.Log, owners: make(map[ownerKey]ownerEntry)}
	// Where a client's socket is likely connected to: the servers in its
	// resolv.conf, then our own upstreams.
	for _, s := range append(append([]netip.AddrPort(nil), cfg.Servers...), cfg.Upstreams...) {
		if !slices.Contains(r.likely, s) {
			r.likely = append(r.likely, s)
		}
	}
	r.fwd = newForwarder(cfg.Upstreams, cfg.Mark, cfg.Timeout)
	r.fold = newFolder(cfg.Emit)
	r.book = newBook()
	r.done = make(chan struct{})
	r.cache = newCache(r.fwd.exchange, 20000)
	r.upstreamSlots = make(chan struct{}, maxUpstreamWaiting)
	return r, nil
}

// maxUpstreamWaiting is how many UDP queries may wait for an upstream
// answer at once; more get SERVFAIL at once (the client retries).
const maxUpstreamWaiting = 2048

// overloaded answers SERVFAIL without asking an upstream, and says so in
// the journal the first time.
func (r *Resolver) overloaded(w dns.ResponseWriter, req *dns.Msg) {
	if r.shed.Add(1) == 1 {
		r.warn(fmt.Sprintf("more than %d queries waited for an upstream at once: further ones got SERVFAIL until some were answered", maxUpstreamWaiting))
	}
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	_ = w.WriteMsg(m)
}

// ServeDNS answers one query. It implements dns.Handler.
func (r *Resolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	r.inflight.Add(1)
	defer r.inflight.Add(-1)
	r.serve(w, req, true)
}

// record adds a query's event to the journal, unless Close has sealed the
// record (the query was then counted as lost).
func (r *Resolver) record(ev *event.DNS) {
	r.recMu.RLock()
	defer r.recMu.RUnlock()
	if !r.sealed {
		r.fold.Add(dnsKind(ev), *ev)
	}
}

// serve answers req. Unless mayWait, it answers only what needs no
// upstream (malformed, refused, cached) and otherwise returns false having
// done nothing, so that the caller can answer it where waiting is fine:
// the UDP loop's fast path, deciding and answering in one pass.
func (r *Resolver) serve(w dns.ResponseWriter, req *dns.Msg, mayWait bool) bool {
	now := time.Now()
	if req.Response || req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 {
		r.queries.Add(1)
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		if req.Opcode != dns.OpcodeQuery {
			m.Rcode = dns.RcodeNotImplemented
		}
		_ = w.WriteMsg(m)
		return true
	}
	q := req.Question[0]
	name := canonical(q.Name)
	ports, _ := r.cfg.Policy.Ports(name)
	allowed := ports != nil
	block := r.cfg.Policy.Mode() == policy.Block
	var resp *dns.Msg
	if allowed || !block {
		var hit bool
		if resp, hit = r.cache.lookup(req); !hit && !mayWait {
			return false
		}
	}
	r.queries.Add(1)
	ev := event.DNS{Time: now, Name: name, Type: typeString(q.Qtype)}
	ev.Process = r.owner(w)
	switch {
	case allowed:
		ev.Verdict = event.Allowed
	case block:
		ev.Verdict = event.Blocked
	default:
		ev.Verdict = event.Audit
	}
	if !allowed && block {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeNameError)
		m.RecursionAvailable = true
		r.write(w, req, m)
		ev.Rcode = dns.RcodeToString[m.Rcode]
		r.record(&ev)
		return true
	}
	if resp == nil {
		var err error
		resp, err = r.cache.get(req, r.cfg.Timeout*time.Duration(len(r.cfg.Upstreams))+time.Second)
		if err != nil {
			r.log.Warn("resolver: upstream", "name", name, "err", err)
			r.servfail(w, req, &ev, err)
			return true
		}
	}
	addrs, ttl := answerAddrs(resp)
	ev.Answers, ev.TTL = answerStrings(resp), ttl
	life := max(time.Duration(ttl)*time.Second, minAllowTTL) + r.cfg.Grace
	if allowed && len(addrs) > 0 && r.cfg.Allow != nil {
		if err := r.cfg.Allow(addrs, ports, life); err != nil {
			// Never answer with addresses the firewall will not pass.
			r.servfail(w, req, &ev, fmt.Errorf("allow answer addresses: %w", err))
			return true
		}
	}
	// Before the reply too: the relay checks a connection's name against it.
	r.book.add(name, addrs, now.Add(life))
	ev.Rcode = dns.RcodeToString[resp.Rcode]
	r.write(w, req, resp)
	r.record(&ev)
	return true
}

func (r *Resolver) servfail(w dns.ResponseWriter, req *dns.Msg, ev *event.DNS, err error) {
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeServerFailure)
	m.RecursionAvailable = true
	r.write(w, req, m)
	ev.Rcode = dns.RcodeToString[dns.RcodeServerFailure]
	r.record(ev)
	r.warn(fmt.Sprintf("SERVFAIL for %s %s: %v", ev.Name, ev.Type, err))
}

// warn journals a warning from a query's handler, unless Close has sealed
// the record (the journal may be closed by then).
func (r *Resolver) warn(msg string) {
	r.recMu.RLock()
	defer r.recMu.RUnlock()
	if !r.sealed {
		r.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentResolver, Level: event.LevelWarning, Message: msg}})
	}
}

// write sends m as the answer to req, fitting it to the client's EDNS0
// buffer over UDP (setting TC so the client retries over TCP).
func (r *Resolver) write(w dns.ResponseWriter, req, m *dns.Msg) {
	m.Id = req.Id
	reqOpt := req.IsEdns0()
	if reqOpt == nil {
		stripOPT(m)
	} else if o := m.IsEdns0(); o != nil {
		o.SetUDPSize(dns.DefaultMsgSize)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if reqOpt != nil {
			size = max(int(reqOpt.UDPSize()), dns.MinMsgSize)
		}
		m.Truncate(size)
	}
	if err := w.WriteMsg(m); err != nil {
		r.log.Debug("resolver: write", "err", err)
	}
}

// Stats returns the resolver's counts so far, for a snapshot while it
// runs: queries and those without a process (queries still in flight are
// counted as lost only by Close). Safe for concurrent use.
func (r *Resolver) Stats() event.Stats {
	return event.Stats{Component: event.ComponentResolver, Events: r.queries.Load(), Unattributed: r.unattributed.Load()}
}
