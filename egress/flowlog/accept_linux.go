package flowlog

import (
	"encoding/binary"
	"time"

	"github.com/harden-runner/harden-runner/egress/packet"
	"github.com/harden-runner/harden-runner/event"
	"golang.org/x/sys/unix"
)

// maxPendingAccepts bounds the accept records waiting for the accept
// goroutine (5.8 MB, twice for the batch in hand); more are counted lost.
const maxPendingAccepts = 1 << 16

// startAccepts subscribes to Config.Accepts, if set. r.mu held.
func (r *Reader) startAccepts() {
	if r.cfg.Accepts == nil {
		return
	}
	r.accWake = make(chan struct{}, 1)
	r.accStop = make(chan struct{})
	r.accDone = make(chan struct{})
	r.accSync = make(chan chan struct{})
	go r.acceptLoop()
	r.cfg.Accepts.OnAccept(r.accepted)
}

// stopAccepts takes what the kernel still holds and waits until the
// accept goroutine has dispatched it (Close, after the firewall's rules
// are gone). Records that arrive later are counted lost.
func (r *Reader) stopAccepts() {
	if r.accStop == nil {
		return
	}
	r.cfg.Accepts.Drain()
	close(r.accStop)
	<-r.accDone
}

// syncAccepts takes what the kernel holds and waits until the accept
// goroutine has dispatched it (Flush). It returns at once without
// Config.Accepts, or once stopAccepts has run.
func (r *Reader) syncAccepts() {
	r.mu.Lock()
	req := r.accSync
	r.mu.Unlock()
	if req == nil {
		return
	}
	r.cfg.Accepts.Drain()
	done := make(chan struct{})
	select {
	case req <- done:
		<-done
	case <-r.accDone:
	}
}

// accepted queues a batch of accept records; it never blocks (it runs
// on whichever goroutine drained the kernel's ring, a flow lookup too).
func (r *Reader) accepted(b []packet.Accept) {
	r.amu.Lock()
	if r.aclosed || len(r.apending)+len(b) > maxPendingAccepts {
		r.amu.Unlock()
		r.lost.Add(uint64(len(b)))
		return
	}
	r.apending = append(r.apending, b...)
	r.amu.Unlock()
	select {
	case r.accWake <- struct{}{}:
	default:
	}
}

// acceptLoop turns accept records into flows until stopAccepts.
func (r *Reader) acceptLoop() {
	defer close(r.accDone)
	var batch []packet.Accept
	for {
		stop := false
		var synced chan struct{}
		select {
		case <-r.accWake:
		case synced = <-r.accSync:
		case <-r.accStop:
			stop = true
		}
		r.amu.Lock()
		batch, r.apending = r.apending, batch[:0]
		r.aclosed = stop
		r.amu.Unlock()
		if len(batch) > 0 {
			// The records' times are CLOCK_MONOTONIC: once per batch, the
			// offset to the wall clock.
			var ts unix.Timespec
			_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
			now, mono := time.Now(), ts.Nano()
			for i := range batch {
				r.accept(&batch[i], now.Add(time.Duration(int64(batch[i].At)-mono)))
			}
		}
		if synced != nil {
			close(synced)
		}
		if stop {
			return
		}
	}
}

// accept is hook for one accept record: an allowed flow the host sent at t.
func (r *Reader) accept(a *packet.Accept, t time.Time) {
	pkt := packet.Packet{Src: a.Src, Dst: a.Dst, Proto: a.Proto}
	var l4 [8]byte // as the transport header has it: ports, then TCP's sequence number
	binary.BigEndian.PutUint32(l4[4:], a.ISN)
	if r.accRepeats.seen(key(pkt, l4[:], false), t) {
		r.duplicates.Add(1)
		return
	}
	f := event.Flow{
		Time:     t,
		IP:       pkt.Dst.Addr().String(),
		Port:     pkt.Dst.Port(),
		Protocol: packet.ProtoName(pkt.Proto),
		Verdict:  event.Allowed,
	}
	r.dispatch(f, pkt, int(a.UID), false)
}
