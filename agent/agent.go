// Package agent owns the lifecycle of harden-runner's parts on the host: it
// starts the flow logger, the gate, the resolver, the firewall, the
// privilege monitor and the file monitor in the order that leaves no gap,
// writes everything they report to the
// journal, and takes them down again. Components do not import agent; they
// get an event.Emit.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"runtime"
	"time"

	"github.com/harden-runner/harden-runner/dockergate"
	"github.com/harden-runner/harden-runner/egress/firewall"
	"github.com/harden-runner/harden-runner/egress/flowlog"
	"github.com/harden-runner/harden-runner/egress/gate"
	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/egress/resolver"
	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/filemon"
	"github.com/harden-runner/harden-runner/privmon"
	"github.com/harden-runner/harden-runner/proc"
	"github.com/harden-runner/harden-runner/runnerstep"
)

// DefaultResolverPort is where the firewall redirects DNS. A port below 1024
// cannot be taken over by an unprivileged process if the agent dies.
const DefaultResolverPort = 153

// Config says what the agent enforces and where it records.
type Config struct {
	Policy       *policy.Policy   // required
	Upstreams    []netip.AddrPort // required: see resolver.SystemUpstreams
	ResolverPort uint16           // default DefaultResolverPort
	JournalPath  string           // required
	// ClientServers are the DNS servers the machine's clients are configured
	// to ask (resolv.conf), which speeds up finding a query's process.
	ClientServers []netip.AddrPort
	// Workspace is the file monitoring root. Monitoring starts with the
	// agent; in the Action the workspace may still be empty, and the
	// actions/checkout step's writes build the baseline (see isCheckout).
	Workspace      string
	FileMonitoring bool
	// DisableContainers takes docker away from everything but the runner
	// and root (package dockergate); Docker configures it (Emit and
	// Process are the agent's).
	DisableContainers bool
	Docker            dockergate.Config
	Log               *slog.Logger
}

// Agent runs the components. Start once, Stop once (Stop is safe to repeat).
type Agent struct {
	cfg     Config
	log     *slog.Logger
	journal *Journal
	fw      *firewall.Firewall
	flows   *flowlog.Reader
	gate    *gate.Gate
	priv    *privmon.Monitor
	docker  *dockergate.Gate
	finder  *proc.Finder
	res     *resolver.Resolver
	files   *filemon.Monitor
	cancel  context.CancelFunc
	stopped bool
}

// New validates cfg. It does no I/O.
func New(cfg Config) (*Agent, error) {
	if cfg.Policy == nil {
		return nil, errors.New("agent: no policy")
	}
	if len(cfg.Upstreams) == 0 {
		return nil, errors.New("agent: no upstream DNS servers")
	}
	if cfg.JournalPath == "" {
		return nil, errors.New("agent: no journal path")
	}
	if cfg.FileMonitoring && cfg.Workspace == "" {
		return nil, errors.New("agent: file monitoring needs a workspace")
	}
	if cfg.ResolverPort == 0 {
		cfg.ResolverPort = DefaultResolverPort
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Agent{cfg: cfg, log: cfg.Log}, nil
}

// Start brings every component up and returns once the policy is enforced
// (and file monitoring, if on, is watching). On error nothing stays applied.
func (a *Agent) Start(ctx context.Context) (err error) {
	ctx, a.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			_ = a.teardown()
		}
	}()
	a.journal, err = OpenJournal(a.cfg.JournalPath)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	// Every event under a workflow step's process is preceded, once per
	// step, by a record of that step's root (for the report's Step column).
	emit := runnerstep.NewTracker(runnerstep.HostFS{}).Wrap(a.journal.Emit)
	p := a.cfg.Policy
	start := &event.Start{Time: time.Now(), Mode: string(p.Mode()), Workspace: a.cfg.Workspace, FileMonitoring: a.cfg.FileMonitoring}
	for _, e := range p.Endpoints() {
		if e.Implicit {
			start.ImplicitAllowed = append(start.ImplicitAllowed, e.String())
		} else {
			start.AllowedEndpoints = append(start.AllowedEndpoints, e.String())
		}
	}
	for _, u := range a.cfg.Upstreams {
		start.Upstreams = append(start.Upstreams, u.String())
	}
	emit(event.Record{Start: start})

	finder := proc.NewFinder(a.log)
	a.finder = finder
	a.fw, err = firewall.New(firewall.Config{
		Block:        p.Mode() == policy.Block,
		Queues:       uint16(runtime.GOMAXPROCS(0)), // one gate reader per CPU
		Prefixes:     p.Prefixes(),
		ResolverPort: a.cfg.ResolverPort,
		Log:          a.log,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.flows, err = flowlog.New(flowlog.Config{Group: a.fw.LogGroup(), Emit: emit, Owner: finder.Owner,
		ForwardedOwner: finder.ForwardedOwner, Log: a.log})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err = a.flows.Start(ctx); err != nil {
		return fmt.Errorf("agent: start flow log: %w", err)
	}
	a.gate, err = gate.New(gate.Config{Queue: a.fw.Queue(), Queues: a.fw.Queues(), Block: p.Mode() == policy.Block,
		RejectMark: a.fw.RejectMark(), Emit: emit, Owner: finder.Owner, ForwardedOwner: finder.ForwardedOwner, Log: a.log})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err = a.gate.Start(ctx); err != nil {
		return fmt.Errorf("agent: start gate: %w", err)
	}
	port := a.cfg.ResolverPort
	a.res, err = resolver.New(resolver.Config{
		// Every address: containers' DNS arrives redirected to their
		// bridge's address; the firewall's input chain admits only
		// loopback and docker's bridges to this port.
		Listen: []netip.AddrPort{
			netip.AddrPortFrom(netip.IPv4Unspecified(), port),
			netip.AddrPortFrom(netip.IPv6Unspecified(), port),
		},
		Upstreams:      a.cfg.Upstreams,
		Servers:        a.cfg.ClientServers,
		Policy:         p,
		Allow:          a.fw.Allow,
		Mark:           a.fw.Mark(),
		Owner:          finder.Owner,
		ForwardedOwner: finder.ForwardedOwner,
		Emit:           emit,
		Log:            a.log,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err = a.res.Start(ctx); err != nil {
		return fmt.Errorf("agent: start resolver: %w", err)
	}
	if err = a.fw.Install(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.flushHostDNSCache(emit)
	// Privilege use is reported, not enforced: a machine without fanotify
	// or without any of the programs only loses that section.
	if m, err := privmon.New(privmon.Config{Emit: emit, Process: proc.Info, Log: a.log}); err == nil {
		if err := m.Start(ctx); err != nil {
			emit(event.Record{Note: &event.Note{Time: time.Now(), Component: "privmon", Level: "info",
				Message: "privilege use is not watched: " + err.Error()}})
		} else {
			a.priv = m
		}
	}
	if a.cfg.DisableContainers {
		dc := a.cfg.Docker
		dc.Emit, dc.Process, dc.Log = emit, proc.Info, a.log
		if a.docker, err = dockergate.New(dc); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		if err = a.docker.Start(ctx); err != nil {
			a.docker = nil
			return fmt.Errorf("agent: disable containers: %w", err)
		}
	}
	if a.cfg.FileMonitoring {
		if err = a.startFiles(ctx, emit); err != nil {
			emit(event.Record{Coverage: &event.Coverage{Time: time.Now(), Component: "filemon",
				NotCovered: "every file", Reason: err.Error()}})
			return err
		}
	}
	a.log.Info("agent: enforcing", "mode", p.Mode(), "endpoints", len(start.AllowedEndpoints))
	return nil
}

// startFiles takes the workspace baseline and starts watching it.
func (a *Agent) startFiles(ctx context.Context, emit event.Emit) error {
	m, err := filemon.New(filemon.Config{Root: a.cfg.Workspace, Emit: emit, Process: proc.Info, Log: a.log, Checkout: isCheckout})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := m.Start(ctx); err != nil {
		return fmt.Errorf("agent: start file monitor: %w", err)
	}
	a.files = m
	return nil
}

// flushHostDNSCache empties systemd-resolved's cache, so every answer a
// process uses from now on has passed through our resolver.
func (a *Agent) flushHostDNSCache(emit event.Emit) {
	path, err := exec.LookPath("resolvectl")
	if err != nil {
		return // no systemd-resolved here, nothing cached outside processes
	}
	if out, err := exec.Command(path, "flush-caches").CombinedOutput(); err != nil {
		emit(event.Record{Note: &event.Note{Time: time.Now(), Component: "agent", Level: "warning",
			Message: fmt.Sprintf("resolvectl flush-caches: %v: %s", err, out)}})
	}
}

// Drain waits, after Stop, for docker connections that were in flight
// through the gate (the post step's own, while it stops the agent) to end,
// or for ctx's end.
func (a *Agent) Drain(ctx context.Context) error {
	if a.docker == nil {
		return nil
	}
	return a.docker.Drain(ctx)
}

// Stop ends enforcement and monitoring, writes the last records and closes
// the journal. Safe to call twice.
func (a *Agent) Stop() error {
	if a.stopped {
		return nil
	}
	return a.teardown()
}

func (a *Agent) teardown() error {
	a.stopped = true
	var errs []error
	if a.priv != nil {
		errs = append(errs, a.priv.Close())
	}
	if a.docker != nil {
		errs = append(errs, a.docker.Close())
	}
	if a.files != nil {
		errs = append(errs, a.files.Close())
	}
	// The table goes first, so no query is redirected to a closed resolver.
	if a.fw != nil {
		errs = append(errs, a.fw.Remove())
	}
	if a.res != nil {
		errs = append(errs, a.res.Close())
	}
	if a.gate != nil {
		errs = append(errs, a.gate.Close())
	}
	if a.flows != nil {
		errs = append(errs, a.flows.Close())
	}
	if a.finder != nil {
		errs = append(errs, a.finder.Close())
	}
	if a.cancel != nil {
		a.cancel()
	}
	err := errors.Join(errs...)
	if a.journal != nil {
		if err != nil {
			a.journal.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: "agent", Level: "error", Message: err.Error()}})
		}
		_, failed := a.journal.Counts()
		a.journal.Emit(event.Record{Stats: &event.Stats{Component: "journal", Lost: failed}})
		a.journal.Emit(event.Record{Stop: &event.Stop{Time: time.Now()}})
		errs = append(errs, a.journal.Close())
	}
	return errors.Join(errs...)
}
