package flowlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/florianl/go-nflog/v2"
	"github.com/harden-runner/harden-runner/egress/packet"
	"github.com/harden-runner/harden-runner/event"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// go-nflog (florianl/go-nflog/v2) does the NFLOG netlink protocol: binding
// a group, copy mode, and decoding the attributes of each message.

const (
	// copyRange is how much of each packet the kernel copies to us: the IP
	// header, IPv6 extension headers and the ports.
	copyRange = 256
	// readBuffer is the netlink socket's receive buffer. A burst of new
	// flows beyond it is lost (ENOBUFS), so it is large.
	readBuffer = 8 << 20
	// maxConsecutiveErrors ends reading when the socket only fails.
	maxConsecutiveErrors = 100
)

// Reader reads one NFLOG group and emits a Flow per logged packet. Its
// methods are safe for concurrent use.
type Reader struct {
	cfg   Config
	queue chan lookup
	// rcvbuf is the receive buffer Start asks for (readBuffer; tests shrink it).
	rcvbuf int
	// capture, if set (by a test), sees each logged packet's payload.
	capture func([]byte)

	mu      sync.Mutex // guards the fields below
	started bool
	closed  bool
	nf      *nflog.Nflog
	ctx     context.Context
	cancel  context.CancelFunc

	// qmu orders hook and worker emits before Close's final Stats.
	qmu     sync.RWMutex
	qclosed bool
	workers sync.WaitGroup

	closeOnce sync.Once
	closeErr  error

	events, lost, unattributed, overflows atomic.Uint64
	consecutiveErrs                       atomic.Int32
	// draining is set by drain; drained is closed when the reading
	// goroutine has seen drain's marker.
	draining    atomic.Bool
	drained     chan struct{}
	drainedOnce sync.Once
	logLimit    rateLimit

	// Packet sequence numbers, touched only on go-nflog's reading goroutine
	// (hook and onError): lastSeq is the last one seen, and pending counts
	// overflows that no gap has accounted for yet.
	haveSeq bool
	lastSeq uint32
	pending atomic.Uint64
	// repeats suppresses retransmitted first packets (reading goroutine only).
	repeats    dedup
	duplicates atomic.Uint64
	// The kernel's accept records (Config.Accepts): accepted appends to
	// apending and wakes the accept goroutine, which owns accRepeats.
	amu        sync.Mutex
	apending   []packet.Accept
	aclosed    bool
	accWake    chan struct{}
	accStop    chan struct{}
	accDone    chan struct{}
	accSync    chan chan struct{}
	accRepeats dedup
	// inflight counts the flows handed to the lookup workers and not yet
	// emitted (Flush waits for them).
	inflight atomic.Int64
	// fold folds a process's repeated flows into one record per window;
	// foldDone ends its flusher.
	fold     *folder
	foldDone chan struct{}
	foldWG   sync.WaitGroup
}

// lookup is a flow waiting for its process.
type lookup struct {
	flow     event.Flow
	proto    string // as Owner takes it (packet.OwnerProto)
	src, dst netip.AddrPort
	uid      int // -1 if the kernel did not say
	// marked: logged under MarkedPrefix; dropped if the socket is ours.
	marked bool
}

// owner is the lookup for a flow: the container's for a forwarded one.
func (r *Reader) owner(l lookup) event.Process {
	if l.flow.Forward {
		return r.cfg.ForwardedOwner(l.proto, l.src, l.dst)
	}
	return r.cfg.Owner(l.proto, l.src, l.dst)
}

func newReader(cfg Config) *Reader {
	r := &Reader{cfg: cfg, queue: make(chan lookup, cfg.Queue), ctx: context.Background(), rcvbuf: readBuffer,
		drained: make(chan struct{}), foldDone: make(chan struct{})}
	r.fold = newFolder(cfg.Emit)
	return r
}

// Start binds the NFLOG group and returns once it is bound, so the caller
// can then install the rules that log to it. Reading goes on in the
// background until ctx ends or Close is called. Start may be called once.
func (r *Reader) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.closed {
		return ErrStarted
	}
	qthresh, timeout := batching(r.cfg.Batch)
	nf, err := nflog.Open(&nflog.Config{
		Group:    r.cfg.Group,
		Copymode: nflog.CopyPacket,
		Bufsize:  copyRange,
		// Without Batch, hand over each packet at once: the default holds
		// packets for up to a second, and by then a short-lived client and
		// its socket are gone, so its process cannot be found from /proc.
		// With it, one message per batch: one wake-up of the agent per
		// batch instead of per new flow.
		QThresh: qthresh,
		Timeout: timeout,
		// Number the packets, so that gaps count exactly what overflows lost.
		Flags:  nflog.FlagSeq,
		Logger: nflogLogger{r.cfg.Log},
	})
	if err != nil {
		return fmt.Errorf("flowlog: open nflog: %w", err)
	}
	if err := setReadBuffer(nf.Con, r.rcvbuf); err != nil {
		r.cfg.Log.Warn("flowlog: cannot enlarge the receive buffer; bursts may be lost", "err", err)
	}
	r.ctx, r.cancel = context.WithCancel(ctx)
	if err := nf.RegisterWithErrorFunc(r.ctx, r.hook, r.onError); err != nil {
		r.cancel()
		nf.Close()
		return fmt.Errorf("flowlog: bind nflog group %d: %w", r.cfg.Group, err)
	}
	if qthresh > 1 {
		// A batch is also handed over when the kernel's message buffer is
		// full, one page (about ten packets) unless told otherwise: at
		// thousands of new flows a second that was a wake-up of the agent
		// per ten flows.
		if err := r.config(nf, false, netlink.Attribute{Type: nfulaCfgNlBufSiz, Data: binary.BigEndian.AppendUint32(nil, nlBufSize)}); err != nil {
			r.cfg.Log.Warn("flowlog: cannot enlarge the kernel's batch buffer", "err", err)
		}
	}
	r.nf, r.started = nf, true
	r.startWorkers()
	r.startAccepts()
	r.foldWG.Add(1)
	go func() {
		defer r.foldWG.Done()
		r.fold.Run(foldInterval, r.foldDone)
	}()
	return nil
}

func (r *Reader) startWorkers() {
	for range r.cfg.Workers {
		r.workers.Add(1)
		go r.work()
	}
}

// batchPackets is the batch size with Config.Batch; nlBufSize is the
// kernel's message buffer for a batch then (its maximum), room for about
// 350 of our packets.
const (
	batchPackets = 256
	nlBufSize    = 128 << 10
)

// batching returns the kernel's queue threshold (packets) and flush
// timeout (1/100 s) for batch.
func batching(batch time.Duration) (qthresh, timeout uint32) {
	if batch <= 0 {
		return 1, 0
	}
	return batchPackets, uint32(max(1, (batch+10*time.Millisecond-1)/(10*time.Millisecond)))
}

// nfnetlink_log's configuration message (linux/netfilter/nfnetlink_log.h),
// which x/sys does not name.
const (
	nfulnlMsgConfig   = 1 // NFULNL_MSG_CONFIG
	nfulaCfgCmd       = 1 // NFULA_CFG_CMD
	nfulaCfgNlBufSiz  = 3 // NFULA_CFG_NLBUFSIZ
	nfulnlCfgCmdUnbnd = 2 // NFULNL_CFG_CMD_UNBIND
)

// drain makes the kernel hand over every packet it still holds for our
// group and waits until the reading goroutine has taken them (Close calls
// it after the firewall's rules are gone, so nothing new is logged):
// unbinding the group flushes its batch into our socket at once, and a
// second unbind, which finds no group, is answered with ENODEV, which the
// reading goroutine sees after every packet of that batch (onError then
// closes r.drained). Gives up after maxDrain (a reader stuck behind a full
// lookup queue that long has more than a batch to do; Close then counts
// nothing it did not see).
func (r *Reader) drain(nf *nflog.Nflog) {
	unbind := netlink.Attribute{Type: nfulaCfgCmd, Data: []byte{nfulnlCfgCmdUnbnd}}
	r.draining.Store(true)
	for _, ack := range []bool{false, true} {
		if err := r.config(nf, ack, unbind); err != nil {
			r.cfg.Log.Debug("flowlog: flush the kernel's batch", "err", err)
			return
		}
	}
	select {
	case <-r.drained:
	case <-time.After(maxDrain):
		r.cfg.Log.Warn("flowlog: packets still arriving at close; stopped waiting for them")
	}
}

// config sends our group's configuration message with attrs, asking for
// an acknowledgement (which the reading goroutine then sees) if ack. It
// does not wait for an answer: go-nflog's goroutine reads the socket.
func (r *Reader) config(nf *nflog.Nflog, ack bool, attrs ...netlink.Attribute) error {
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return err
	}
	// struct nfgenmsg: family, version, resource id (the group, big endian).
	data := append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, byte(r.cfg.Group >> 8), byte(r.cfg.Group)}, b...)
	flags := netlink.Request
	if ack {
		flags |= netlink.Acknowledge
	}
	_, err = nf.Con.Send(netlink.Message{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_ULOG<<8 | nfulnlMsgConfig), Flags: flags}, Data: data})
	return err
}

// maxDrain bounds drain.
const maxDrain = 2 * time.Second

// setReadBuffer sets SO_RCVBUFFORCE (root may exceed net.core.rmem_max),
// falling back to SO_RCVBUF.
func setReadBuffer(c *netlink.Conn, n int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return c.SetReadBuffer(n)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil || serr != nil {
		return c.SetReadBuffer(n)
	}
	return nil
}

// Close stops reading, waits for pending lookups, and emits the reader's
// event.Stats (and a Note if the receive buffer overflowed). It is safe to
// call twice, and before Start.
func (r *Reader) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		nf0 := r.nf
		r.mu.Unlock()
		if nf0 != nil {
			r.drain(nf0)
		}
		r.mu.Lock()
		r.closed = true
		nf, cancel := r.nf, r.cancel
		r.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		if nf != nil {
			if err := nf.Close(); err != nil {
				r.closeErr = fmt.Errorf("flowlog: close nflog: %w", err)
			}
		}
		r.stopAccepts()
		r.qmu.Lock()
		r.qclosed = true
		close(r.queue)
		r.qmu.Unlock()
		r.workers.Wait()
		close(r.foldDone)
		r.foldWG.Wait()
		r.fold.Flush() // every repeat before the Stats that count them
		r.cfg.Log.Debug("flowlog: closed", "events", r.events.Load(), "repeats", r.duplicates.Load())
		// An overflow that no later packet measured lost at least one.
		r.lost.Add(r.pending.Swap(0))
		if n := r.overflows.Load(); n > 0 {
			r.cfg.Emit(event.Record{Note: &event.Note{
				Time: time.Now(), Component: event.ComponentFlowlog, Level: event.LevelWarning,
				Message: fmt.Sprintf("the packet log's receive buffer overflowed %d times: %d new flows were not reported", n, r.lost.Load()),
			}})
		}
		st := r.Stats()
		r.cfg.Emit(event.Record{Stats: &st})
	})
	return r.closeErr
}

// AddLost counts n flows that were lost before they reached the reader
// (the caller knows from elsewhere), in the Stats Close emits.
func (r *Reader) AddLost(n uint64) { r.lost.Add(n) }

// Flush emits the repeats folded so far (a snapshot's journal must hold
// every flow its Stats count). Before that it takes the accept records
// the kernel holds (Config.Accepts: up to 20 ms of allowed flows) and
// waits, up to maxSettle, until every flow handed to the lookup workers
// is emitted, so that a snapshot has the flows made before it was asked
// for. Safe for concurrent use.
func (r *Reader) Flush() {
	r.syncAccepts()
	deadline := time.Now().Add(maxSettle)
	for r.inflight.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	r.fold.Flush()
}

// maxSettle bounds Flush's wait for lookups in flight: a snapshot does
// not wait on a queue that a flood keeps full.
const maxSettle = 500 * time.Millisecond

// hook handles one logged packet, on go-nflog's reading goroutine: owner
// lookups go to the workers. It blocks only with Config.Batch, when the
// workers are behind.
func (r *Reader) hook(a nflog.Attribute) int {
	r.consecutiveErrs.Store(0)
	if a.Seq != nil {
		if r.haveSeq {
			if gap := *a.Seq - r.lastSeq - 1; gap != 0 && gap < 1<<31 {
				r.lost.Add(uint64(gap))
				r.pending.Store(0)
			}
		}
		r.haveSeq, r.lastSeq = true, *a.Seq
	}
	if a.Prefix == nil || a.Payload == nil {
		return 0
	}
	v, fwd, ok := ParsePrefix(*a.Prefix)
	marked := !ok && *a.Prefix == MarkedPrefix
	if marked {
		v, ok = event.Audit, true
	}
	if !ok {
		return 0 // another rule's packet on our group
	}
	if r.capture != nil {
		r.capture(*a.Payload)
	}
	pkt, l4, err := packet.ParseL4(*a.Payload)
	if !pkt.Dst.IsValid() {
		r.lost.Add(1)
		if r.logLimit.allow() {
			r.cfg.Log.Warn("flowlog: unparsable logged packet", "err", err, "len", len(*a.Payload))
		}
		return 0
	}
	now := time.Now() // not NFULA_TIMESTAMP: TCP's departure time is monotonic, not wall clock
	if r.repeats.seen(key(pkt, l4, fwd), now) {
		r.duplicates.Add(1)
		return 0
	}
	f := event.Flow{
		Time:     now,
		IP:       pkt.Dst.Addr().String(),
		Port:     pkt.Dst.Port(),
		Protocol: packet.ProtoName(pkt.Proto),
		Verdict:  v,
		Forward:  fwd,
	}
	if marked {
		f.Reason = ReasonMarked
	}
	uid := -1
	if a.UID != nil {
		uid = int(*a.UID)
	}
	r.dispatch(f, pkt, uid, marked)
	return 0
}

// dispatch sends f, the flow of pkt, to the workers for its process, or
// emits it without one if no lookup can name it. uid is the socket's
// (-1: unknown).
func (r *Reader) dispatch(f event.Flow, pkt packet.Packet, uid int, marked bool) {
	fwd := f.Forward
	r.qmu.RLock()
	defer r.qmu.RUnlock()
	if r.qclosed {
		r.lost.Add(1) // logged while closing
		return
	}
	oproto, known := packet.OwnerProto(pkt.Proto)
	known = known && (r.cfg.AllProtocols || pkt.Proto == packet.TCP || pkt.Proto == packet.UDP)
	switch {
	case fwd && (r.cfg.ForwardedOwner == nil || !known):
		f.Process.Unknown = UnknownForwarded
	case !known:
		f.Process.Unknown = UnknownProtocol
	case !fwd && r.cfg.Owner == nil:
		f.Process.Unknown = UnknownNoLookup
	default:
		l := lookup{flow: f, proto: oproto, src: pkt.Src, dst: pkt.Dst, uid: uid, marked: marked}
		r.inflight.Add(1)
		select {
		case r.queue <- l:
			return
		default:
		}
		if r.cfg.Batch > 0 || r.cfg.Accepts != nil {
			// The kernel's records outlive the socket: better late than
			// unnamed. The kernel's buffer holds what arrives meanwhile
			// (and counts what it cannot).
			r.queue <- l
			return
		}
		r.inflight.Add(-1)
		f.Process.Unknown = UnknownQueueFull
	}
	if uid >= 0 {
		f.Process.UID = uid
	}
	r.emit(f)
}

// work runs owner lookups until Close.
func (r *Reader) work() {
	defer r.workers.Done()
	self := os.Getpid()
	for l := range r.queue {
		p := r.owner(l)
		if l.marked && p.PID == self {
			r.inflight.Add(-1)
			continue // the relay's own connection: it records the flow itself
		}
		if p.PID == 0 && l.uid >= 0 {
			p.UID = l.uid // the kernel knows the socket's uid even when we lost the pid
		}
		l.flow.Process = p
		r.emit(l.flow)
		r.inflight.Add(-1)
	}
}

func (r *Reader) emit(f event.Flow) {
	r.events.Add(1)
	if f.Process.PID == 0 || f.Process.Unknown != "" {
		r.unattributed.Add(1)
	}
	r.fold.Add(kindOf(&f), f)
}

// onError handles a receive error; 0 keeps reading.
func (r *Reader) onError(err error) int {
	if r.ctx.Err() != nil {
		return 1
	}
	if errors.Is(err, unix.ENODEV) && r.draining.Load() {
		r.drainedOnce.Do(func() { close(r.drained) })
		return 1 // drain's marker: everything before it is read
	}
	if errors.Is(err, unix.ENOBUFS) {
		// The next packet's sequence number tells how many were lost.
		r.overflows.Add(1)
		r.pending.Add(1)
		if r.logLimit.allow() {
			r.cfg.Log.Warn("flowlog: packet log overflowed; new flows were lost")
		}
		return 0
	}
	var oe *netlink.OpError
	if errors.As(err, &oe) && (oe.Timeout() || oe.Temporary()) {
		return 0
	}
	if r.consecutiveErrs.Add(1) > maxConsecutiveErrors {
		r.cfg.Log.Error("flowlog: packet log unreadable; stopped", "err", err)
		r.cfg.Emit(event.Record{Note: &event.Note{
			Time: time.Now(), Component: event.ComponentFlowlog, Level: event.LevelError,
			Message: "the packet log stopped after repeated errors; later flows are not reported: " + err.Error(),
		}})
		return 1
	}
	if r.logLimit.allow() {
		r.cfg.Log.Warn("flowlog: receive", "err", err)
	}
	return 0
}

// rateLimit lets one message through per interval.
type rateLimit struct{ last atomic.Int64 }

func (l *rateLimit) allow() bool {
	now := time.Now().UnixNano()
	last := l.last.Load()
	return now-last >= int64(10*time.Second) && l.last.CompareAndSwap(last, now)
}

// nflogLogger sends go-nflog's messages to the debug log: its errors
// include the normal end of reading.
type nflogLogger struct{ log *slog.Logger }

func (l nflogLogger) Debugf(format string, args ...any) {
	l.log.Debug("flowlog: nflog: " + fmt.Sprintf(format, args...))
}

func (l nflogLogger) Errorf(format string, args ...any) {
	l.log.Debug("flowlog: nflog: " + fmt.Sprintf(format, args...))
}

// Stats returns the reader's counts so far (what Close emits): flows
// logged, lost (NFLOG overflows, packets it could not parse) and without
// a process. Safe for concurrent use.
func (r *Reader) Stats() event.Stats {
	return event.Stats{Component: event.ComponentFlowlog, Events: r.events.Load(), Lost: r.lost.Load() + r.pending.Load(),
		Unattributed: r.unattributed.Load()}
}
