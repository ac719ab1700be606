// Package killwatch records, in the kernel, who sends signals to the
// agent, so that an agent restarted after a SIGKILL (or a SIGSTOP its
// supervisor ended) can name the process that did it.
//
// A BPF program on the signal_generate tracepoint runs in the sender as a
// signal is queued and keeps the sender of each signal to a watched pid in
// a map. The program's link and its maps are pinned in a bpf filesystem,
// so they outlive the agent; the successor opens the pins, reads the
// record of its dead predecessor and watches itself. A clean stop removes
// the pins (Remove).
package killwatch

import (
	"syscall"
	"time"
)

// Kill is who sent one signal to a watched process (the last time it did).
type Kill struct {
	Signal syscall.Signal
	// Sender is the sending process (tgid) and PPID its parent, as the
	// watched process's pid namespace names them (0: outside it); Global
	// is the sender's tgid in the initial namespace, SenderTID its thread
	// there, UID its real uid. Comm and ParentComm are their names as the
	// kernel keeps them (15 bytes, chosen by the process: data).
	Sender, Global, SenderTID, UID, PPID int
	Comm, ParentComm                     string
	// Count is how many times this signal came from anyone; Ignored is
	// set when the kernel did not deliver it (the process ignores it).
	// Kernel is set when the kernel raised it itself (the OOM killer, a
	// hangup): the process that ran then did not send it. A record is not
	// replaced by a later undelivered one (a SIGKILL to the dead agent).
	Count   int
	Ignored bool
	Kernel  bool
	// At is when, as a CLOCK_MONOTONIC time.
	At time.Duration
}
