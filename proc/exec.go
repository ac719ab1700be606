package proc

import (
	"context"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// execSettleMax bounds how long InfoAfterExec waits for an exec to finish.
// Loading a program takes well under a millisecond on an idle machine; on a
// loaded 2-core VM it has been seen to take tens of milliseconds.
const execSettleMax = 500 * time.Millisecond

// InfoAfterExec is Info for a process known to be executing prog (a
// fanotify FAN_OPEN_EXEC event names the file being executed). Such events
// arrive while execve is still loading prog, when /proc shows the old image
// (exe and command line of the process that called exec) or the new exe
// without its command line. This is the one exec-settle rule: read again
// until /proc/PID/exe is prog and the command line is there, the process is
// gone, ctx ends or 500 ms pass, so the pre-exec image is never named as
// prog's process. If the exec never shows (it failed after opening prog,
// or prog is a script whose interpreter is what runs) the last reading is
// returned as it is: the process that opened prog for exec.
func InfoAfterExec(ctx context.Context, pid int, prog string) event.Process {
	deadline := time.Now().Add(execSettleMax)
	wait := 200 * time.Microsecond
	for {
		p := info(pid, nil)
		if p.Unknown != "" || settled(p, prog) || time.Now().After(deadline) {
			return p
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return p
		case <-t.C:
		}
		wait = min(2*wait, 10*time.Millisecond)
	}
}

// settled reports whether p runs prog with its command line in place:
// an exec of prog has finished.
func settled(p event.Process, prog string) bool { return p.Exe == prog && p.Cmdline != "" }
