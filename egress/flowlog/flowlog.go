// Package flowlog reads the packets that the firewall's rules log to an
// NFLOG group (the first packet of every new outbound or forwarded flow)
// and turns each into an event.Flow with its verdict, taken from the log
// prefix, and the process that sent it. With Config.Accepts, the host's
// allowed flows come from the kernel's accept records instead (the
// firewall marks them rather than logging them). It owns the prefix convention the
// firewall's rules use (Prefix, ParsePrefix).
package flowlog

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/harden-runner/harden-runner/egress/packet"
	"github.com/harden-runner/harden-runner/event"
)

// AcceptSource is the kernel's record of the host's new allowed flows
// (lineage.Tracker, with the firewall's Config.AcceptMark): the packets the firewall accepted, which it then
// marks instead of logging them.
type AcceptSource interface {
	// OnAccept sets the function the records go to; it never blocks.
	OnAccept(func([]packet.Accept))
	// Drain hands over what the kernel recorded so far before it returns.
	Drain()
}

// Config configures a Reader.
type Config struct {
	// Group is the NFLOG group the firewall's log rules send to.
	Group uint16
	// Emit records each flow and, at Close, the reader's event.Stats.
	// Required; called from several goroutines.
	Emit event.Emit
	// Owner finds the process behind a local socket (proc.Finder.Owner).
	// It is called for the TCP and UDP flows the host itself sent (and,
	// with AllProtocols, UDP-Lite, ICMP and ICMPv6; proto as packet.OwnerProto
	// names it), from a few worker goroutines. May be nil: flows then say
	// Unknown="no lookup".
	Owner func(proto string, local, remote netip.AddrPort) event.Process
	// ForwardedOwner does the same for the flows the host routed
	// from a container (proc.Finder.ForwardedOwner). May be nil: those
	// flows then say Unknown=UnknownForwarded.
	ForwardedOwner func(proto string, local, remote netip.AddrPort) event.Process
	// AllProtocols says Owner can place UDP-Lite, ICMP and ICMPv6 flows
	// too (it asks the kernel's records: proc.Finder.WithLineage).
	AllProtocols bool
	// Batch lets the kernel hold logged packets for up to this long (in
	// steps of 10 ms, the kernel's unit) and hand them over many per
	// message, and makes a full lookup queue wait instead of emitting
	// flows without their process. Only for an Owner that answers from
	// records that outlive the socket (the kernel's, proc.Finder with
	// lineage): looked up from /proc after the fact, a short-lived
	// client is gone by then. 0 (the default) hands each packet over at
	// once. Close has the kernel hand over what it still holds.
	Batch time.Duration
	// Accepts, if set, is where the host's allowed flows come from
	// instead of the NFLOG group (forwarded ones and the other verdicts
	// still come from the group). As with Batch, a full lookup queue
	// makes them wait rather than go without their process.
	Accepts AcceptSource
	// Log receives the reader's own diagnostics; nil discards them.
	Log *slog.Logger

	// Workers is the number of goroutines that run Owner (default 2).
	Workers int
	// Queue is how many flows may wait for an Owner lookup (default 4096);
	// when it is full, flows are emitted without one.
	Queue int
}

// Unknown reasons the reader puts in event.Process.Unknown.
const (
	UnknownForwarded = "forwarded (container)"
	UnknownNoLookup  = "no lookup"
	UnknownQueueFull = "lookup queue full"
	UnknownProtocol  = "no lookup for this protocol"
)

// maxBatch bounds Config.Batch: a second is the kernel's own default hold.
const maxBatch = time.Second

// ErrStarted is returned by Start when the reader was started or closed before.
var ErrStarted = errors.New("flowlog: already started")

// New returns a Reader for cfg. It validates cfg and does no I/O.
func New(cfg Config) (*Reader, error) {
	if cfg.Emit == nil {
		return nil, errors.New("flowlog: Config.Emit is nil")
	}
	if cfg.Workers < 0 || cfg.Queue < 0 || cfg.Batch < 0 {
		return nil, errors.New("flowlog: negative Workers, Queue or Batch")
	}
	if cfg.Batch > maxBatch {
		return nil, fmt.Errorf("flowlog: Batch %v is over %v", cfg.Batch, maxBatch)
	}
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.Queue == 0 {
		cfg.Queue = 4096
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return newReader(cfg), nil
}
