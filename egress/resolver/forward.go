package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// forwarder sends questions to the upstream servers, in order, over UDP
// and over TCP when the UDP answer is truncated. Its sockets carry the
// firewall's mark so that they are neither redirected back to us nor policed.
type forwarder struct {
	upstreams []netip.AddrPort
	mark      uint32
	udp, tcp  *dns.Client
}

func newForwarder(ups []netip.AddrPort, mark uint32, timeout time.Duration) *forwarder {
	f := &forwarder{upstreams: ups, mark: mark}
	d := &net.Dialer{Timeout: timeout, Control: f.control}
	f.udp = &dns.Client{Net: "udp", Dialer: d, Timeout: timeout, UDPSize: 1232}
	f.tcp = &dns.Client{Net: "tcp", Dialer: d, Timeout: timeout}
	return f
}

// control sets SO_MARK on an upstream socket before it connects.
func (f *forwarder) control(_, _ string, c syscall.RawConn) error {
	if f.mark == 0 {
		return nil
	}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(f.mark))
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set SO_MARK: %w", serr)
	}
	return nil
}

// checkMark fails early when sockets cannot be marked (no CAP_NET_ADMIN):
// unmarked upstream queries would loop back into the resolver.
func (f *forwarder) checkMark() error {
	if f.mark == 0 {
		return nil
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("resolver: check SO_MARK: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, int(f.mark)); err != nil {
		return fmt.Errorf("resolver: upstream sockets cannot be marked (needs CAP_NET_ADMIN): %w", err)
	}
	return nil
}

// exchange asks each upstream in turn until one answers.
func (f *forwarder) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	var errs []error
	for _, up := range f.upstreams {
		if ctx.Err() != nil {
			break
		}
		addr := up.String()
		resp, _, err := f.udp.ExchangeContext(ctx, m, addr)
		if err == nil && resp.Truncated {
			resp, _, err = f.tcp.ExchangeContext(ctx, m, addr)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			continue
		}
		return resp, nil
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return nil, fmt.Errorf("no upstream answered: %w", errors.Join(errs...))
}
