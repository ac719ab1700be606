package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// SuperviseConfig is what Supervise runs.
type SuperviseConfig struct {
	// Argv is the daemon's command line (our own binary, "agent",
	// "--config", FILE); StateDir its DaemonConfig.StateDir.
	Argv     []string
	StateDir string
	// Delay is the wait before a restart; default DefaultRestartDelay.
	Delay time.Duration
	// MaxRestarts bounds the restarts within a minute (a daemon that
	// cannot start again is not retried forever); default 10.
	MaxRestarts int
	Log         *slog.Logger
}

// Supervise is the detached mode's stand-in for systemd's Restart=: it
// runs the daemon, and whenever it dies without a clean stop after it had
// enforced (killed by a step with sudo, or crashed) it records how in
// StateExit and starts it again, which takes over the table and the
// journal (RunDaemon). It returns when the daemon stopped as asked (nil),
// could not start (its error), or died too often. Stop signals sent to
// the supervisor itself are ignored: only the daemon's stop request ends
// it. Killing the supervisor leaves the daemon running, unsupervised.
func Supervise(ctx context.Context, cfg SuperviseConfig) error {
	if len(cfg.Argv) == 0 || cfg.StateDir == "" {
		return errors.New("agent: supervise: no daemon command or state dir")
	}
	if cfg.Delay <= 0 {
		cfg.Delay = DefaultRestartDelay
	}
	if cfg.MaxRestarts <= 0 {
		cfg.MaxRestarts = 10
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			cfg.Log.Warn("agent: supervise: stop signal ignored (the daemon's stop request ends supervision)", "signal", s)
		}
	}()
	var restarts []time.Time
	for first := true; ; first = false {
		cmd := exec.Command(cfg.Argv[0], cfg.Argv[1:]...)
		cmd.Stdout, cmd.Stderr, cmd.Dir = os.Stdout, os.Stderr, "/"
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("agent: supervise: start the daemon: %w", err)
		}
		err := cmd.Wait()
		if err == nil {
			return nil // stopped as asked
		}
		if _, serr := os.Stat(filepath.Join(cfg.StateDir, StateStopped)); serr == nil {
			return nil
		}
		if _, rerr := os.Stat(filepath.Join(cfg.StateDir, StateReady)); rerr != nil && first {
			return fmt.Errorf("agent: supervise: the daemon did not start: %w", err)
		}
		now := time.Now()
		x := ExitRecord{Pid: cmd.Process.Pid, Time: now.UTC(), Reason: exitReason(cmd.ProcessState)}
		b, _ := json.Marshal(x)
		if werr := writeAtomic(filepath.Join(cfg.StateDir, StateExit), append(b, '\n')); werr != nil {
			cfg.Log.Warn("agent: supervise", "err", werr)
		}
		cfg.Log.Warn("agent: supervise: the daemon died; restarting it", "pid", x.Pid, "how", x.Reason)
		for len(restarts) > 0 && now.Sub(restarts[0]) > time.Minute {
			restarts = restarts[1:]
		}
		if len(restarts) >= cfg.MaxRestarts {
			return fmt.Errorf("agent: supervise: the daemon died %d times within a minute; last: %s", len(restarts)+1, x.Reason)
		}
		restarts = append(restarts, now)
		select {
		case <-ctx.Done():
			return fmt.Errorf("agent: supervise: %w", ctx.Err())
		case <-time.After(cfg.Delay):
		}
	}
}

// exitReason says how a process ended, for a Gap.
func exitReason(ps *os.ProcessState) string {
	if ps == nil {
		return "unknown"
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ps.ExitCode())
}
