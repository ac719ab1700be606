package resolver

import (
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/harden-runner/harden-runner/event"
)

// Who asked: the owner of a query's socket, cached per client address.

type ownerKey struct {
	tcp    bool
	client netip.AddrPort
}

type ownerEntry struct {
	proc    event.Process
	expires time.Time
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
