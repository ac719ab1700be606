// Package host is the part of the Action that runs in the helper
// container, which shares the VM's PID and network namespaces: it checks
// that the VM it is about to change is the one whose network it was given,
// drops the static binary into a host directory, starts the agent daemon
// as a host process (a transient systemd unit when PID 1 is systemd, a
// detached process otherwise), waits until it enforces, and later stops it.
//
// The VM's filesystem is reached through /proc/1/root (Config.Root), the
// root of PID 1's mount namespace, so the daemon sees the VM's /etc, /proc
// and /sys, not the helper image's.
package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/harden-runner/harden-runner/agent"
)

// DefaultDir is the host directory the binary, its config and state go to.
const DefaultDir = "/opt/harden-runner"

// DefaultRoot is PID 1's root directory: the VM's filesystem.
const DefaultRoot = "/proc/1/root"

// Unit is the systemd unit name of the daemon.
const Unit = "harden-runner-agent"

// Config is one install request. It is JSON: the Action passes it to the helper.
type Config struct {
	Dir    string             `json:"dir"`  // host path; default DefaultDir
	Root   string             `json:"root"` // default DefaultRoot
	Daemon agent.DaemonConfig `json:"daemon"`
	// SudoUser ("name" or "#uid"), when set, loses the sudo rights /etc/sudoers.d grants it.
	SudoUser string `json:"sudo_user,omitempty"`
	// NoSystemd starts a detached process even when PID 1 is systemd.
	NoSystemd bool          `json:"no_systemd,omitempty"`
	Timeout   time.Duration `json:"timeout,omitempty"` // for the agent to enforce; default 30 s
}

// Result says what Install did. It is printed as JSON for the Action.
type Result struct {
	Already      bool     `json:"already"` // a daemon was already enforcing: nothing changed
	Pid          int      `json:"pid"`
	How          string   `json:"how"` // "systemd" or "detached"
	SudoDisabled []string `json:"sudo_disabled,omitempty"`
	Warnings     []string `json:"warnings,omitempty"`
	// Errors are what the agent could not enforce, said as it started
	// (agent.Readiness.Errors).
	Errors []string `json:"errors,omitempty"`
	Millis int64    `json:"ms"` // from Install's start to "enforcing"
}

func (c *Config) defaults() {
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if c.Root == "" {
		c.Root = DefaultRoot
	}
	if c.Daemon.StateDir == "" {
		c.Daemon.StateDir = filepath.Join(c.Dir, "state")
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
}

// ErrWrongHost means PID 1 is not in the namespaces the helper was given.
var ErrWrongHost = errors.New("host: PID 1 is not on the network this helper was given")

// CheckNamespaces checks that PID 1 (the VM's init, with --pid=host) is in
// our network namespace, and that it is not us nor our own container's
// init: the VM that will be changed is the one the helper's network is.
func CheckNamespaces() error {
	if os.Getpid() == 1 {
		return fmt.Errorf("%w: the helper is PID 1 (no --pid=host?)", ErrWrongHost)
	}
	same, err := sameFile("/proc/1/ns/net", "/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("%w: cannot compare network namespaces (no --pid=host or CAP_SYS_PTRACE?): %v", ErrWrongHost, err)
	}
	if !same {
		return ErrWrongHost
	}
	if same, err := sameFile("/proc/1/ns/pid", "/proc/self/ns/pid"); err != nil || !same {
		return fmt.Errorf("%w: PID namespace differs or unreadable (%v)", ErrWrongHost, err)
	}
	return nil
}

func sameFile(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}

// Install makes sure the agent runs on the VM and enforces cfg.Daemon, and
// returns once it does. If a daemon already enforces, it changes nothing.
func Install(ctx context.Context, cfg Config, log *slog.Logger) (*Result, error) {
	t0 := time.Now()
	cfg.defaults()
	if err := CheckNamespaces(); err != nil {
		return nil, err
	}
	hostDir := filepath.Join(cfg.Root, cfg.Dir)
	state := filepath.Join(cfg.Root, cfg.Daemon.StateDir)
	if agent.Ready(state) {
		return &Result{Already: true, Pid: agent.DaemonPid(state), Millis: time.Since(t0).Milliseconds()}, nil
	}
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, fmt.Errorf("host: %w", err)
	}
	for _, f := range []string{agent.StatePid, agent.StateReady, agent.StateFailed, agent.StateStopped, agent.StateSnapshot} {
		_ = os.Remove(filepath.Join(state, f))
	}
	bin := filepath.Join(cfg.Dir, "harden-runner")
	if err := copySelf(filepath.Join(cfg.Root, bin)); err != nil {
		return nil, err
	}
	sudoUser := ""
	if cfg.SudoUser != "" {
		var err error
		if sudoUser, err = userName(cfg.Root, cfg.SudoUser); err != nil {
			return nil, err
		}
		// The agent watches for the rights coming back.
		cfg.Daemon.SudoUser = sudoUser
	}
	conf := filepath.Join(cfg.Dir, "config.json")
	b, _ := json.MarshalIndent(cfg.Daemon, "", "  ")
	if err := os.WriteFile(filepath.Join(cfg.Root, conf), append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("host: write config: %w", err)
	}
	res := &Result{}
	if sudoUser != "" {
		// Before the agent starts: its watch of /etc reports every later
		// change of the sudoers files, ours would be among them.
		moved, warn, err := disableSudo(cfg.Root, hostDir, sudoUser)
		res.SudoDisabled, res.Warnings = moved, append(res.Warnings, warn...)
		if err != nil {
			return res, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var err error
	if !cfg.NoSystemd && pid1IsSystemd(cfg.Root) {
		res.How = "systemd"
		err = startSystemd(ctx, cfg, bin, conf, state)
	} else {
		res.How = "detached"
		var warn []string
		warn, err = startDetached(ctx, cfg, bin, conf, state)
		res.Warnings = append(res.Warnings, warn...)
	}
	if err != nil {
		return nil, err
	}
	res.Pid = agent.DaemonPid(state)
	if rd, err := agent.ReadReadiness(state); err != nil {
		res.Warnings = append(res.Warnings, "cannot read what the agent could not enforce: "+err.Error())
	} else {
		res.Errors = rd.Errors
	}
	res.Millis = time.Since(t0).Milliseconds()
	log.Debug("host: agent enforcing", "pid", res.Pid, "how", res.How, "ms", res.Millis)
	return res, nil
}

// copySelf copies our own executable to dst (atomically, mode 0755).
func copySelf(dst string) error {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return fmt.Errorf("host: open own binary: %w", err)
	}
	defer src.Close()
	tmp := dst + ".new"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return fmt.Errorf("host: install binary: %w", err)
	}
	_, err = io.Copy(f, src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("host: install binary: %w", err)
	}
	return nil
}

// Stop stops the daemon and waits for its final journal flush. A daemon
// that already stopped cleanly is not an error; one that is gone without
// a clean stop is (someone killed it during the job).
func Stop(ctx context.Context, root, dir string) error {
	if root == "" {
		root = DefaultRoot
	}
	if dir == "" {
		dir = DefaultDir
	}
	if err := CheckNamespaces(); err != nil {
		return err
	}
	if err := CheckAgentDir(root, dir); err != nil {
		return err
	}
	state := filepath.Join(root, dir, "state")
	err := agent.StopDaemon(ctx, state)
	if errors.Is(err, agent.ErrNotRunning) && waitRestart(ctx, state) {
		err = agent.StopDaemon(ctx, state)
	}
	if errors.Is(err, agent.ErrNotRunning) {
		if b, rerr := os.ReadFile(filepath.Join(state, agent.StateStopped)); rerr == nil && strings.TrimSpace(string(b)) == "ok" {
			return nil
		}
		if _, rerr := os.Stat(filepath.Join(state, agent.StateJournal)); rerr == nil {
			return fmt.Errorf("host: the agent was not running at the end of the job (killed?): %w", err)
		}
	}
	return err
}

// CheckAgentDir checks, before anything in it is read, signalled or
// written, that dir (absolute, clean) and its state directory are the
// agent's: every directory from root down to dir is root's, no link, and
// writable by no one else unless sticky (/tmp), and dir/state is root's
// and closed to others. The post step's dir comes from its environment
// (STATE_harden_runner_dir), which a step can add to through GITHUB_ENV
// when the runner has no saved state of that name: in a directory of the
// runner user's, the pid file names a process of the step's choosing and
// stop-request.tmp can be a link root writes through.
func CheckAgentDir(root, dir string) error {
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir || strings.ContainsAny(dir, ":,") {
		return fmt.Errorf("host: the agent's directory %q is not a clean absolute path", dir)
	}
	p := root
	for _, c := range append(strings.Split(strings.TrimPrefix(dir, "/"), "/"), "state") {
		if c == "" {
			continue
		}
		p = filepath.Join(p, c)
		st, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("host: the agent's directory: %w", err)
		}
		deny := os.FileMode(0o022)
		if c == "state" && p == filepath.Join(root, dir, "state") {
			deny = 0o077
		} else if st.Mode()&os.ModeSticky != 0 {
			deny = 0
		}
		err = rootOnly(st, deny)
		if err == nil && !st.IsDir() {
			err = errors.New("not a directory")
		}
		if err != nil {
			return fmt.Errorf("host: %s is not the agent's directory: %w", p, err)
		}
	}
	return nil
}

// restartWait bounds the wait for a supervised daemon that died to be
// enforcing again, when the post step finds it down.
const restartWait = 10 * time.Second

// waitRestart waits, when the daemon in state died without a clean stop
// (no stopped marker, a journal), for its supervisor to have it enforcing
// again. It reports whether it is.
func waitRestart(ctx context.Context, state string) bool {
	if _, err := os.Stat(filepath.Join(state, agent.StateStopped)); err == nil {
		return false
	}
	if _, err := os.Stat(filepath.Join(state, agent.StateJournal)); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, restartWait)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !agent.Ready(state) {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}
