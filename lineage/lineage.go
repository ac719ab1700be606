// Package lineage observes, in the kernel, which process did what: a table
// of processes fed by the exec, fork and exit tracepoints (kept a while
// after exit, so an event whose process is gone still names it and its
// parents), and the owner of every socket, copied to a map keyed by the
// addresses of each flow's first packet as the kernel builds it (before
// netfilter may drop it), so the firewall's readers can name the sender
// of a packet after the sender and its socket are gone.
//
// Every BPF program it attaches only observes: tracepoints, fentry, and
// cgroup socket hooks on the root cgroup that always allow (the egress
// one also clears Config.AcceptMark's bit, which the firewall set). Pids are global
// (the initial pid namespace), so the agent must run there.
package lineage

import (
	"errors"
	"log/slog"
	"net/netip"
	"time"
)

// ErrUnsupported is wrapped by Start when the kernel cannot run the
// programs (no BTF, no cgroup v2, no BPF permission, a program the verifier
// refused); the error says which.
var ErrUnsupported = errors.New("lineage: kernel-side capture unavailable")

// DisableEnv, when set to a non-empty value, makes Start fail with
// ErrUnsupported: the fallback path, for tests and for users who need it.
const DisableEnv = "HARDEN_RUNNER_NO_EBPF"

// Config configures a Tracker.
type Config struct {
	// Keep is how long a process stays in the table after it exited
	// (default 30 s).
	Keep time.Duration
	// Cgroup is the cgroup v2 directory the socket hooks attach to
	// (default: the root of the cgroup2 mount).
	Cgroup string
	// ICMPFresh is how recent an ICMP send to an address must be to name
	// an ICMP flow to it (default 1 s: the firewall's readers see the
	// packet within milliseconds).
	ICMPFresh time.Duration
	// DNSPort is the port of the agent's resolver, besides 53: LocalOwner
	// answers only for sockets that sent to one of them (0: port 53 only).
	DNSPort uint16
	// AcceptMark is the mark bit the firewall sets on the packets it
	// accepts as new flows to allowed destinations: a program on the
	// root cgroup's egress clears it and hands the packet's flow to
	// OnAccept's function (0: none is attached; see Tracker.AcceptMark).
	AcceptMark uint32
	// OnExec, if set, is called with each exec the table records, on the
	// tracker's reader as the event arrives (within milliseconds of the
	// exec) and before the table shows it, so that what it learns is
	// known to whoever finds the exec there: it must not block.
	OnExec func(Proc)
	// Log receives diagnostics; nil discards them.
	Log *slog.Logger
}

// Proc is what the table knows about one process.
type Proc struct {
	PID, PPID int
	UID       int
	Exe       string // the executable, resolved while the process lived if it could be
	Cmdline   string // arguments joined by single spaces, cut at 511 bytes
	Start     uint64 // task start time, CLOCK_MONOTONIC ns (0 if unknown)
	Cgroup    uint64 // cgroup v2 id
	Exited    bool
	// Seeded is true for processes read from /proc at Start (they were
	// running before the tracepoints were attached).
	Seeded bool
	// Forked is true when the table saw the process being made: PPID is
	// then the process that made it (not a sibling that made it with
	// CLONE_PARENT), and Execs counts the programs it has run since. A
	// process that exec'd once after its fork runs what its maker chose:
	// its command line is its maker's, not one it set itself.
	Forked bool
	Execs  int
}

// Owner is the process that made a socket, or last connected or sent on it.
type Owner struct {
	PID    int    // thread group id (the process)
	TID    int    // the thread
	UID    int    // real uid
	Cgroup uint64 // cgroup v2 id
	At     uint64 // CLOCK_MONOTONIC ns when it was recorded
}

// Stats counts what the tracker saw and lost.
type Stats struct {
	Events uint64 // process events read from the ring buffer
	Lost   uint64 // process events and flow records the kernel dropped (ring buffer full) or that were unreadable
	Procs  int    // processes in the table now
}

// IP protocol numbers the BPF side keys flows by.
const (
	protoICMP   = 1
	protoICMPv6 = 58
)

// flowKey is a flow as the BPF side keys it: without the local address
// (see bpf/lineage.c), and ICMP without ports.
func flowKey(proto uint8, src, dst netip.AddrPort) lineageLinFlow {
	var k lineageLinFlow
	k.Proto = proto
	k.Daddr = dst.Addr().As16()
	if proto == protoICMP || proto == protoICMPv6 {
		return k
	}
	k.Sport, k.Dport = src.Port(), dst.Port()
	return k
}

func localKey(proto uint8, src netip.AddrPort) lineageLinLocal {
	return lineageLinLocal{Sport: src.Port(), Proto: proto}
}

func owner(o lineageLinOwner) Owner {
	return Owner{PID: int(o.Tgid), TID: int(o.Pid), UID: int(o.Uid), Cgroup: o.Cgroup, At: o.Ktime}
}
