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
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/harden-runner/harden-runner/dockergate"
	"github.com/harden-runner/harden-runner/egress/bridgenet"
	"github.com/harden-runner/harden-runner/egress/firewall"
	"github.com/harden-runner/harden-runner/egress/flowlog"
	"github.com/harden-runner/harden-runner/egress/gate"
	"github.com/harden-runner/harden-runner/egress/guard"
	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/egress/relay"
	"github.com/harden-runner/harden-runner/egress/resolver"
	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/filemon"
	"github.com/harden-runner/harden-runner/journal"
	"github.com/harden-runner/harden-runner/lineage"
	"github.com/harden-runner/harden-runner/privmon"
	"github.com/harden-runner/harden-runner/proc"
	"github.com/harden-runner/harden-runner/runnerid"
	"github.com/harden-runner/harden-runner/runnerstep"
	"github.com/harden-runner/harden-runner/sudowatch"
	"golang.org/x/sys/unix"
)

// DefaultResolverPort is where the firewall redirects DNS. A port below 1024
// cannot be taken over by an unprivileged process if the agent dies.
const DefaultResolverPort = 153

// DefaultRelayPort is where the firewall redirects new TCP connections to
// the name-checking relay; below 1024 for the same reason.
const DefaultRelayPort = 154

// Config says what the agent enforces and where it records.
type Config struct {
	Policy       *policy.Policy   // required
	Upstreams    []netip.AddrPort // required: see resolver.SystemUpstreams
	ResolverPort uint16           // default DefaultResolverPort
	RelayPort    uint16           // default DefaultRelayPort
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
	// ActionContainer, when set, is the name of the Action's own
	// container: the runner is the parent of the docker CLI that runs it
	// (runnerid.FromDockerRun), which confirms or corrects the /proc scan.
	ActionContainer string
	// WatchEtc, when set, is the machine's /etc as the agent sees it: changes
	// of resolv.conf, hosts and the sudoers files there are tamper errors
	// with the writer (guard.WatchFiles). Start it after our own changes
	// there (disable-sudo).
	WatchEtc string
	// SudoUser, when set, is the runner's user whose sudo rights
	// disable-sudo took: a rule for it put back is an error (in the /etc
	// watch's line for the change, or by sudowatch without WatchEtc).
	SudoUser string
	// Resume, when set, says this agent takes over from one that died
	// during the job: it appends to the journal, keeps the addresses the
	// dead one's table allowed (firewall.Config.Takeover), and writes
	// Resume as a Gap record, To set, once it enforces again.
	Resume *event.Gap
	Log    *slog.Logger
}

// Agent runs the components. Start once, Stop once (Stop is safe to repeat).
type Agent struct {
	cfg     Config
	log     *slog.Logger
	journal *journal.Writer
	fw      *firewall.Firewall
	flows   *flowlog.Reader
	gate    *gate.Gate
	guard   *guard.Guard
	etc     *guard.Files
	sysctls *guard.Sysctls
	priv    *privmon.Monitor
	docker  *dockergate.Gate
	sudo    *sudowatch.Watch
	finder  *proc.Finder
	lineage *lineage.Tracker // nil when the kernel cannot run it
	res     *resolver.Resolver
	relay   *relay.Relay
	files   *filemon.Monitor
	cancel  context.CancelFunc
	stopped bool
	// runnerPID is the pinned Runner.Worker (0: none found).
	runnerPID int
	// post records the runner's children started as a post step.
	post *postSteps

	smu       sync.Mutex
	startErrs []string // error notes emitted while Start ran
	started   bool
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
	if cfg.RelayPort == 0 {
		cfg.RelayPort = DefaultRelayPort
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
	if a.cfg.Resume != nil {
		a.journal, err = journal.Append(a.cfg.JournalPath)
	} else {
		a.journal, err = journal.Create(a.cfg.JournalPath)
	}
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	// The runner's job process, pinned now, before any workflow step ran
	// (the steps' docker gate and step attribution trust it alone).
	runner, pinErr := a.cfg.Docker.Runner, error(nil)
	if runner.IsZero() {
		runner, pinErr = runnerid.Find()
	}
	var pinNote *event.Note
	runner, pinNote, pinErr = a.confirmRunner(runner, pinErr)
	if pinErr != nil && a.cfg.DisableContainers {
		return fmt.Errorf("agent: disable containers: pin the runner's process (only its own docker commands may use docker): %w", pinErr)
	}
	// Every event under a workflow step's process is preceded, once per
	// step, by a record of that step's root (for the report's Step column).
	a.runnerPID = runner.PID
	emit := a.keepStartErrors(runnerstep.NewTracker(runnerstep.HostFS{}, runner.PID).Wrap(a.journal.Emit))
	defer func() {
		a.smu.Lock()
		a.started = true
		a.smu.Unlock()
	}()
	p := a.cfg.Policy
	start := &event.Start{Time: time.Now(), Mode: p.Mode(), Workspace: a.cfg.Workspace, FileMonitoring: a.cfg.FileMonitoring}
	for e := range p.Endpoints() {
		if e.Implicit {
			start.ImplicitAllowed = append(start.ImplicitAllowed, e.String())
		} else {
			start.AllowedEndpoints = append(start.AllowedEndpoints, e.String())
		}
	}
	for _, u := range a.cfg.Upstreams {
		start.Upstreams = append(start.Upstreams, u.String())
	}
	// Attribution from the kernel's records when it can run them, else
	// after the fact from sock_diag and /proc (said in the report).
	start.Attribution, start.AttributionReason = "ebpf", ""
	a.post = newPostSteps(a.runnerPID)
	if tr, lerr := startLineage(ctx, a.cfg.ResolverPort, a.post.exec, a.log); lerr != nil {
		start.Attribution, start.AttributionReason = "procfs", lerr.Error()
		a.log.Info("agent: process attribution from /proc (best effort)", "reason", lerr)
	} else {
		a.lineage = tr
	}
	emit(event.Record{Start: start})
	if pinNote != nil {
		emit(event.Record{Note: pinNote})
	}
	if pinErr != nil {
		emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentAgent, Level: event.LevelInfo,
			Message: "no workflow step is named by process (the runner's process was not found): " + pinErr.Error()}})
	}

	finder := proc.NewFinder(a.log)
	if a.lineage != nil {
		finder.WithLineage(a.lineage)
	}
	a.finder = finder
	// With the kernel's records, the host's allowed flows are marked for
	// them rather than logged to NFLOG (a tenth of the connection rate).
	var acceptMark uint32
	var accepts flowlog.AcceptSource
	if a.lineage != nil {
		if acceptMark = a.lineage.AcceptMark(); acceptMark != 0 {
			accepts = a.lineage
		}
	}
	a.fw, err = firewall.New(firewall.Config{
		Block:        p.Mode() == policy.Block,
		AcceptMark:   acceptMark,
		Queues:       uint16(runtime.GOMAXPROCS(0)), // one gate reader per CPU
		Addrs:        p.AddrRanges(),
		ResolverPort: a.cfg.ResolverPort,
		RelayPort:    a.cfg.RelayPort,
		RelayPorts:   namedPorts(p),
		Upstreams:    a.cfg.Upstreams,
		Preexisting:  preexisting(emit),
		DHCPServers:  dhcpServers(),
		Takeover:     a.cfg.Resume != nil,
		Log:          a.log,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	a.flows, err = flowlog.New(flowlog.Config{Group: a.fw.LogGroup(), Emit: emit, Owner: finder.Owner,
		ForwardedOwner: finder.ForwardedOwner, AllProtocols: a.lineage != nil, Batch: flowBatch(a.lineage != nil),
		Accepts: accepts, Log: a.log})
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
	if err = a.startRelay(ctx, emit, finder); err != nil {
		return err
	}
	a.watchBridges(ctx, emit)
	if err = a.fw.Install(); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err = a.startGuard(ctx, emit); err != nil {
		return err
	}
	if a.cfg.Resume != nil {
		gap := *a.cfg.Resume
		gap.To = time.Now()
		emit(event.Record{Gap: &gap})
	}
	a.flushHostDNSCache(emit)
	// Privilege use is reported, not enforced: a machine without fanotify
	// or without any of the programs only loses that section.
	if m, err := privmon.New(privmon.Config{Emit: emit, Process: proc.InfoAfterExec, Log: a.log}); err == nil {
		if err := m.Start(ctx); err != nil {
			emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentPrivmon, Level: event.LevelInfo,
				Message: "privilege use is not watched: " + err.Error()}})
		} else {
			a.priv = m
		}
	}
	if a.cfg.SudoUser != "" && a.etc == nil {
		// Without the /etc watch (which says it in its one line per
		// change): only the rights' return is watched.
		if a.sudo, err = sudowatch.New(sudowatch.Config{User: a.cfg.SudoUser, Emit: emit, Log: a.log}); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		if err = a.sudo.Start(ctx); err != nil {
			a.sudo = nil
			return fmt.Errorf("agent: disable sudo: %w", err)
		}
	}
	if a.cfg.DisableContainers {
		dc := a.cfg.Docker
		dc.Emit, dc.Process, dc.Container, dc.Log = emit, finder.Info, proc.ContainerID, a.log
		dc.Runner = runner
		emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentDockergate, Level: event.LevelInfo,
			Message: fmt.Sprintf("docker is the runner's only: pinned %s (pid %d); allow-docker-for: %s", dc.Runner.Exe, dc.Runner.PID, dc.AllowFor)}})
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
			emit(event.Record{Coverage: &event.Coverage{Time: time.Now(), Component: event.ComponentFilemon,
				NotCovered: "every file", Reason: err.Error()}})
			return err
		}
	}
	a.log.Info("agent: enforcing", "mode", p.Mode(), "endpoints", len(start.AllowedEndpoints))
	return nil
}

// confirmRunner checks the pinned runner against the parent of the docker
// CLI that runs the Action's own container (cfg.ActionContainer), which
// wins: the scan may find more than one, or a lookalike. It returns the
// runner to trust and a note saying what was found (nil: nothing to check).
func (a *Agent) confirmRunner(runner runnerid.Identity, pinErr error) (runnerid.Identity, *event.Note, error) {
	name := a.cfg.ActionContainer
	if name == "" {
		return runner, nil, pinErr
	}
	clis := a.cfg.Docker.CLIs
	if len(clis) == 0 {
		clis = dockergate.DefaultCLIs
	}
	note := func(level event.Level, format string, args ...any) *event.Note {
		return &event.Note{Time: time.Now(), Component: event.ComponentAgent, Level: level, Message: fmt.Sprintf(format, args...)}
	}
	byCLI, err := runnerid.FromDockerRun(name, clis)
	switch {
	case err != nil:
		return runner, note("info", "the runner's process is not confirmed by the docker CLI that runs this action's container %q: %v", name, err), pinErr
	case runner.IsZero():
		return byCLI, note("info", "pinned the runner %s (pid %d) as the parent of the docker CLI that runs this action's container (the scan of /proc: %v)", byCLI.Exe, byCLI.PID, pinErr), nil
	case byCLI.PID != runner.PID || byCLI.Start != runner.Start:
		return byCLI, note("error", "the runner found in /proc (%s, pid %d) is not the parent of the docker CLI that runs this action's container (%s, pid %d): pinned the latter", runner.Exe, runner.PID, byCLI.Exe, byCLI.PID), nil
	}
	return runner, note("info", "the runner's process (pid %d) is confirmed: it runs the docker CLI that runs this action's container", runner.PID), pinErr
}

// keepStartErrors passes every record to next and keeps the messages of
// the error notes emitted until Start returns (StartErrors).
func (a *Agent) keepStartErrors(next event.Emit) event.Emit {
	return func(r event.Record) {
		if n := r.Note; n != nil && n.Level == event.LevelError {
			a.smu.Lock()
			if !a.started {
				a.startErrs = append(a.startErrs, string(n.Component)+": "+n.Message)
			}
			a.smu.Unlock()
		}
		next(r)
	}
}

// StartErrors returns the errors noted while Start ran (what enforcement
// could not cover, e.g. a path to dockerd the gate cannot close), for the
// step that started the agent to show at once. Safe for concurrent use.
func (a *Agent) StartErrors() []string {
	a.smu.Lock()
	defer a.smu.Unlock()
	return slices.Clone(a.startErrs)
}

// startRelay starts the name-checking relay that the firewall sends new
// TCP connections on named ports to; it must listen before the table goes in.
func (a *Agent) startRelay(ctx context.Context, emit event.Emit, finder *proc.Finder) error {
	port := a.cfg.RelayPort
	r, err := relay.New(relay.Config{
		// Every address: containers' connections arrive redirected to
		// their bridge's address; the input chain admits only loopback and
		// docker's bridges to this port.
		Listen: []netip.AddrPort{
			netip.AddrPortFrom(netip.IPv4Unspecified(), port),
			netip.AddrPortFrom(netip.IPv6Unspecified(), port),
		},
		Policy:         a.cfg.Policy,
		Resolved:       a.res.Resolved,
		NamesOf:        a.res.NamesOf,
		Mark:           a.fw.Mark(),
		Owner:          finder.Owner,
		ForwardedOwner: finder.ForwardedOwner,
		Emit:           emit,
		Log:            a.log,
	})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := r.Start(ctx); err != nil {
		return fmt.Errorf("agent: start relay: %w", err)
	}
	a.relay = r
	return nil
}

// sudoExplainer says, for the /etc watch, when a change gives disable-sudo's
// user sudo rights again. disable-sudo left no rule for the user (the step
// fails otherwise), so any rule now is one a change made apply: for the
// user and group databases, one by uid or group (sudowatch.DatabaseGrant);
// for the sudoers files, any. Where no file shows one, the machine's sudo
// is asked (sssd, LDAP, sudo.conf's sudoers_file). pick adds the databases
// and the files sudoers includes from under /etc to what is watched.
func sudoExplainer(ctx context.Context, etc, user string) (explain func(string) string, pick func(string) bool) {
	root := filepath.Dir(filepath.Clean(etc))
	// pick runs for every file event under /etc (an apt run makes
	// thousands): the policy's paths are read again only after a change
	// that explain looks at, which is every change of the policy.
	var mu sync.Mutex
	var paths []string
	fresh := false
	policyPaths := func(stale bool) []string {
		mu.Lock()
		defer mu.Unlock()
		if stale || !fresh {
			paths, fresh = sudowatch.PolicyPaths(root, sudowatch.LookupUser(root, user)), true
		}
		return paths
	}
	inPolicy := func(rel string, stale bool) bool {
		for _, p := range policyPaths(stale) {
			if p == "/etc/"+rel || strings.HasPrefix("/etc/"+rel, p+"/") {
				return true
			}
		}
		return false
	}
	again := func(where string) string {
		return fmt.Sprintf("; it gives %s sudo rights again after disable-sudo%s", user, where)
	}
	explain = func(rel string) string {
		db := rel == "group" || rel == "passwd"
		inPol := inPolicy(rel, true) // reads the policy's paths again: it may have just changed
		if !db && !sudowatch.Relevant(rel) && !inPol {
			return ""
		}
		var g sudowatch.Grant
		var ok bool
		if db {
			g, ok = sudowatch.DatabaseGrant(etc, user)
		} else if g, ok = sudowatch.GrantIn(etc, user, "/etc/"+rel); !ok {
			g, ok = sudowatch.FirstGrant(etc, user) // made to apply by this change
		}
		if ok {
			return again(fmt.Sprintf(": %s line %d (%s) applies to the user", g.File, g.Line, g.Rule))
		}
		if filepath.Clean(etc) == "/etc" {
			if granted, err := sudowatch.SudoList(ctx, user); err == nil && granted {
				return again(": sudo -l -U " + user + " lists rules for the user")
			}
		}
		return ""
	}
	pick = func(rel string) bool {
		return rel == "group" || rel == "passwd" || inPolicy(rel, false)
	}
	return explain, pick
}

// namedPorts returns the ports that the policy's name entries name, sorted:
// what the relay checks in audit mode.
func namedPorts(p *policy.Policy) []uint16 {
	var out []uint16
	for e := range p.Endpoints() {
		if e.Host != "" && !slices.Contains(out, e.Port) {
			out = append(out, e.Port)
		}
	}
	slices.Sort(out)
	return out
}

// watchBridges keeps the firewall's list of docker's bridges' subnets,
// the traffic that stays on the machine, current from before Install on.
// Without it no bridge is exempt: host-to-container traffic is then
// policed like any other (fails closed), and the journal says why.
func (a *Agent) watchBridges(ctx context.Context, emit event.Emit) {
	note := func(level event.Level, msg string) {
		emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentFirewall, Level: level, Message: msg}})
	}
	err := bridgenet.Watch(ctx, bridgenet.Config{Set: a.fw.SetBridgeNets, Log: a.log,
		Note: func(msg string) { note(event.LevelWarning, msg) }})
	if err != nil {
		note(event.LevelWarning, "docker's bridges are not followed, so traffic to containers is policed like any other: "+err.Error())
	}
}

// startGuard watches the table just installed: whoever else changes it,
// it goes back and the journal gets an error naming them. Enforcement
// that cannot be watched is not started (block mode would fail open
// unnoticed).
func (a *Agent) startGuard(ctx context.Context, emit event.Emit) error {
	var hooks []guard.Hook
	for _, h := range a.fw.Hooks() {
		hooks = append(hooks, guard.Hook{Hook: h.Hook, Priority: h.Priority})
	}
	var existing []guard.Change
	if chains, err := a.fw.ForeignBaseChains(); err == nil {
		for _, c := range chains {
			existing = append(existing, guard.Change{Family: guard.FamilyName(c.Family), Table: c.Table, Name: c.Name,
				Hook: c.Hook, Priority: c.Priority})
		}
	}
	g, err := guard.New(guard.Config{Table: firewall.DefaultTable, Hooks: hooks, Restore: a.fw.Restore, OwnPort: a.fw.OwnsPort,
		Verify: a.fw.Verify, Existing: existing, Emit: emit, Process: proc.Info, Log: a.log})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	if err := g.Start(ctx); err != nil {
		return fmt.Errorf("agent: watch the firewall: %w", err)
	}
	a.guard = g
	if s, err := guard.WatchSysctls(ctx, guard.SysctlsConfig{Emit: emit, Writer: a.finder.SysctlWriter}); err != nil {
		emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentGuard, Level: event.LevelWarning,
			Message: "sysctls that weaken the rules are not watched: " + err.Error()}})
	} else {
		a.sysctls = s
	}
	if a.cfg.WatchEtc != "" {
		// Reported, not enforced: a machine without fanotify only loses this.
		var explain func(string) string
		var ifExplained func(string) bool
		if user := a.cfg.SudoUser; user != "" {
			explain, ifExplained = sudoExplainer(ctx, a.cfg.WatchEtc, user)
		}
		f, err := guard.WatchFiles(ctx, guard.FilesConfig{Root: a.cfg.WatchEtc, Emit: emit, Process: proc.Info,
			Explain: explain, IfExplained: ifExplained, Log: a.log})
		if err != nil {
			emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentGuard, Level: event.LevelWarning,
				Message: "changes of resolv.conf, hosts and sudoers are not watched: " + err.Error()}})
		} else {
			a.etc = f
		}
	}
	return nil
}

// Tampered returns how many times something changed our enforcement
// (see package egress/guard). Read it after Stop for the final count.
func (a *Agent) Tampered() int {
	n := 0
	if a.guard != nil {
		n += a.guard.Tampered()
	}
	if a.etc != nil {
		n += a.etc.Changes()
	}
	if a.sysctls != nil {
		n += a.sysctls.Changes()
	}
	return n
}

// preexisting snapshots the TCP connections open now, which keep working
// under the firewall however conntrack first sees them. Without the
// snapshot they are cut when next used mid-stream: said in the journal.
func preexisting(emit event.Emit) []firewall.Conn {
	conns, err := proc.TCPConns()
	if err != nil {
		emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentFirewall, Level: event.LevelWarning,
			Message: "connections open before the agent may break: " + err.Error()}})
		return nil
	}
	out := make([]firewall.Conn, len(conns))
	for i, c := range conns {
		out[i] = firewall.Conn{Local: c.Local, Remote: c.Remote}
	}
	return out
}

// startFiles takes the workspace baseline and starts watching it.
func (a *Agent) startFiles(ctx context.Context, emit event.Emit) error {
	var procs procTable // nil, not a nil *lineage.Tracker
	if a.lineage != nil {
		procs = a.lineage
	}
	// With the kernel's process table a writer is named after it exits
	// (measured: rm, mv, sed -i, truncate 100 of 100 each), so no open of
	// a workspace file needs to wait for us: the open gate is only the
	// fallback for attribution from /proc.
	m, err := filemon.New(filemon.Config{Root: a.cfg.Workspace, Emit: emit, Process: a.finder.Info, Log: a.log,
		NoOpenGate:   a.lineage != nil,
		Checkout:     func(p event.Process) bool { return isCheckout(p, a.runnerPID, procs, a.post) },
		CheckoutPost: func(p event.Process) bool { return isCheckoutPost(p, a.runnerPID, procs, a.post) }})
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
		emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentAgent, Level: event.LevelWarning,
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
	if a.sudo != nil {
		errs = append(errs, a.sudo.Close())
	}
	if a.docker != nil {
		errs = append(errs, a.docker.Close())
	}
	if a.files != nil {
		errs = append(errs, a.files.Close())
	}
	// The /etc watch drains and rescans as it closes (tens of ms): in
	// parallel with the rest, collected before the journal closes.
	etcClosed := make(chan error, 1)
	if a.etc != nil {
		go func() { etcClosed <- a.etc.Close() }()
	} else {
		etcClosed <- nil
	}
	if a.sysctls != nil {
		errs = append(errs, a.sysctls.Close())
	}
	// The guard before the table: removing it is no tampering.
	if a.guard != nil {
		errs = append(errs, a.guard.Close())
	}
	a.countUnrecordedAccepts()
	// The table goes first, so no query is redirected to a closed resolver.
	if a.fw != nil {
		errs = append(errs, a.fw.Remove())
	}
	if a.relay != nil {
		errs = append(errs, a.relay.Close())
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
	if a.lineage != nil {
		st := a.lineage.Stats()
		if a.journal != nil {
			a.journal.Emit(event.Record{Stats: &event.Stats{Component: event.ComponentLineage, Events: st.Events, Lost: st.Lost}})
		}
		errs = append(errs, a.lineage.Close())
	}
	errs = append(errs, <-etcClosed)
	if a.cancel != nil {
		a.cancel()
	}
	err := errors.Join(errs...)
	if a.journal != nil {
		if err != nil {
			a.journal.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentAgent, Level: event.LevelError, Message: err.Error()}})
		}
		_, failed := a.journal.Counts()
		a.journal.Emit(event.Record{Stats: &event.Stats{Component: event.ComponentJournal, Lost: failed}})
		a.journal.Emit(event.Record{Stop: &event.Stop{Time: time.Now(), Usage: selfUsage()}})
		errs = append(errs, a.journal.Close())
	}
	return errors.Join(errs...)
}

// countUnrecordedAccepts compares the packets the firewall marked as the
// host's allowed flows with those the kernel-side recorder saw: the rest
// (a later rule of someone else's dropped them, or a kernel tunnel
// socket such as WireGuard's sent them, for which the cgroup hook does
// not run) are flows the report lacks, said in a warning and counted as
// the flow log's lost. Read while the table is still there, after the
// workload (nothing is in flight then).
func (a *Agent) countUnrecordedAccepts() {
	if a.fw == nil || a.lineage == nil || a.flows == nil || a.fw.AcceptMark() == 0 {
		return
	}
	marked, err := a.fw.AcceptedPackets()
	if err != nil {
		a.log.Warn("agent: cannot count the allowed flows' marked packets", "err", err)
		return
	}
	seen := a.lineage.AcceptsSeen()
	if marked <= seen {
		return
	}
	n := marked - seen
	a.flows.AddLost(n)
	if a.journal != nil {
		a.journal.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentFlowlog, Level: event.LevelWarning,
			Message: fmt.Sprintf("%d packets of allowed flows never reached the kernel-side recorder (a later firewall rule dropped them, or a kernel tunnel socket such as WireGuard's sent them): their flows are not in the report", n)}})
	}
}

// startLineage starts the kernel-side capture, or says why it cannot run.
func startLineage(ctx context.Context, dnsPort uint16, onExec func(lineage.Proc), log *slog.Logger) (*lineage.Tracker, error) {
	tr, err := lineage.New(lineage.Config{DNSPort: dnsPort, AcceptMark: firewall.AcceptMarkBit, OnExec: onExec, Log: log})
	if err != nil {
		return nil, err
	}
	if err := tr.Start(ctx); err != nil {
		_ = tr.Close()
		return nil, err
	}
	return tr, nil
}

// Snapshot ends the journal's part the post step takes while the agent
// goes on enforcing (see journal.Writer.Snapshot): it returns the length of the
// journal up to and with its Snapshot record.
func (a *Agent) Snapshot() (int64, error) {
	if a.journal == nil || a.stopped {
		return 0, errors.New("agent: snapshot: the agent is not running")
	}
	if a.flows != nil {
		a.flows.Flush() // folded repeats, before the counts that include them
	}
	for _, st := range a.liveStats() {
		st.Live = true
		a.journal.Emit(event.Record{Stats: &st})
	}
	return a.journal.Snapshot(event.Record{Snapshot: &event.Snapshot{Time: time.Now()}})
}

// Alert writes a tamper error into the journal: something switched our
// enforcement off or tried to (see event.Note's Tamper).
func (a *Agent) Alert(component event.Component, message string) {
	if a.journal != nil && !a.stopped {
		a.journal.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: component, Level: event.LevelError,
			Message: message, Tamper: true}})
	}
}

// Note writes a note into the journal from outside the agent's
// components (e.g. `run`, about COMMAND's leftover processes).
func (a *Agent) Note(component event.Component, level event.Level, message string) {
	if a.journal != nil && !a.stopped {
		a.journal.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: component, Level: level, Message: message}})
	}
}

// liveStats are the running components' counts, for a snapshot: the
// report of a journal that ends there (the agent goes on enforcing) then
// knows what was lost so far instead of nothing.
func (a *Agent) liveStats() []event.Stats {
	var out []event.Stats
	if a.flows != nil {
		out = append(out, a.flows.Stats())
	}
	if a.gate != nil {
		out = append(out, a.gate.Stats())
	}
	if a.res != nil {
		out = append(out, a.res.Stats())
	}
	if a.relay != nil {
		out = append(out, a.relay.Stats())
	}
	if a.priv != nil {
		out = append(out, a.priv.Stats())
	}
	if a.files != nil {
		out = append(out, a.files.Stats())
	}
	if a.lineage != nil {
		st := a.lineage.Stats()
		out = append(out, event.Stats{Component: event.ComponentLineage, Events: st.Events, Lost: st.Lost})
	}
	_, failed := a.journal.Counts()
	return append(out, event.Stats{Component: event.ComponentJournal, Lost: failed})
}

// flowBatch is how long the kernel may hold allowed flows' log packets to
// hand them over in batches: with the kernel's attribution records
// (lineage) a flow's owner outlives its socket, so one wake-up per batch
// instead of one per new connection (bench/conn.sh); looked up from /proc
// after the fact, every millisecond loses short-lived clients.
func flowBatch(lineage bool) time.Duration {
	if lineage {
		return 10 * time.Millisecond
	}
	return 0
}

// selfUsage is the agent process's own CPU time and peak memory so far
// (its threads, not the job's processes); nil if the kernel did not say.
func selfUsage() *event.Usage {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return nil
	}
	return &event.Usage{
		UserSeconds:   time.Duration(ru.Utime.Nano()).Seconds(),
		SystemSeconds: time.Duration(ru.Stime.Nano()).Seconds(),
		MaxRSSBytes:   ru.Maxrss * 1024, // Linux counts KiB
	}
}
