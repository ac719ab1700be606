// Package gate holds the first packet of every new flow the policy does not
// allow (blocked in block mode, audit in audit mode) in an NFQUEUE until the
// process behind it is known, records the flow, and only then lets the
// kernel decide: accept (audit) or reject (block).
//
// Why hold it: a blocked TCP connect fails the moment the kernel answers it
// with a reset, and a short-lived client exits right after; read from an
// asynchronous log, its socket is often gone before anyone asks whose it
// was. While the packet waits here the connecting process is still inside
// connect(), so its socket can be found every time. Allowed flows are not
// held (they are logged by egress/flowlog and attributed asynchronously).
//
// Rejecting: NFQUEUE cannot answer with a reset, so the gate gives the
// packet back with NF_REPEAT and the firewall's reject mark; the firewall's
// first rule rejects marked packets (TCP reset, ICMP admin-prohibited).
// If the agent dies, the queue has no reader and the kernel drops what is
// queued: the firewall fails closed, clients time out instead of failing fast.
package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"

	"github.com/harden-runner/harden-runner/egress/packet"
	"github.com/harden-runner/harden-runner/event"
)

// Defaults for Config fields left zero.
const (
	DefaultQueue = 4852
	backlog      = 4096
)

// Config configures a Gate.
type Config struct {
	Queue      uint16 // first NFQUEUE number the firewall's deny chains send to
	Queues     uint16 // how many consecutive queues (the firewall balances flows over them); default 1
	Block      bool   // reject released packets; otherwise accept them
	RejectMark uint32 // mark that makes the firewall reject a packet (block mode)
	NetNS      int    // netns fd; 0 = the caller's
	Emit       event.Emit
	// Owner finds the process behind a local socket. May be nil.
	Owner func(proto string, local, remote netip.AddrPort) event.Process
	// ForwardedOwner finds it for a container's flow the host routes. May be nil.
	ForwardedOwner func(proto string, local, remote netip.AddrPort) event.Process
	Log            *slog.Logger
}

// Gate reads one NFQUEUE. Start once, Close once (Close is safe to repeat).
type Gate struct {
	cfg    Config
	log    *slog.Logger
	nfs    []*nfqueue.Nfqueue // one reader each; owner lookups run in parallel
	cancel context.CancelFunc

	events, unattributed, verdictErrs, readErrs atomic.Uint64
	closing                                     atomic.Bool
	closeOnce                                   sync.Once
}

type held struct {
	id      uint32
	payload []byte
	forward bool
	uid     *uint32
	at      time.Time
}

// New validates cfg. It does no I/O.
func New(cfg Config) (*Gate, error) {
	if cfg.Emit == nil {
		return nil, errors.New("gate: no Emit func")
	}
	if cfg.Block && cfg.RejectMark == 0 {
		return nil, errors.New("gate: block mode needs a reject mark")
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Queues == 0 {
		cfg.Queues = 1
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Gate{cfg: cfg, log: cfg.Log}, nil
}

// Queue returns the NFQUEUE number the gate reads.
func (g *Gate) Queue() uint16 { return g.cfg.Queue }

// Start binds the queues and returns once they are bound, so the firewall
// can send packets to them. Packets are handled until ctx ends or Close.
func (g *Gate) Start(ctx context.Context) error {
	ctx, g.cancel = context.WithCancel(ctx)
	for i := range g.cfg.Queues {
		q := g.cfg.Queue + i
		nf, err := nfqueue.Open(&nfqueue.Config{
			NfQueue:      q,
			MaxPacketLen: 128, // headers are all we read
			MaxQueueLen:  backlog,
			Copymode:     nfqueue.NfQnlCopyPacket,
			Flags:        nfqueue.NfQaCfgFlagUIDGid,
			WriteTimeout: time.Second,
			NetNS:        g.cfg.NetNS,
		})
		if err != nil {
			g.stop()
			return fmt.Errorf("gate: open queue %d: %w", q, err)
		}
		// ENOBUFS must not end the reader: the kernel dropped messages (counted).
		_ = nf.SetOption(netlink.NoENOBUFS, true)
		g.nfs = append(g.nfs, nf)
		hook := func(a nfqueue.Attribute) int { return g.hook(nf, a) }
		if err := nf.RegisterWithErrorFunc(ctx, hook, g.onError); err != nil {
			g.stop()
			return fmt.Errorf("gate: bind queue %d: %w", q, err)
		}
	}
	return nil
}

// stop ends every reader and closes their sockets.
func (g *Gate) stop() error {
	g.closing.Store(true)
	if g.cancel != nil {
		g.cancel()
	}
	var errs []error
	for _, nf := range g.nfs {
		errs = append(errs, nf.Close())
	}
	return errors.Join(errs...)
}

// hook runs on the netlink reader goroutine and does the whole job there:
// go-nfqueue's verdicts share the reader's netlink socket, and a verdict
// sent from another goroutine waits for the reader's next message. Warm
// owner lookups take tens of microseconds.
func (g *Gate) hook(nf *nfqueue.Nfqueue, a nfqueue.Attribute) int {
	if a.PacketID == nil {
		return 0
	}
	h := held{id: *a.PacketID, uid: a.UID, at: time.Now()}
	if a.Payload != nil {
		h.payload = *a.Payload
	}
	h.forward = a.Hook != nil && *a.Hook == 2 // NF_INET_FORWARD
	g.release(nf, h, event.Process{})
	return 0
}

func (g *Gate) onError(err error) int {
	if g.closing.Load() {
		return 1
	}
	g.readErrs.Add(1)
	var op *netlink.OpError
	if errors.As(err, &op) && (op.Timeout() || op.Temporary()) {
		return 0
	}
	if errors.Is(err, context.Canceled) {
		return 1
	}
	g.log.Warn("gate: read", "err", err)
	return 0
}

// release records the flow (looking its process up unless given one) and
// gives the packet back to the kernel.
func (g *Gate) release(nf *nfqueue.Nfqueue, h held, proc event.Process) {
	pkt, perr := packet.Parse(h.payload)
	f := event.Flow{Time: h.at, Forward: h.forward, Verdict: event.Audit}
	if g.cfg.Block {
		f.Verdict = event.Blocked
	}
	if perr == nil {
		f.IP = pkt.Dst.Addr().String()
		f.Port = pkt.Dst.Port()
		f.Protocol = packet.ProtoName(pkt.Proto)
		if proc.Unknown == "" && proc.PID == 0 {
			proc = g.owner(pkt, h.forward)
		}
	} else if proc.Unknown == "" {
		proc.Unknown = "unparsable packet"
	}
	if proc.PID == 0 {
		g.unattributed.Add(1)
		if h.uid != nil {
			proc.UID = int(*h.uid)
		} else {
			proc.UID = -1
		}
	}
	f.Process = proc
	var err error
	if g.cfg.Block {
		err = nf.SetVerdictWithOption(h.id, nfqueue.NfRepeat, nfqueue.WithMark(g.cfg.RejectMark))
	} else {
		err = nf.SetVerdict(h.id, nfqueue.NfAccept)
	}
	if err != nil {
		g.verdictErrs.Add(1)
	}
	g.events.Add(1)
	g.cfg.Emit(event.Record{Flow: &f})
}

func (g *Gate) owner(p packet.Packet, forward bool) event.Process {
	lookup := g.cfg.Owner
	if forward {
		lookup = g.cfg.ForwardedOwner
		if lookup == nil {
			return event.Process{Unknown: "container (forwarded traffic)"}
		}
	}
	if lookup == nil {
		return event.Process{Unknown: "no lookup"}
	}
	proto, ok := packet.OwnerProto(p.Proto)
	if !ok {
		return event.Process{Unknown: "no socket lookup for " + packet.ProtoName(p.Proto)}
	}
	return lookup(proto, p.Src, p.Dst)
}

// Close stops reading and emits the gate's Stats. Packets still in the
// kernel queue afterwards are dropped by the kernel (fail closed). Safe to
// call twice.
func (g *Gate) Close() error {
	var err error
	g.closeOnce.Do(func() {
		if g.nfs == nil {
			return
		}
		err = g.stop()
		st := g.Stats()
		g.cfg.Emit(event.Record{Stats: &st})
		if err != nil {
			err = fmt.Errorf("gate: close: %w", err)
		}
	})
	return err
}

// Stats returns the gate's counts so far (what Close emits). Safe for
// concurrent use.
func (g *Gate) Stats() event.Stats {
	return event.Stats{Component: event.ComponentGate, Events: g.events.Load(), Lost: g.verdictErrs.Load(),
		Unattributed: g.unattributed.Load()}
}
