// Package event defines the records that the agent's components emit and
// that the journal stores, one JSON object per line. It is a leaf package:
// it imports nothing of this module, and every component may import it.
package event

import "time"

// Verdict says what the firewall or the resolver did with something.
type Verdict string

// Verdicts. Audit means "would have been blocked, was let through and recorded".
const (
	Allowed Verdict = "allowed"
	Blocked Verdict = "blocked"
	Audit   Verdict = "audit"
)

// Level is how much a Note matters to the user.
type Level string

// Note levels: an error fails nothing by itself but is shown as one.
const (
	LevelInfo    Level = "info"
	LevelWarning Level = "warning"
	LevelError   Level = "error"
)

// Mode is the egress policy a run enforced (package egress/policy parses
// it): ModeAudit lets everything through and records what ModeBlock would
// have stopped; ModeBlock stops everything the policy does not allow.
type Mode string

// The two egress policies, spelled as the `egress-policy` input spells them.
const (
	ModeAudit Mode = "audit"
	ModeBlock Mode = "block"
)

// Component names the part of the agent a Note, Stats or Coverage record
// comes from.
type Component string

// The components that write records.
const (
	ComponentAgent         Component = "agent"
	ComponentDockergate    Component = "dockergate"
	ComponentDockergateLSM Component = "dockergate-lsm"
	ComponentFilemon       Component = "filemon"
	ComponentFirewall      Component = "firewall"
	ComponentFlowlog       Component = "flowlog"
	ComponentGate          Component = "gate"
	ComponentGuard         Component = "guard"
	ComponentJournal       Component = "journal"
	ComponentLineage       Component = "lineage"
	ComponentPrivmon       Component = "privmon"
	ComponentRelay         Component = "relay"
	ComponentReport        Component = "report"
	ComponentResolver      Component = "resolver"
	ComponentSudowatch     Component = "sudowatch"
)

// Process identifies the program behind an event. The zero value (PID 0)
// means the process could not be determined; Unknown says why.
type Process struct {
	PID     int        `json:"pid"`
	Exe     string     `json:"exe,omitempty"`
	Cmdline string     `json:"cmdline,omitempty"` // arguments joined by single spaces
	UID     int        `json:"uid"`
	Parents []Ancestor `json:"parents,omitempty"` // nearest first, up to PID 1; may be shared with other events: read, append, never write an element
	Unknown string     `json:"unknown,omitempty"` // why the process is unknown, if it is
	// Container is the short ID of the container the process runs in, for
	// flows the host forwarded from a container.
	Container string `json:"container,omitempty"`
}

// Ancestor is one link of a process's parent chain.
type Ancestor struct {
	PID     int    `json:"pid"`
	Exe     string `json:"exe,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
}

// Flow is one new outbound connection (TCP) or datagram flow (UDP, ICMP, ...)
// as the firewall saw its first packet.
type Flow struct {
	Time     time.Time `json:"time"`
	IP       string    `json:"ip"`
	Port     uint16    `json:"port,omitempty"`
	Protocol string    `json:"protocol"` // tcp, udp, icmp, icmpv6, or the IP protocol number
	Verdict  Verdict   `json:"verdict"`
	Forward  bool      `json:"forward,omitempty"` // routed through the host (a container), not sent by it
	Process  Process   `json:"process"`
	// Name is the server name the connection itself carried (TLS SNI, or
	// the HTTP/1 Host without its port), as the name-checking relay read
	// it; "" when it carried none or did not pass through the relay.
	// Attacker-controlled: a name no host could have is quoted (Go syntax).
	Name string `json:"name,omitempty"`
	// Reason says why the relay refused or would have refused it.
	Reason string `json:"reason,omitempty"`
	// Count is how many identical flows (same destination, protocol,
	// verdict, name, reason and process) this record stands for; 0 means
	// 1. The flow log folds a process's repeats within a second into one
	// record, as the resolver does for DNS queries.
	Count int `json:"count,omitempty"`
}

// DNS is one query that reached the agent's resolver.
type DNS struct {
	Time    time.Time `json:"time"`
	Name    string    `json:"name"` // lower case, no trailing dot
	Type    string    `json:"type"` // A, AAAA, TXT, ...
	Verdict Verdict   `json:"verdict"`
	Rcode   string    `json:"rcode,omitempty"`
	Answers []string  `json:"answers,omitempty"` // addresses and CNAME targets, in answer order
	TTL     uint32    `json:"ttl,omitempty"`     // smallest TTL among the answers
	Process Process   `json:"process"`
	// Count is how many identical queries (same name, type, verdict, rcode
	// and process) this record stands for; 0 means 1. The resolver folds
	// repeats within a second into one record so a busy client cannot make
	// the journal its bottleneck.
	Count int `json:"count,omitempty"`
}

// FileOp names what happened to a pre-existing workspace file.
type FileOp string

// File operations that filemon reports.
const (
	Overwrite FileOp = "overwrite"
	Truncate  FileOp = "truncate"
	Delete    FileOp = "delete"
	Rename    FileOp = "rename"
)

// File is a change to a file that existed in the workspace when monitoring began.
type File struct {
	Time    time.Time `json:"time"`
	Path    string    `json:"path"` // relative to the workspace, slash-separated
	Event   FileOp    `json:"event"`
	Process Process   `json:"process"`
}

// Steer is a file that changes how a build's tools behave though no source
// file changed (a new .npmrc, *.pth, conftest.py, workflow or git hook; a
// change to .git/config, HEAD, packed-refs, info/attributes or a replace
// ref). It is not tampering with a source file, and is reported on its own.
type Steer struct {
	Time    time.Time `json:"time"`
	Path    string    `json:"path"`   // relative to the workspace, slash-separated
	Change  string    `json:"change"` // created, or a FileOp of a file that existed
	Why     string    `json:"why"`    // what the file steers
	Process Process   `json:"process"`
}

// Exec is a use of a privilege-raising program (sudo, su, ...: a start of
// it, Verdict empty) or of docker (a connection to its socket that was
// refused, Verdict Blocked).
type Exec struct {
	Time    time.Time `json:"time"`
	Program string    `json:"program"` // the watched file: the program, or docker's socket
	Process Process   `json:"process"` // the process running it, read just after the exec
	Verdict Verdict   `json:"verdict,omitempty"`
	Detail  string    `json:"detail,omitempty"` // for docker: the refused request, "POST /containers/create"
}

// StepRoot is a workflow step's root process: the runner's (Runner.Worker's)
// direct child that runs the step. Name is what the runner calls a step
// without `name:` ("Run npm ci", "Run actions/setup-go@v5"), "" if unknown.
type StepRoot struct {
	Time    time.Time `json:"time"` // of the first event under it
	PID     int       `json:"pid"`
	Cmdline string    `json:"cmdline"`
	Name    string    `json:"name,omitempty"`
}

// Process returns the process a record names (flow, DNS query, file
// change, exec or steering file), or nil.
func (r Record) Process() *Process {
	switch {
	case r.Flow != nil:
		return &r.Flow.Process
	case r.DNS != nil:
		return &r.DNS.Process
	case r.File != nil:
		return &r.File.Process
	case r.Exec != nil:
		return &r.Exec.Process
	case r.Steer != nil:
		return &r.Steer.Process
	}
	return nil
}

// Time returns when a flow, DNS query, file change, exec or steering file
// happened, or the zero time for other records.
func (r Record) Time() time.Time {
	switch {
	case r.Flow != nil:
		return r.Flow.Time
	case r.DNS != nil:
		return r.DNS.Time
	case r.File != nil:
		return r.File.Time
	case r.Exec != nil:
		return r.Exec.Time
	case r.Steer != nil:
		return r.Steer.Time
	}
	return time.Time{}
}

// Note is something the user must see that is not traffic or a file change:
// an error, a degraded component, a count of events lost.
type Note struct {
	Time      time.Time `json:"time"`
	Component Component `json:"component"`
	Level     Level     `json:"level"`
	Message   string    `json:"message"`
	// Tamper marks an error about our own enforcement being changed or
	// switched off (package egress/guard); `run --on-tamper fail` and the
	// post step fail the job on it.
	Tamper bool `json:"tamper,omitempty"`
	// Process is who did what the note is about, when known.
	Process *Process `json:"process,omitempty"`
}

// Stats are counters a component reports when it stops. Lost and
// Unattributed are never left out: zero is a measured zero.
type Stats struct {
	Component    Component `json:"component"`
	Events       uint64    `json:"events"`
	Lost         uint64    `json:"lost"`
	Unattributed uint64    `json:"unattributed"`
	// Live: the counts so far of a component that goes on running, taken
	// for a journal snapshot; a later Stats of the same component (when
	// it stops) supersedes them.
	Live bool `json:"live,omitempty"`
}

// Record is one journal line: exactly one of its pointer fields is set.
type Record struct {
	Flow  *Flow  `json:"flow,omitempty"`
	DNS   *DNS   `json:"dns,omitempty"`
	File  *File  `json:"file,omitempty"`
	Note  *Note  `json:"note,omitempty"`
	Stats *Stats `json:"stats,omitempty"`
	Exec  *Exec  `json:"exec,omitempty"`
	// StepRoot names a workflow step's process the first time an event
	// under it is seen (see package runnerstep).
	StepRoot *StepRoot `json:"step_root,omitempty"`
	// Steer is a file that steers a build's tools (see Steer).
	Steer *Steer `json:"steer,omitempty"`
	// Coverage says what a monitor did not cover (see Coverage).
	Coverage *Coverage `json:"coverage,omitempty"`
	// Start and Stop mark the agent's lifetime; Start carries the settings.
	Start *Start `json:"start,omitempty"`
	Stop  *Stop  `json:"stop,omitempty"`
	// Snapshot marks where the post step took the journal while the
	// agent went on enforcing (a GitHub-hosted VM is discarded after the
	// job): a report built from it ends here.
	Snapshot *Snapshot `json:"snapshot,omitempty"`
	// Gap is a time the agent was not running (see Gap).
	Gap *Gap `json:"gap,omitempty"`
}

// Coverage says that a monitor could not start, started late, or had
// nothing to watch, and what that left uncovered. A report shows it as a
// warning in its verdict line: "0 files tampered" means little when the
// files were not watched.
type Coverage struct {
	Time       time.Time `json:"time"`
	Component  Component `json:"component"`   // filemon
	NotCovered string    `json:"not_covered"` // what was not watched: "every file", "the files the checkout wrote"
	Reason     string    `json:"reason"`      // why
}

// Start is the first journal record: when enforcement began and with what policy.
type Start struct {
	Time             time.Time `json:"time"`
	Mode             Mode      `json:"mode"`
	AllowedEndpoints []string  `json:"allowed_endpoints"`
	ImplicitAllowed  []string  `json:"implicit_allowed"`
	Upstreams        []string  `json:"upstreams"`
	Workspace        string    `json:"workspace,omitempty"`
	FileMonitoring   bool      `json:"file_monitoring"`
	// Attribution says how events are tied to processes: "ebpf" (the
	// kernel's records, as it happens) or "procfs" (looked up afterwards:
	// best effort, short-lived processes may go unnamed), with the reason.
	Attribution       string `json:"attribution,omitempty"`
	AttributionReason string `json:"attribution_reason,omitempty"`
}

// Stop is the last journal record, written when the agent shuts down cleanly.
// Usage is what the agent process itself used (not the job's processes);
// nil from an agent that did not measure it.
type Stop struct {
	Time  time.Time `json:"time"`
	Usage *Usage    `json:"usage,omitempty"`
}

// Usage is a process's own resource use (getrusage RUSAGE_SELF): its CPU
// time in user and kernel mode and its peak resident memory.
type Usage struct {
	UserSeconds   float64 `json:"user_seconds"`
	SystemSeconds float64 `json:"system_seconds"`
	MaxRSSBytes   int64   `json:"max_rss_bytes"`
}

// Snapshot is the last record of a journal taken while the agent still ran.
type Snapshot struct {
	Time time.Time `json:"time"`
}

// Gap is a time during the job when the agent was not running: it was
// killed or crashed, and its supervisor (systemd, or harden-runner's own
// in detached mode) started it again. The restarted agent writes it once
// it enforces again. While it was down the table stayed in the kernel:
// what was blocked stayed blocked, but nothing was recorded, DNS got no
// answers and flows the agent decides (denied ones, the relay's) failed.
type Gap struct {
	// From is the dead agent's last sign of life (its heartbeat, at most
	// a heartbeat period before it died); To is when the new one enforced.
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Reason is how it ended ("killed by signal 9"), when its supervisor
	// saw it, else why it is unknown.
	Reason  string   `json:"reason"`
	Process *Process `json:"process,omitempty"` // who ended it, when known
}

// Emit records one event. Implementations must be safe for concurrent use
// and must not block for long: components call it on their hot paths.
type Emit func(Record)
