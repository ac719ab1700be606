package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/killwatch"
	"github.com/harden-runner/harden-runner/proc"
	"golang.org/x/sys/unix"
)

// openKillwatch starts (or, after a kill, takes over) the kernel's record
// of who signals the daemon, pinned per state dir. nil when the kernel or
// the machine cannot: the gap then says only how the agent ended.
func openKillwatch(stateDir string, log *slog.Logger) *killwatch.Watch {
	if os.Getenv("HARDEN_RUNNER_NO_EBPF") != "" {
		return nil
	}
	fs, err := killwatch.EnsureFS(killwatch.DefaultFS)
	if err != nil {
		log.Info("agent: who signals the agent is not recorded", "err", err)
		return nil
	}
	sum := sha256.Sum256([]byte(stateDir))
	w, err := killwatch.Open(filepath.Join(fs, "harden-runner", hex.EncodeToString(sum[:8])))
	if err != nil {
		log.Info("agent: who signals the agent is not recorded", "err", err)
		return nil
	}
	if err := w.Add(os.Getpid()); err != nil {
		log.Info("agent: who signals the agent is not recorded", "err", err)
		_ = w.Remove()
		return nil
	}
	return w
}

// culprit picks, of the signals sent to a dead agent, the one that
// explains its end: not its supervisor's (systemd ends a frozen agent;
// the stop came before), a stop or kill before a termination request.
func culprit(kills []killwatch.Kill, supervisor int) (killwatch.Kill, bool) {
	rank := func(k killwatch.Kill) int {
		r := 0
		if k.Sender != supervisor && k.Sender != 1 {
			r += 10
		}
		switch k.Signal {
		case syscall.SIGKILL, syscall.SIGSTOP:
			r += 2
		case syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGABRT:
			r++
		}
		return r
	}
	if len(kills) == 0 {
		return killwatch.Kill{}, false
	}
	best := slices.MaxFunc(kills, func(a, b killwatch.Kill) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return int(a.At - b.At)
	})
	return best, true
}

// sender describes who sent k: from /proc while it still runs under the
// name the kernel recorded, else that name (chosen by the process: the
// text quotes it). A sender outside our pid namespace has no pid here.
func sender(k killwatch.Kill) (*event.Process, string) {
	sig := unix.SignalName(k.Signal)
	if k.Sender == 0 {
		return &event.Process{UID: k.UID, Exe: k.Comm, Unknown: "outside the agent's pid namespace"},
			fmt.Sprintf("%s sent from outside the agent's pid namespace (global pid %d, %q, uid %d; parent %q)", sig, k.Global, k.Comm, k.UID, k.ParentComm)
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", k.Sender))
	var p event.Process
	if strings.TrimSuffix(string(comm), "\n") == k.Comm {
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
