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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

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

type ownerKey struct {
	tcp    bool
	client netip.AddrPort
}

type ownerEntry struct {
	proc    event.Process
	expires time.Time
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

// Start binds every listener and serves in the background; it returns once
// all are bound, or the first bind error (after closing what it bound).
// It also checks that upstream sockets can carry the mark.
func (r *Resolver) Start(ctx context.Context) error {
	if err := r.fwd.checkMark(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("resolver: closed")
	}
	for _, ap := range r.cfg.Listen {
		err := r.listenLocked(ctx, ap)
		// Port 0 picks a free UDP port, which TCP may have in use: pick again.
		for try := 0; err != nil && ap.Port() == 0 && errors.Is(err, syscall.EADDRINUSE) && try < 10; try++ {
			err = r.listenLocked(ctx, ap)
		}
		if err != nil {
			r.shutdownLocked()
			return err
		}
	}
	go r.janitor(ctx)
	go r.fold.run(time.Second, r.done)
	return nil
}

// listenLocked serves ap over UDP (a socket per CPU) and TCP on the same
// port. It leaves nothing open if it fails.
func (r *Resolver) listenLocked(ctx context.Context, ap netip.AddrPort) error {
	var lc net.ListenConfig
	// UDP: one socket per CPU on the same port (SO_REUSEPORT), so reading
	// is not one goroutine's job; the kernel spreads clients over them.
	udp := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	// udp4/tcp4 and udp6/tcp6: an IPv4 and an IPv6 wildcard side by side,
	// the IPv6 one v6-only (plain "udp" on [::] is dual-stack and collides
	// with 0.0.0.0 on the same port).
	v := "6"
	if ap.Addr().Is4() {
		v = "4"
	}
	addr := ap.String()
	var servers []*udpServer
	closeAll := func() {
		for _, s := range servers {
			s.close()
		}
	}
	for range runtime.GOMAXPROCS(0) {
		pc, err := udp.ListenPacket(ctx, "udp"+v, addr)
		if err != nil {
			closeAll()
			return fmt.Errorf("resolver: listen udp %s: %w", addr, err)
		}
		addr = pc.LocalAddr().String() // the others on the same port
		s, err := newUDPServer(r, pc.(*net.UDPConn))
		if err != nil {
			pc.Close()
			closeAll()
			return fmt.Errorf("resolver: udp %s: %w", addr, err)
		}
		servers = append(servers, s)
	}
	// Same port for TCP (matters when ap asks for port 0).
	tcpAddr := netip.AddrPortFrom(ap.Addr(), uint16(servers[0].conn.LocalAddr().(*net.UDPAddr).Port))
	l, err := lc.Listen(ctx, "tcp"+v, tcpAddr.String())
	if err != nil {
		closeAll()
		return fmt.Errorf("resolver: listen tcp %s: %w", tcpAddr, err)
	}
	for _, s := range servers {
		r.udp = append(r.udp, s)
		s.start(&r.loops)
	}
	r.rawTCP = append(r.rawTCP, l.(*net.TCPListener))
	s := &dns.Server{Listener: r.tcpListener(l.(*net.TCPListener)), Net: "tcp", Handler: r, ReadTimeout: tcpReadTimeout,
		IdleTimeout: r.tcpIdleTimeout, MaxTCPQueries: maxTCPQueries}
	r.servers = append(r.servers, s)
	go func() {
		if err := s.ActivateAndServe(); err != nil && !r.isClosed() {
			r.log.Error("resolver: serve", "net", s.Net, "err", err)
		}
	}()
	return nil
}

func (r *Resolver) isClosed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closed
}

// janitor drops stale owner-cache entries until ctx ends or Close.
func (r *Resolver) janitor(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.mu.Lock()
			if r.closed {
				r.mu.Unlock()
				return
			}
			for k, e := range r.owners {
				if now.After(e.expires) {
					delete(r.owners, k)
				}
			}
			r.mu.Unlock()
			r.book.prune(now)
		}
	}
}

// Close stops every listener and waits for the queries in flight, at most
// Config.Shutdown; those still unanswered then are counted as lost in the
// resolver's stats record (and a warning note), not waited for. Safe to
// call twice.
func (r *Resolver) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	servers, udp, raw := r.servers, r.udp, r.rawTCP
	r.servers, r.udp, r.rawTCP = nil, nil, nil
	r.mu.Unlock()
	// Connections still in the accept queue are never served: count them.
	var unserved int64
	for _, l := range raw {
		unserved += r.drainTCP(l)
	}
	// Handlers take mu (owner cache): shut down without holding it.
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Shutdown)
	defer cancel()
	err := shutdown(ctx, servers, udp)
	r.loops.Wait() // the UDP loops end as soon as their sockets are closed
	for r.inflight.Load() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
	r.recMu.Lock()
	r.sealed = true
	inflight := max(r.inflight.Load(), 0)
	r.recMu.Unlock()
	r.countUnreadTCP()
	unserved += r.tcpUnread.Load()
	close(r.done)
	r.fold.flush()
	if inflight+unserved > 0 {
		var what []string
		if inflight > 0 {
			what = append(what, fmt.Sprintf("%d queries still being answered %v after it began", inflight, r.cfg.Shutdown))
		}
		if unserved > 0 {
			what = append(what, fmt.Sprintf("%d TCP connections not yet served (at most %d are at once, or their query was not read yet)", unserved, MaxTCPConns))
		}
		r.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentResolver, Level: event.LevelWarning,
			Message: "at shutdown: " + strings.Join(what, ", ") + ": not recorded, counted as lost"}})
	}
	r.cfg.Emit(event.Record{Stats: &event.Stats{Component: event.ComponentResolver, Events: r.queries.Load(),
		Lost: uint64(inflight + unserved), Unattributed: r.unattributed.Load()}})
	return err
}

// shutdownLocked closes what Start opened when Start fails (no query has
// been served yet).
func (r *Resolver) shutdownLocked() error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.Shutdown)
	defer cancel()
	err := shutdown(ctx, r.servers, r.udp)
	r.servers, r.udp, r.rawTCP = nil, nil, nil
	return err
}

// shutdown stops the TCP servers (waiting for their handlers until ctx
// ends: a deadline is no error, what is left is counted by the caller) and
// closes the UDP sockets.
func shutdown(ctx context.Context, servers []*dns.Server, udp []*udpServer) error {
	var errs []error
	for _, s := range servers {
		if err := s.ShutdownContext(ctx); err != nil && ctx.Err() == nil {
			errs = append(errs, fmt.Errorf("resolver: shutdown %s: %w", s.Net, err))
		}
	}
	for _, s := range udp {
		if err := s.close(); err != nil {
			errs = append(errs, fmt.Errorf("resolver: close udp: %w", err))
		}
	}
	return errors.Join(errs...)
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
		r.fold.add(ev)
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

// owner returns the process behind the client socket, cached briefly per
// client address so a busy client costs one lookup, not one per query.
func (r *Resolver) owner(w dns.ResponseWriter) event.Process {
	if r.cfg.Owner == nil {
		return event.Process{Unknown: "no lookup"}
	}
	remote := addrPort(w.RemoteAddr())
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	k := ownerKey{tcp, remote}
	now := time.Now()
	r.mu.Lock()
	e, ok := r.owners[k]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.proc
	}
	proto := "udp"
	if tcp {
		proto = "tcp"
	}
	// The client's socket has the client address as its local end.
	p := r.lookup(r.cfg.Owner, proto, remote)
	if p.PID == 0 && r.cfg.ForwardedOwner != nil {
		if fp := r.lookup(r.cfg.ForwardedOwner, proto, remote); fp.PID != 0 {
			p = fp
		}
	}
	if p.PID == 0 {
		r.unattributed.Add(1)
	}
	// Misses are cached too: a busy client whose socket cannot be found
	// (another namespace, gone) must not pay a kernel socket dump per query.
	r.mu.Lock()
	r.owners[k] = ownerEntry{p, now.Add(ownerCacheTTL)}
	r.mu.Unlock()
	return p
}

// lookup asks owner for the client socket at remote: its remote end is
// whatever server the client thought it was asking, so the likely ones
// are tried first (exact lookups are cheap), then any.
func (r *Resolver) lookup(owner func(string, netip.AddrPort, netip.AddrPort) event.Process, proto string, remote netip.AddrPort) event.Process {
	var p event.Process
	for _, s := range r.likely {
		if s.Addr().Is4() != remote.Addr().Unmap().Is4() {
			continue
		}
		if p = owner(proto, remote, s); p.PID != 0 {
			return p
		}
	}
	return owner(proto, remote, netip.AddrPort{})
}

func addrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	}
	return netip.AddrPort{}
}

// canonical lower-cases a query name and drops the trailing dot.
func canonical(name string) string {
	return strings.TrimSuffix(strings.ToLower(name), ".")
}

func typeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return fmt.Sprintf("TYPE%d", t)
}

func stripOPT(m *dns.Msg) {
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
}

// answerAddrs returns every address in the answer section (whatever owner
// name: the end of a CNAME chain counts), plus SVCB/HTTPS address hints,
// and the smallest TTL among them.
func answerAddrs(m *dns.Msg) ([]netip.Addr, uint32) {
	var addrs []netip.Addr
	var ttl uint32
	first := true
	note := func(h *dns.RR_Header, a ...netip.Addr) {
		addrs = append(addrs, a...)
		if first || h.Ttl < ttl {
			ttl, first = h.Ttl, false
		}
	}
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
				note(&rr.Hdr, a)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(rr.AAAA.To16()); ok {
				note(&rr.Hdr, a)
			}
		case *dns.HTTPS:
			note(&rr.Hdr, svcbHints(&rr.SVCB)...)
		case *dns.SVCB:
			note(&rr.Hdr, svcbHints(rr)...)
		}
	}
	return addrs, ttl
}

func svcbHints(rr *dns.SVCB) []netip.Addr {
	var out []netip.Addr
	for _, kv := range rr.Value {
		var ips []net.IP
		switch kv := kv.(type) {
		case *dns.SVCBIPv4Hint:
			ips = kv.Hint
		case *dns.SVCBIPv6Hint:
			ips = kv.Hint
		}
		for _, ip := range ips {
			if a, ok := netip.AddrFromSlice(ip); ok {
				out = append(out, a.Unmap())
			}
		}
	}
	return out
}

// answerStrings lists the answer section's addresses and CNAME targets.
func answerStrings(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		case *dns.CNAME:
			out = append(out, canonical(rr.Target))
		}
	}
	return out
}

// Addrs returns the addresses the resolver listens on (useful with port 0).
func (r *Resolver) Addrs() []net.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []net.Addr
	for _, s := range r.udp {
		out = append(out, s.conn.LocalAddr())
	}
	for _, s := range r.servers {
		if s.PacketConn != nil {
			out = append(out, s.PacketConn.LocalAddr())
		} else if s.Listener != nil {
			out = append(out, s.Listener.Addr())
		}
	}
	return out
}

// Stats returns the resolver's counts so far, for a snapshot while it
// runs: queries and those without a process (queries still in flight are
// counted as lost only by Close). Safe for concurrent use.
func (r *Resolver) Stats() event.Stats {
	return event.Stats{Component: event.ComponentResolver, Events: r.queries.Load(), Unattributed: r.unattributed.Load()}
}
