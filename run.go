package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/harden-runner/harden-runner/agent"
	"github.com/harden-runner/harden-runner/dockergate"
	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/egress/policyfile"
	"github.com/harden-runner/harden-runner/egress/resolver"
	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/proctree"
	"github.com/harden-runner/harden-runner/journal"
	"github.com/harden-runner/harden-runner/post/report"
	"github.com/harden-runner/harden-runner/proc"
	"github.com/harden-runner/harden-runner/runnerid"
	"github.com/harden-runner/harden-runner/settings"
)

// runOptions are the `run` flags. Those that mirror the Action's inputs
// are package settings' (given holds the ones the command line set); the
// rest say where things are on this machine.
type runOptions struct {
	given        map[string]string // settings flag name -> its value, for the flags given
	workspace    string
	reportDir    string
	resolverPort uint
	dockerSocket string
	leftoverWait time.Duration
}

func parseRunFlags(args []string, stderr io.Writer) (*runOptions, []string, error) {
	o := &runOptions{given: map[string]string{}}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// The settings' flags: their values are read back by name (Visit);
	// defaults shown here are package settings' own.
	fs.String(settings.EgressPolicy, "audit", "audit (record everything) or block (allow only --allowed-endpoints)")
	fs.String(settings.AllowedEndpoints, "", `allowed "host:port" entries, separated by spaces, commas or newlines; *.example.com:443 for subdomains`)
	fs.String(settings.Policy, "", "policy file (the Action's policy-file format): its egress-policy and allowed-endpoints, added to --allowed-endpoints")
	fs.Bool(settings.DisableFileMonitoring, false, "do not watch the workspace")
	fs.String(settings.Upstream, "", "DNS servers to forward to, e.g. 192.0.2.53,[2001:db8::53]:53 (default: the machine's own, from resolv.conf or systemd-resolved)")
	fs.Bool(settings.RunnerEndpoints, true, "also allow what a GitHub-hosted runner needs to run the job (see README)")
	fs.Bool(settings.DisableContainers, false, "leave docker to the docker commands the Runner.Worker this runs under starts itself (see dockergate)")
	fs.String(settings.AllowDockerFor, "runner", "with --disable-containers: runner, or containers (also any container dockerd runs)")
	fs.String(settings.Flags.Name(settings.TamperPolicy), "fail", "fail (exit non-zero) or report (only record) when something changes or switches off our enforcement during the run")
	fs.StringVar(&o.workspace, "workspace", "", "file monitoring root (default: the current directory)")
	fs.StringVar(&o.reportDir, "report-dir", "harden-runner-report", "where report.json, summary.md and the journal go")
	fs.UintVar(&o.resolverPort, "resolver-port", agent.DefaultResolverPort, "local port the DNS redirect points at")
	fs.StringVar(&o.dockerSocket, "docker-socket", dockergate.DefaultSocket, "dockerd's socket, for --disable-containers")
	fs.DurationVar(&o.leftoverWait, "leftover-wait", 10*time.Second, "after COMMAND exits, how long enforcement waits for the processes it left running before it kills them")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	fs.Visit(func(f *flag.Flag) { o.given[f.Name] = f.Value.String() })
	cmd := fs.Args()
	if len(cmd) == 0 {
		return nil, nil, errors.New("run: no command given (harden-runner run [flags] -- COMMAND [ARGS...])")
	}
	if o.leftoverWait < 0 {
		return nil, nil, fmt.Errorf("run: --leftover-wait %v: must not be negative", o.leftoverWait)
	}
	if o.resolverPort == 0 || o.resolverPort > 65535 || o.resolverPort == 53 {
		return nil, nil, fmt.Errorf("run: --resolver-port %d: must be 1-65535 and not 53", o.resolverPort)
	}
	return o, cmd, nil
}

// runCmd is `harden-runner run`: start the agent, run the command, stop the
// agent, write the report. Its exit code is the command's.
func runCmd(ctx context.Context, args []string, log *slog.Logger) (int, error) {
	o, argv, err := parseRunFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	lift := agent.LimitStartMemory() // until the agent has started
	set, err := o.settings()
	if err != nil {
		return 2, err
	}
	pol := policy.New(set.Mode, set.Endpoints, !set.NoRunnerEndpoints)
	set.Endpoints = nil // held once, by pol (100,000 entries are 6 MB)
	ups := set.Upstreams
	if len(ups) == 0 {
		if ups, err = resolver.SystemUpstreams(resolver.ResolvConf, resolver.ResolvedUpstreamsConf); err != nil {
			return 2, fmt.Errorf("run: %w", err)
		}
	}
	ws := o.workspace
	if ws == "" {
		if ws, err = os.Getwd(); err != nil {
			return 1, fmt.Errorf("run: workspace: %w", err)
		}
	}
	if ws, err = filepath.Abs(ws); err != nil {
		return 1, fmt.Errorf("run: workspace: %w", err)
	}
	// The report dir is often one the command can write (the default is
	// in the workspace): opened now, once, and written through that
	// handle only (report.OpenDir). The journal is written in a directory
	// of our own, which only root can reach: one in the report dir could
	// be a link a step planted (root would write through it), a FIFO, or
	// swapped for a forged one before the report is built from it.
	repDir, err := report.OpenDir(o.reportDir)
	if err != nil {
		return 1, fmt.Errorf("run: %w", err)
	}
	defer repDir.Close()
	private, err := os.MkdirTemp(privateBase(), "harden-runner-run-")
	if err != nil {
		return 1, fmt.Errorf("run: journal directory: %w", err)
	}
	journal := filepath.Join(private, "journal.jsonl")
	// run is a step's command: up its ancestry is the real runner (for
	// step attribution, and for --disable-containers the only trusted docker).
	runner, pinErr := runnerid.FromAncestry(os.Getpid())
	if pinErr != nil && set.DisableContainers {
		return 1, fmt.Errorf("run: --disable-containers: pin the runner's process: %w", pinErr)
	}
	clientServers := resolver.ParseResolvConfFile(resolver.ResolvConf)
	ag, err := agent.New(agent.Config{
		Policy: pol, Upstreams: ups, ResolverPort: uint16(o.resolverPort), ClientServers: clientServers,
		JournalPath: journal, Workspace: ws, FileMonitoring: set.FileMonitoring, Log: log,
		DisableContainers: set.DisableContainers, Docker: dockergate.Config{Socket: o.dockerSocket, Runner: runner,
			AllowFor: set.AllowDockerFor},
		WatchEtc: "/etc",
	})
	if err != nil {
		return 1, fmt.Errorf("run: %w", err)
	}
	if err := ag.Start(ctx); err != nil {
		return 1, fmt.Errorf("run: %w", err)
	}
	lift()
	tree, treeErr := proctree.New(fmt.Sprintf("harden-runner-run-%d", os.Getpid()))
	if treeErr != nil {
		ag.Note(event.ComponentAgent, event.LevelWarning, treeErr.Error())
	}
	code, cmdErr := runChild(ctx, argv, tree)
	// Enforcement ends only once COMMAND's whole tree is gone; at once
	// when we were told to stop.
	wait := o.leftoverWait
	if ctx.Err() != nil {
		wait = 0
	}
	endTree(ag, tree, wait)
	stopErr := ag.Stop()
	repErr := writeRunReport(journal, repDir, o.reportDir, ws)
	if repErr == nil {
		os.RemoveAll(private)
	} else {
		repErr = fmt.Errorf("%w (the journal is kept in %s)", repErr, private)
	}
	var tamperErr error
	if n := ag.Tampered(); n > 0 && set.TamperFails {
		tamperErr = fmt.Errorf("enforcement was tampered with %d time(s) during the run (restored; see the report's agent errors); --on-tamper report only records it", n)
	}
	if err := errors.Join(cmdErr, stopErr, repErr, tamperErr); err != nil {
		if code == 0 {
			code = 1
		}
		return code, fmt.Errorf("run: %w", err)
	}
	return code, nil
}

// settings parses the settings flags given and the --policy file (package
// settings): the entries are the union of both; the mode is the file's
// when it sets one, and an --egress-policy that disagrees is an error,
// since silently preferring either could open what the other closes.
func (o *runOptions) settings() (*settings.Settings, error) {
	s, err := settings.Parse(settings.Flags, func(name string) string { return o.given[name] },
		func(path string) ([]byte, error) { return readLimited(path, policyfile.MaxSize) })
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	return s, nil
}

// readLimited reads the file at path, failing if it holds more than max bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes", path, limit)
	}
	return b, nil
}

// endTree waits up to wait for the processes COMMAND left running (its
// tree: see package proctree), then kills what is left, and journals
// either. A daemon COMMAND started must not outlive enforcement: with the
// table gone it would get out unrecorded. Waiting first lets a well-behaved
// background job (a cache upload) finish under the policy; the bound keeps
// `run` from hanging on a server that never ends.
func endTree(ag *agent.Agent, tree *proctree.Group, wait time.Duration) {
	defer func() {
		if err := tree.Close(); err != nil {
			ag.Note(event.ComponentAgent, event.LevelWarning, err.Error())
		}
	}()
	pids, err := tree.Pids()
	if err != nil {
		ag.Note(event.ComponentAgent, event.LevelWarning, "cannot tell whether COMMAND left processes running: "+err.Error())
		return
	}
	if len(pids) == 0 {
		return
	}
	left := describePids(pids)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	t0 := time.Now()
	if tree.Wait(ctx) == nil {
		ag.Note(event.ComponentAgent, event.LevelInfo, fmt.Sprintf("COMMAND exited leaving %s running; they ended %.1f s later, before enforcement did", left, time.Since(t0).Seconds()))
		return
	}
	pids, _ = tree.Pids()
	msg := fmt.Sprintf("COMMAND exited leaving %s running; %s still ran after %v (--leftover-wait) and were killed before enforcement ended",
		left, describePids(pids), wait)
	if err := tree.Kill(); err != nil {
		msg += ": " + err.Error()
	}
	kctx, kcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer kcancel()
	if err := tree.Wait(kctx); err != nil {
		msg += "; some survived the kill: " + err.Error()
	}
	ag.Note(event.ComponentAgent, event.LevelWarning, msg)
}

// describePids names up to five processes ("3 process(es): 12 sleep, ...").
func describePids(pids []int) string {
	var names []string
	for i, pid := range pids {
		if i == 5 {
			names = append(names, "…")
			break
		}
		p := proc.Info(pid)
		name := filepath.Base(p.Exe)
		if p.Exe == "" {
			name = "?"
		}
		names = append(names, fmt.Sprintf("%d %s", pid, name))
	}
	return fmt.Sprintf("%d process(es) (%s)", len(pids), strings.Join(names, ", "))
}

// runChild runs argv with our stdio, in tree, and returns its exit code.
// When ctx ends (SIGINT/SIGTERM to us) the child gets SIGTERM, then
// SIGKILL 10 s later.
func runChild(ctx context.Context, argv []string, tree *proctree.Group) (int, error) {
	c := exec.Command(argv[0], argv[1:]...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	c.SysProcAttr = &syscall.SysProcAttr{}
	tree.Prepare(c.SysProcAttr)
	if err := c.Start(); err != nil {
		return 127, fmt.Errorf("start %s: %w", argv[0], err)
	}
	tree.Started(c.Process.Pid)
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
		_ = c.Process.Signal(syscall.SIGTERM)
		select {
		case werr = <-done:
		case <-time.After(10 * time.Second):
			_ = c.Process.Kill()
			werr = <-done
		}
	}
	var ee *exec.ExitError
	if errors.As(werr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), nil
		}
		return ee.ExitCode(), nil
	}
	if werr != nil {
		return 1, fmt.Errorf("wait for %s: %w", argv[0], werr)
	}
	return 0, nil
}

// reportCmd is `harden-runner report`: report.json and summary.md again
// from a journal (the journal.jsonl of a report dir or an artifact), e.g.
// after an upgrade changed how reports look. No root needed.
func reportCmd(args []string) (int, error) {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	journal := fs.String("journal", "", "the journal (journal.jsonl) to build the report from")
	dir := fs.String("report-dir", "harden-runner-report", "where report.json and summary.md go")
	ws := fs.String("workspace", "", "workspace root, to make file paths relative (default: the journal's)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, nil
		}
		return 2, err
	}
	if *journal == "" || fs.NArg() > 0 {
		return 2, errors.New("report: --journal FILE is required, and nothing else")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return 1, fmt.Errorf("report: %w", err)
	}
	return exitCode(writeReport(*journal, *dir, *ws))
}

// privateBase is where run's own journal directory goes: /run (root's
// only), else /tmp, whose sticky bit keeps others from renaming it. Not
// $TMPDIR, which the caller picks.
func privateBase() string {
	if st, err := os.Stat("/run"); err == nil && st.IsDir() {
		return "/run"
	}
	return "/tmp"
}

// writeRunReport builds the report from run's own journal and writes it,
// with a copy of the journal, into the report dir run opened at its
// start. If the path names another directory by now (the command renamed
// the one run opened and made its own), the report goes there too, and it
// is an error: what a reader finds there during the run was not ours.
func writeRunReport(path string, root *os.Root, dir, workspace string) error {
	b, rep, err := buildReport(path, workspace)
	if err != nil {
		return err
	}
	write := func(root *os.Root) error {
		if err := report.WriteRoot(root, rep); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		return report.WriteFile(root, "journal.jsonl", b, 0o600)
	}
	if err := write(root); err != nil {
		return err
	}
	now, err := report.OpenDir(dir)
	if err != nil {
		return fmt.Errorf("report dir %q was replaced during the run; the report is in the directory it was: %w", dir, err)
	}
	defer now.Close()
	a, _ := root.Stat(".")
	if b, _ := now.Stat("."); a != nil && b != nil && os.SameFile(a, b) {
		return nil
	}
	if err := write(now); err != nil {
		return err
	}
	return fmt.Errorf("report dir %q was replaced during the run (the directory run opened was moved away): the report was written into both", dir)
}

func writeReport(path, dir, workspace string) error {
	_, rep, err := buildReport(path, workspace)
	if err != nil {
		return err
	}
	if err := report.WriteDir(dir, rep); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// buildReport reads the journal at path and builds its report; it
// returns the journal's bytes too.
func buildReport(path, workspace string) ([]byte, *report.Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("report: %w", err)
	}
	recs, bad, err := journal.Read(bytes.NewReader(b))
	if err != nil {
		return nil, nil, fmt.Errorf("report: read journal: %w", err)
	}
	return b, report.Build(recs, report.Options{Workspace: workspace, JournalBadLines: bad}), nil
}
