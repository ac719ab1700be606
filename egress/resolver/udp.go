package resolver

import (
	"errors"
	"net"
	"sync"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// msgTrunc flags a datagram longer than the buffer it was read into.
const msgTrunc = unix.MSG_TRUNC

// udpBatch is how many datagrams one read (recvmmsg) and one write
// (sendmmsg) carry at most.
const udpBatch = 64

// maxUDPQuery is the largest query read; a bigger datagram is dropped.
const maxUDPQuery = 4096

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share: reads and
// writes of several datagrams per system call (recvmmsg and sendmmsg on
// Linux; one at a time elsewhere). Their Message types are the same type.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// udpServer answers DNS on one UDP socket in batches: one read for up to
// udpBatch queries, each answered within the loop when that needs no
// upstream (a cached answer, a refused name: nearly all of them once the
// cache is warm), then one write for all the answers. A query that must
// go upstream is answered from a goroutine of its own, so a slow upstream
// holds up no other client. miekg/dns's server did a read, a goroutine and
// a write per query.
type udpServer struct {
	r    *Resolver
	conn *net.UDPConn
	bc   batchConn
	v6   bool
}

func newUDPServer(r *Resolver, conn *net.UDPConn) (*udpServer, error) {
	s := &udpServer{r: r, conn: conn}
	// The destination address of each query (IP_PKTINFO) is the source of
	// its answer: the socket is bound to the wildcard, and the answer must
	// come from the address the redirected query was delivered to.
	if conn.LocalAddr().(*net.UDPAddr).IP.To4() != nil {
		pc := ipv4.NewPacketConn(conn)
		if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
			return nil, err
		}
		s.bc = pc
	} else {
		pc := ipv6.NewPacketConn(conn)
		if err := pc.SetControlMessage(ipv6.FlagDst, true); err != nil {
			return nil, err
		}
		s.bc, s.v6 = pc, true
	}
	return s, nil
}

// start serves until the socket is closed; done is told when it ends.
func (s *udpServer) start(done *sync.WaitGroup) {
	done.Add(1)
	go func() {
		defer done.Done()
		s.serve()
	}()
}

// close closes the socket, which ends the loop.
func (s *udpServer) close() error { return s.conn.Close() }

func (s *udpServer) serve() {
	oobLen := len(ipv4.NewControlMessage(ipv4.FlagDst))
	if s.v6 {
		oobLen = len(ipv6.NewControlMessage(ipv6.FlagDst))
	}
	in := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, maxUDPQuery)}
		in[i].OOB = make([]byte, oobLen)
	}
	out := make([]ipv4.Message, 0, udpBatch)
	for {
		n, err := s.bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.r.log.Debug("resolver: read batch", "err", err)
			continue
		}
		out = out[:0]
		for i := range in[:n] {
			if w := s.handle(&in[i]); w != nil && w.reply != nil {
				out = append(out, ipv4.Message{Buffers: [][]byte{w.reply}, OOB: w.oob(), Addr: w.remote})
			}
		}
		for len(out) > 0 {
			k, err := s.bc.WriteBatch(out, 0)
			if err != nil {
				s.r.log.Debug("resolver: write batch", "err", err)
				break
			}
			out = out[k:]
		}
	}
}

// handle answers one datagram: in the loop (its writer then holds the
// answer) or from a goroutine (nil).
func (s *udpServer) handle(m *ipv4.Message) *udpWriter {
	remote, ok := m.Addr.(*net.UDPAddr)
	if !ok || m.Flags&msgTrunc != 0 {
		return nil
	}
	req := new(dns.Msg)
	if err := req.Unpack(m.Buffers[0][:m.N]); err != nil {
		return nil // not DNS: nothing to answer to
	}
	w := &udpWriter{s: s, remote: remote, local: s.dst(m.OOB[:m.NN])}
	if !s.r.serve(w, req, false) {
		select {
		case s.r.upstreamSlots <- struct{}{}:
		default:
			// As many queries wait for an upstream as we allow: a flood
			// of new names (audit mode, or a wildcard allowed in block
			// mode) must not grow goroutines without bound.
			s.r.overloaded(w, req)
			return w
		}
		w.direct = true
		s.r.inflight.Add(1)
		go func() {
			defer func() { <-s.r.upstreamSlots; s.r.inflight.Add(-1) }()
			s.r.serve(w, req, true)
		}()
		return nil
	}
	return w
}

// dst is the destination address a query was delivered to, from its
// control message; nil if absent.
func (s *udpServer) dst(oob []byte) net.IP {
	if s.v6 {
		var cm ipv6.ControlMessage
		if cm.Parse(oob) == nil {
			return cm.Dst
		}
		return nil
	}
	var cm ipv4.ControlMessage
	if cm.Parse(oob) == nil {
		return cm.Dst
	}
	return nil
}

// udpWriter is the dns.ResponseWriter of one query: it keeps the packed
// answer for the batch, or (direct) sends it at once.
type udpWriter struct {
	s      *udpServer
	remote *net.UDPAddr
	local  net.IP
	direct bool
	reply  []byte
}

func (w *udpWriter) LocalAddr() net.Addr {
	return &net.UDPAddr{IP: w.local, Port: w.s.conn.LocalAddr().(*net.UDPAddr).Port}
}

func (w *udpWriter) RemoteAddr() net.Addr { return w.remote }

func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

func (w *udpWriter) Write(b []byte) (int, error) {
	if !w.direct {
		w.reply = b
		return len(b), nil
	}
	n, _, err := w.s.conn.WriteMsgUDP(b, w.oob(), w.remote)
	return n, err
}

// oob is the control message that makes the answer's source the query's
// destination.
func (w *udpWriter) oob() []byte {
	if w.local == nil {
		return nil
	}
	if w.s.v6 {
		return (&ipv6.ControlMessage{Src: w.local}).Marshal()
	}
	return (&ipv4.ControlMessage{Src: w.local}).Marshal()
}

func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}
