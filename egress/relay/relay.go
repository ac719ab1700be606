// Package relay is harden-runner's name-checking relay. The firewall
// redirects new outbound TCP connections on the ports that allowed names
// are allowed on (block mode: to addresses the resolver let through; audit
// mode: all of them) to it. It reads the first bytes the client sends,
// without decrypting anything: the TLS ClientHello's server name (SNI) or
// the HTTP/1 request's Host. The connection goes on to its original
// destination only if the policy allows that name on that port and our
// resolver answered that name with that address (or the address is in an
// address/CIDR entry); otherwise the client gets a TLS alert or an HTTP 403
// and the journal a blocked flow with the name, address, port and process.
// That closes the shared-address hole: a CDN address the allowed name
// resolved to no longer reaches every other tenant of that CDN.
//
// Allowed connections are relayed byte for byte with io.Copy between the
// two TCP sockets, which Linux does with splice: no per-byte work after the
// first bytes, and memory per connection bounded by the first-bytes buffer
// (returned to a pool once sent) and two goroutines.
//
// With Encrypted Client Hello the name checked is the outer SNI, the one
// the client shows the network (the client-facing server's); what is
// inside is not seen. Later requests on a kept-alive plain-HTTP
// connection, and a Host inside TLS that differs from the SNI (domain
// fronting), are not checked: only the first bytes are.
package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/event"
)

type syscallRawConn = syscall.RawConn

// Defaults for Config fields left zero.
const (
	DefaultFirstBytesTimeout = 5 * time.Second
	DefaultDialTimeout       = 10 * time.Second
)

// peekSize is the first-bytes buffer: a whole ClientHello in up to a few
// records, or an HTTP request head.
const peekSize = maxHelloLen + 4*recordHeader + 64

// Config configures a Relay. Policy, Listen, Resolved, NamesOf and Emit are required.
type Config struct {
	Listen []netip.AddrPort // the firewall redirects here; each gets its own socket
	Policy *policy.Policy
	// Resolved reports whether the resolver answered name with a
	// (resolver.Resolver.Resolved); NamesOf lists the names answered with a.
	Resolved func(name string, a netip.Addr) bool
	NamesOf  func(a netip.Addr) []string
	Mark     uint32 // SO_MARK of the relay's own outbound sockets (the firewall passes them)
	// Owner finds the process behind a client socket (its local and remote
	// ends); ForwardedOwner does it in a container's namespace. May be nil.
	Owner          func(proto string, local, remote netip.AddrPort) event.Process
	ForwardedOwner func(proto string, local, remote netip.AddrPort) event.Process
	Emit           event.Emit
	// FirstBytesTimeout is how long a client may stay silent before it is
	// closed; DialTimeout bounds the connection to the original destination.
	FirstBytesTimeout time.Duration
	DialTimeout       time.Duration
	// OriginalDst overrides how a connection's original destination is
	// found (default: its conntrack entry, SO_ORIGINAL_DST). For tests and
	// benchmarks without nftables.
	OriginalDst func(*net.TCPConn) (netip.AddrPort, error)
	Log         *slog.Logger
}

// Relay is the name-checking relay. Safe for concurrent use; Start once,
// Close when done (safe to repeat).
type Relay struct {
	cfg    Config
	log    *slog.Logger
	dec    decider
	dialer net.Dialer
	bufs   sync.Pool

	conns, timeouts, refused atomic.Uint64

	mu        sync.Mutex
	listeners []*net.TCPListener
	open      map[*net.TCPConn]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// New validates cfg. It does no I/O.
func New(cfg Config) (*Relay, error) {
	switch {
	case cfg.Policy == nil:
		return nil, errors.New("relay: no policy")
	case len(cfg.Listen) == 0:
		return nil, errors.New("relay: no listen address")
	case cfg.Resolved == nil || cfg.NamesOf == nil:
		return nil, errors.New("relay: no resolver lookups")
	case cfg.Emit == nil:
		return nil, errors.New("relay: no Emit func")
	}
	if cfg.FirstBytesTimeout == 0 {
		cfg.FirstBytesTimeout = DefaultFirstBytesTimeout
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.OriginalDst == nil {
		cfg.OriginalDst = originalDst
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	r := &Relay{cfg: cfg, log: cfg.Log, open: map[*net.TCPConn]struct{}{}}
	r.dec = decider{pol: cfg.Policy, resolved: cfg.Resolved, namesOf: cfg.NamesOf}
	r.dialer = net.Dialer{Timeout: cfg.DialTimeout, Control: markControl(cfg.Mark)}
	r.bufs.New = func() any { b := make([]byte, peekSize); return &b }
	return r, nil
}

// Start binds every listener and serves in the background; on a bind
// error it closes what it bound and returns the error.
func (r *Relay) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errors.New("relay: closed")
	}
	var lc net.ListenConfig
	for _, ap := range r.cfg.Listen {
		nw := "tcp6" // v6-only beside the IPv4 socket, as the resolver does
		if ap.Addr().Is4() {
			nw = "tcp4"
		}
		l, err := lc.Listen(ctx, nw, ap.String())
		if err != nil {
			for _, l := range r.listeners {
				l.Close()
			}
			r.listeners = nil
			return fmt.Errorf("relay: listen %s: %w", ap, err)
		}
		r.listeners = append(r.listeners, l.(*net.TCPListener))
	}
	for _, l := range r.listeners {
		r.wg.Add(1)
		go r.serve(ctx, l)
	}
	return nil
}

// Addrs returns the addresses the relay listens on (useful with port 0).
func (r *Relay) Addrs() []netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []netip.AddrPort
	for _, l := range r.listeners {
		out = append(out, l.Addr().(*net.TCPAddr).AddrPort())
	}
	return out
}

// Close stops the listeners, ends every relayed connection and waits for
// their goroutines. Safe to call twice.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	var errs []error
	for _, l := range r.listeners {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("relay: close listener: %w", err))
		}
	}
	for c := range r.open {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
	st := r.Stats()
	r.cfg.Emit(event.Record{Stats: &st})
	if n := r.timeouts.Load(); n > 0 {
		r.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentRelay, Level: event.LevelInfo,
			Message: fmt.Sprintf("%d connections sent nothing within %v and were closed", n, r.cfg.FirstBytesTimeout)}})
	}
	return errors.Join(errs...)
}

// track adds c to the open set, or reports false if the relay is closing.
func (r *Relay) track(c *net.TCPConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.open[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c *net.TCPConn) {
	r.mu.Lock()
	delete(r.open, c)
	r.mu.Unlock()
	c.Close()
}

func (r *Relay) serve(ctx context.Context, l *net.TCPListener) {
	defer r.wg.Done()
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if !errors.Is(err, net.ErrClosed) {
				r.log.Error("relay: accept", "err", err)
				// EMFILE and the like: back off rather than spin.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		if !r.track(c) {
			c.Close()
			return
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer r.untrack(c)
			r.handle(ctx, c)
		}()
	}
}

// handle decides one connection and relays it if allowed.
func (r *Relay) handle(ctx context.Context, c *net.TCPConn) {
	r.conns.Add(1)
	dst, err := r.cfg.OriginalDst(c)
	if err != nil {
		r.log.Warn("relay: no original destination", "err", err)
		return
	}
	client := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	// Redirected from the output hook: to loopback. From docker's bridges
	// (prerouting): to the bridge's address.
	forward := !local.Addr().Unmap().IsLoopback()
	// Who it is, while the client's socket surely exists (a client may
	// close before it says anything), and beside the wait for its bytes.
	proc := make(chan event.Process, 1)
	go func() { proc <- r.owner(forward, client, dst) }()

	bp := r.bufs.Get().(*[]byte)
	defer func() {
		if bp != nil {
			r.bufs.Put(bp)
		}
	}()
	n, s, silent := r.sniff(c, *bp)
	allowed, reason := r.dec.decide(s, dst)
	if silent != "" {
		// Recorded all the same: the connection was made.
		reason = strings.TrimPrefix(reason+"; ", "; ") + silent
	}
	f := &event.Flow{Time: time.Now(), IP: dst.Addr().String(), Port: dst.Port(), Protocol: "tcp",
		Forward: forward, Name: displayName(s.name), Reason: reason}
	switch {
	case allowed:
		f.Verdict = event.Allowed
	case r.cfg.Policy.Mode() == policy.Audit:
		f.Verdict = event.Audit
	default:
		f.Verdict = event.Blocked
	}
	if silent != "" {
		// Nothing to relay: the record waits for the lookup, the
		// connection does not.
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			f.Process = <-proc
			r.cfg.Emit(event.Record{Flow: f})
		}()
		return
	}
	// A client that spoke waits for our answer (the server's first bytes
	// or our refusal) and so still holds its socket: finish the lookup
	// before answering, or a client that exits right after its handshake
	// can be gone when a slow lookup (a /proc scan on a loaded machine)
	// gets to it. The lookup began at accept, beside the wait for the
	// first bytes, so this usually costs nothing.
	f.Process = <-proc
	r.cfg.Emit(event.Record{Flow: f})
	if f.Verdict == event.Blocked {
		r.refused.Add(1)
		refuse(c, s, reason)
		return
	}
	up, err := r.dial(ctx, dst)
	if err != nil {
		r.log.Debug("relay: dial", "dst", dst, "err", err)
		_ = c.SetLinger(0) // the client sees a reset, as if it had dialled itself
		return
	}
	defer r.untrack(up)
	if _, err := up.Write((*bp)[:n]); err != nil {
		return
	}
	r.bufs.Put(bp)
	bp = nil
	pipe(c, up)
}

func (r *Relay) dial(ctx context.Context, dst netip.AddrPort) (*net.TCPConn, error) {
	nc, err := r.dialer.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return nil, err
	}
	up := nc.(*net.TCPConn)
	if !r.track(up) {
		up.Close()
		return nil, net.ErrClosed
	}
	return up, nil
}

func (r *Relay) owner(forward bool, client, dst netip.AddrPort) event.Process {
	look := r.cfg.Owner
	if forward {
		look = r.cfg.ForwardedOwner
	}
	if look == nil {
		return event.Process{Unknown: "no lookup"}
	}
	return look("tcp", client, dst)
}

// sniff reads until the first bytes say what they are (or the buffer is
// full, the client stops, or the deadline passes). silent says why, if the
// client sent nothing at all: then there is nothing to relay.
func (r *Relay) sniff(c *net.TCPConn, buf []byte) (int, sniffed, string) {
	_ = c.SetReadDeadline(time.Now().Add(r.cfg.FirstBytesTimeout))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		if s, done := classify(buf[:n], n == len(buf)); done {
			return n, s, ""
		}
		if err != nil {
			if n == 0 {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					r.timeouts.Add(1)
					return 0, sniffed{}, fmt.Sprintf("the client sent nothing within %v", r.cfg.FirstBytesTimeout)
				}
				return 0, sniffed{}, "the client closed without sending anything"
			}
			// It stopped in the middle of a ClientHello or request head.
			return n, sniffed{kind: kindMalformed, err: fmt.Errorf("first bytes: %w", err)}, ""
		}
	}
}

// classify looks at the first bytes; done is false while more are needed
// (full says no more will fit).
func classify(b []byte, full bool) (sniffed, bool) {
	if len(b) == 0 {
		return sniffed{}, false
	}
	var s sniffed
	var err error
	// Servers skip empty lines before a request line: so does the check.
	req := bytes.TrimLeft(b, "\r\n")
	switch {
	case b[0] == recordHandshake:
		s.kind = kindTLS
		s.name, err = parseClientHello(b)
	case len(req) == 0:
		s.kind, err = kindHTTP, errNeedMore
	default:
		switch classifyHTTP(req) {
		case notHTTP:
			return sniffed{kind: kindOther}, true
		case maybeHTTP:
			s.kind, err = kindHTTP, errNeedMore
		default:
			s.kind = kindHTTP
			s.name, err = parseHTTPHost(req)
		}
	}
	if errors.Is(err, errNeedMore) {
		if !full {
			return sniffed{}, false
		}
		err = errors.New("first bytes too long")
	}
	if err != nil {
		return sniffed{kind: kindMalformed, err: fmt.Errorf("%v: %w", s.kind, err)}, true
	}
	s.name = nameOrNone(s.name)
	return s, true
}

// tlsAccessDenied is a fatal TLS alert record, access_denied (49).
var tlsAccessDenied = []byte{21, 3, 3, 0, 2, 2, 49}

// refuse answers a blocked client in its own protocol and closes.
func refuse(c *net.TCPConn, s sniffed, reason string) {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	switch s.kind {
	case kindTLS:
		_, _ = c.Write(tlsAccessDenied)
	case kindHTTP:
		body := "harden-runner: blocked by the egress policy: " + reason + "\n"
		_, _ = fmt.Fprintf(c, "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	default:
		_ = c.SetLinger(0)
	}
}

// pipe copies both ways until both directions end; a reset or error on
// either side ends both. io.Copy between two *net.TCPConn splices on Linux.
func pipe(c, up *net.TCPConn) {
	done := make(chan struct{})
	half := func(dst, src *net.TCPConn) {
		if _, err := io.Copy(dst, src); err != nil {
			c.Close()
			up.Close()
			return
		}
		_ = dst.CloseWrite()
	}
	go func() {
		defer close(done)
		half(up, c)
	}()
	half(c, up)
	<-done
}

// Stats returns the relay's counts so far (what Close emits). Safe for
// concurrent use.
func (r *Relay) Stats() event.Stats {
	return event.Stats{Component: event.ComponentRelay, Events: r.conns.Load()}
}
