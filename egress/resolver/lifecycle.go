package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/event"
)

// Starting, listening, and a bounded shutdown.

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
	go r.fold.Run(time.Second, r.done)
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
	r.fold.Flush()
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
