package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/killwatch"
	"github.com/harden-runner/harden-runner/lineage"
	"github.com/harden-runner/harden-runner/proc"
	"golang.org/x/sys/unix"
)

// openKillwatch starts (or, after a kill, takes over) the kernel's record
// of who signals the daemon, pinned per state dir. The error says why it
// cannot (no BPF, no bpf filesystem): a gap then says only how the agent
// ended.
func openKillwatch(stateDir string) (*killwatch.Watch, error) {
	if v := os.Getenv(lineage.DisableEnv); v != "" {
		return nil, fmt.Errorf("eBPF disabled (%s=%s)", lineage.DisableEnv, v)
	}
	fs, err := killwatch.EnsureFS(killwatch.DefaultFS)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(stateDir))
	return killwatch.Open(filepath.Join(fs, "harden-runner", hex.EncodeToString(sum[:8])))
}

// class says how a signal can explain an agent's end: 3 a kill, 2 a stop
// (its supervisor then kills it), 1 another that ends a process by
// default and that the agent does not catch, 0 one it catches or that
// ends nothing (SIGTERM and SIGINT are reported as they come, SIGUSR1 is
// the snapshot request).
func class(sig syscall.Signal) int {
	switch sig {
	case syscall.SIGKILL:
		return 3
	case syscall.SIGSTOP, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU:
		return 2
	case syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGCONT, syscall.SIGCHLD,
		syscall.SIGURG, syscall.SIGWINCH, syscall.SIGPIPE:
		return 0
	}
	return 1
}

// culprit picks, of the signals sent to a dead agent, the one that
// explains its end: one that arrived and ends or stops a process, sent by
// someone other than its supervisor (which kills an agent a step froze),
// the strongest, the latest. None when no such signal came: the agent
// ended some other way (a crash), and an earlier harmless signal's sender
// is not to blame.
func culprit(kills []killwatch.Kill, supervisor int) (killwatch.Kill, bool) {
	var cands []killwatch.Kill
	for _, k := range kills {
		if !k.Ignored && class(k.Signal) > 0 {
			cands = append(cands, k)
		}
	}
	if len(cands) == 0 {
		return killwatch.Kill{}, false
	}
	outside := func(k killwatch.Kill) int {
		if k.Kernel || k.Sender == supervisor || k.Sender == 1 {
			return 0
		}
		return 1
	}
	return slices.MaxFunc(cands, func(a, b killwatch.Kill) int {
		if d := outside(a) - outside(b); d != 0 {
			return d
		}
		if d := class(a.Signal) - class(b.Signal); d != 0 {
			return d
		}
		return int(a.At - b.At)
	}), true
}

// sender describes who sent k: from /proc while it still runs (the same
// process: the name the kernel recorded, started before the signal), else
// the recorded name (chosen by the process: the text quotes it). A
// sender outside our pid namespace has no pid here.
func sender(k killwatch.Kill) (*event.Process, string) {
	sig := unix.SignalName(k.Signal)
	if k.Kernel {
		return nil, fmt.Sprintf("%s raised by the kernel itself (the OOM killer, a hangup), not sent by a process", sig)
	}
	if k.Sender == 0 {
		return &event.Process{UID: k.UID, Exe: k.Comm, Unknown: "outside the agent's pid namespace"},
			fmt.Sprintf("%s sent from outside the agent's pid namespace (global pid %d, %q, uid %d; parent %q)", sig, k.Global, k.Comm, k.UID, k.ParentComm)
	}
	var p event.Process
	if sameProcess(k) {
		p = proc.Info(k.Sender)
	}
	if p.PID == 0 || p.Unknown != "" {
		p = event.Process{PID: k.Sender, UID: k.UID, Exe: k.Comm,
			Parents: []event.Ancestor{{PID: k.PPID, Exe: k.ParentComm}}}
	}
	parent := fmt.Sprintf("parent pid %d %q", k.PPID, k.ParentComm)
	if k.PPID == 0 {
		parent = fmt.Sprintf("parent %q, outside the agent's pid namespace", k.ParentComm)
	}
	return &p, fmt.Sprintf("%s sent by pid %d (%q, uid %d; %s)", sig, k.Sender, k.Comm, k.UID, parent)
}

// sameProcess reports whether k's sender still runs as the process that
// sent it: its name is the recorded one and it started before the signal
// (not a new process on a reused pid).
func sameProcess(k killwatch.Kill) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", k.Sender))
	if err != nil || strings.TrimSuffix(string(comm), "\n") != k.Comm {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", k.Sender))
	if err != nil {
		return false
	}
	// Field 22, start time in clock ticks since boot, after the ")" that
	// ends the name (which may hold spaces and parentheses).
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return false
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return false
	}
	const userHZ = 100 // USER_HZ, fixed by the kernel's ABI
	return time.Duration(ticks)*(time.Second/userHZ) <= k.At
}

// nameKiller adds to gap who ended the agent pid, from w's records.
func nameKiller(w *killwatch.Watch, gap *event.Gap, pid, supervisor int, log *slog.Logger) {
	kills, err := w.Take(pid)
	if err != nil {
		log.Warn("agent: read who signalled the previous agent", "err", err)
	}
	k, ok := culprit(kills, supervisor)
	if !ok {
		return
	}
	p, what := sender(k)
	gap.Process = p
	gap.Reason += "; " + what
}
