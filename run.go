package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/harden-runner/harden-runner/agent"
	"github.com/harden-runner/harden-runner/dockergate"
	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/egress/resolver"
	"github.com/harden-runner/harden-runner/post/report"
	"github.com/harden-runner/harden-runner/runnerid"
)

// runOptions are the `run` flags; they mirror the Action's inputs.
type runOptions struct {
	mode           string
	endpoints      string
	workspace      string
	noFileMonitor  bool
	reportDir      string
	upstreams      string
	resolverPort   uint
	implicitAllows bool
	noContainers   bool
	dockerSocket   string
	allowDockerFor string
}

func parseRunFlags(args []string, stderr io.Writer) (*runOptions, []string, error) {
	o := &runOptions{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.mode, "egress-policy", "audit", "audit (record everything) or block (allow only --allowed-endpoints)")
	fs.StringVar(&o.endpoints, "allowed-endpoints", "", `allowed "host:port" entries, separated by spaces, commas or newlines; *.example.com:443 for subdomains`)
	fs.StringVar(&o.workspace, "workspace", "", "file monitoring root (default: the current directory)")
	fs.BoolVar(&o.noFileMonitor, "disable-file-monitoring", false, "do not watch the workspace")
	fs.StringVar(&o.reportDir, "report-dir", "harden-runner-report", "where report.json, summary.md and the journal go")
	fs.StringVar(&o.upstreams, "upstream", "", "DNS servers to forward to, e.g. 192.0.2.53,[2001:db8::53]:53 (default: the machine's own, from resolv.conf or systemd-resolved)")
	fs.UintVar(&o.resolverPort, "resolver-port", agent.DefaultResolverPort, "local port the DNS redirect points at")
	fs.BoolVar(&o.implicitAllows, "github-runner-endpoints", true, "also allow what a GitHub-hosted runner needs to run the job (see README)")
	fs.BoolVar(&o.noContainers, "disable-containers", false, "leave docker to the docker commands the Runner.Worker this runs under starts itself (see dockergate)")
	fs.StringVar(&o.allowDockerFor, "allow-docker-for", "runner", "with --disable-containers: runner, or containers (also any container dockerd runs)")
	fs.StringVar(&o.dockerSocket, "docker-socket", dockergate.DefaultSocket, "dockerd's socket, for --disable-containers")
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	cmd := fs.Args()
	if len(cmd) == 0 {
		return nil, nil, errors.New("run: no command given (harden-runner run [flags] -- COMMAND [ARGS...])")
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
	mode, err := policy.ParseMode(o.mode)
	if err != nil {
		return 2, fmt.Errorf("run: --egress-policy: %w", err)
	}
	eps, err := policy.ParseEndpoints(o.endpoints)
	if err != nil {
		return 2, fmt.Errorf("run: --allowed-endpoints: %w", err)
	}
	pol := policy.New(mode, eps, o.implicitAllows)
	ups, err := upstreams(o.upstreams)
	if err != nil {
		return 2, fmt.Errorf("run: %w", err)
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
	if err := os.MkdirAll(o.reportDir, 0o755); err != nil {
		return 1, fmt.Errorf("run: report dir: %w", err)
	}
	journal := filepath.Join(o.reportDir, "journal.jsonl")
	// run is a step's command: up its ancestry is the real runner (for
	// step attribution, and for --disable-containers the only trusted docker).
	runner, pinErr := runnerid.FromAncestry(os.Getpid())
	if pinErr != nil && o.noContainers {
		return 1, fmt.Errorf("run: --disable-containers: pin the runner's process: %w", pinErr)
	}
	clientServers := resolver.ParseResolvConfFile(resolver.ResolvConf)
	ag, err := agent.New(agent.Config{
		Policy: pol, Upstreams: ups, ResolverPort: uint16(o.resolverPort), ClientServers: clientServers,
		JournalPath: journal, Workspace: ws, FileMonitoring: !o.noFileMonitor, Log: log,
		DisableContainers: o.noContainers, Docker: dockergate.Config{Socket: o.dockerSocket, Runner: runner,
			AllowFor: dockergate.AllowFor(o.allowDockerFor)},
	})
	if err != nil {
		return 1, fmt.Errorf("run: %w", err)
	}
	if err := ag.Start(ctx); err != nil {
		return 1, fmt.Errorf("run: %w", err)
	}
	code, cmdErr := runChild(ctx, argv)
	stopErr := ag.Stop()
	repErr := writeReport(journal, o.reportDir, ws)
	if err := errors.Join(cmdErr, stopErr, repErr); err != nil {
		if code == 0 {
			code = 1
		}
		return code, fmt.Errorf("run: %w", err)
	}
	return code, nil
}

// runChild runs argv with our stdio and returns its exit code. When ctx
// ends (SIGINT/SIGTERM to us) the child gets SIGTERM, then SIGKILL 10 s later.
func runChild(ctx context.Context, argv []string) (int, error) {
	c := exec.Command(argv[0], argv[1:]...)
	c.Stdin, c.Stdout, c.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := c.Start(); err != nil {
		return 127, fmt.Errorf("start %s: %w", argv[0], err)
	}
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

func upstreams(flagValue string) ([]netip.AddrPort, error) {
	if strings.TrimSpace(flagValue) == "" {
		return resolver.SystemUpstreams(resolver.ResolvConf, resolver.ResolvedUpstreamsConf)
	}
	var out []netip.AddrPort
	for _, s := range strings.FieldsFunc(flagValue, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		ap, err := resolver.ParseUpstream(s)
		if err != nil {
			return nil, fmt.Errorf("--upstream: %w", err)
		}
		out = append(out, ap)
	}
	return out, nil
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

func writeReport(journal, dir, workspace string) error {
	f, err := os.Open(journal)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer f.Close()
	recs, bad, err := report.ReadJournal(f)
	if err != nil {
		return fmt.Errorf("report: read journal: %w", err)
	}
	rep := report.Build(recs, report.Options{Workspace: workspace, JournalBadLines: bad})
	if err := report.WriteDir(dir, rep); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}
