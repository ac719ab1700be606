// Package report turns the agent's journal (event.Record lines) into the
// run's report: report.json (schema "harden-runner/report/v1") and the
// GitHub job-summary markdown summary.md, from records package journal
// read. It is pure logic apart from WriteDir's file writes; it imports
// neither nftables nor miekg/dns.
//
// Everything in the journal that a workload can influence (DNS names, file
// paths, executable paths, command lines, even note messages) is treated as
// hostile data. report.json carries it verbatim (JSON-escaped). summary.md
// shows it only through an escaper that makes it one inert line of text in
// GitHub-flavoured markdown; it never appears inside a code fence or raw
// HTML. The suggested policy is built only from endpoints that pass a
// strict host:port grammar; the rest are dropped and listed in
// suggested_policy.rejected.
//
// Domain correlation: a flow's domain is the query name of the most recent
// DNS answer earlier in the journal that contained the flow's address and
// answered a query of the flow's own process (same pid) or, failing that,
// of its nearest ancestor that asked (a shell's child connecting to what
// the parent looked up). With attribution "procfs" (best effort: the
// querier of a short-lived lookup may be unknown), an answer to an unknown
// querier (pid 0) is used when the process and its ancestors asked for
// none; with "ebpf" it never is, so a process that connects to an address
// it never looked up is a direct-IP flow, whoever else resolved a name to
// it. A flow of an unknown process takes only answers to unknown queriers.
// If there is none, a later answer is accepted when its time is at most
// reorderSkew after the flow's (the resolver and the packet log write to the
// journal concurrently). Every other name that resolved to the same address
// anywhere in the journal is listed in other_domains.
//
// Suggested policy decision: every connection the run attempted (allowed,
// audited or blocked) becomes domain:port, or ip:port when no name is known
// ([addr]:port for IPv6), except connections that match an implicit
// endpoint from the Start record (the Action always allows those; "*.x.com"
// matches subdomains at any depth, never the apex) and flows without a port
// (ICMP), which no host:port entry can express. A DNS query that was
// blocked (type A or AAAA) for a name with no connection at all is added
// as name:443 with reason "dns only, port assumed": in block mode the name
// never resolved, so the run could not even try to connect and the port is
// unknown. Names that were only resolved, never connected to, are not
// suggested. Observed names with a "*" label are rejected, never suggested
// as wildcards.
package report

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/runnerstep"
)

// Schema is the value of report.json's "schema" field.
const Schema = "harden-runner/report/v1"

// reorderSkew is how far a DNS answer written to the journal after a flow
// may be timestamped after it and still name it.
const reorderSkew = 2 * time.Second

// Options tunes Build. The zero value is usable.
type Options struct {
	// Workspace is the absolute workspace root used to make absolute file
	// paths relative. Empty means the Start record's Workspace.
	Workspace string
	// JournalBadLines is journal.Read's count of unreadable lines; it is
	// reported in agent.journal_bad_lines.
	JournalBadLines int
	// Steps are the job's workflow steps (from the jobs API). Rows are
	// labelled with the step their process ran under, else with the step
	// whose window contains their first time (see labelSteps).
	Steps []Step
	// Journal is where the journal came from (agent.journal).
	Journal JournalInfo
}

// Report is the content of report.json. Build creates it; callers treat it
// as read-only. Slices are never nil, so they marshal as [] rather than null.
type Report struct {
	Schema           string          `json:"schema"`
	Mode             event.Mode      `json:"mode"` // audit, block, or "" if the journal had no Start record
	AllowedEndpoints []string        `json:"allowed_endpoints"`
	ImplicitAllowed  []string        `json:"implicit_allowed"`
	Workspace        string          `json:"workspace,omitempty"`
	FileMonitoring   bool            `json:"file_monitoring"`
	Egress           []Egress        `json:"egress"`
	DNS              []DNS           `json:"dns"`
	Files            []File          `json:"files"`
	Privileged       []Privileged    `json:"privileged"`
	SuggestedPolicy  SuggestedPolicy `json:"suggested_policy"`
	Agent            Agent           `json:"agent"`
	Counts           Counts          `json:"counts"`

	// Steering lists files that change how a build's tools behave (a new
	// .npmrc, a git hook, a change to .git/config): not tampering with a
	// source file, reported on their own (event.Steer).
	Steering []Steering `json:"steering"`
}

// Egress is one aggregated outbound destination: all flows with the same
// domain, address, port, protocol, verdict, direction and process
// executable+command line. Process is the first one seen.
type Egress struct {
	Domain       string   `json:"domain,omitempty"`
	OtherDomains []string `json:"other_domains,omitempty"` // at most maxOtherDomains, sorted
	// OtherDomainsTotal counts all other names that resolved to IP (a
	// wildcard DNS zone can map thousands of names to one address).
	OtherDomainsTotal int           `json:"other_domains_total,omitempty"`
	IP                string        `json:"ip"`
	Port              uint16        `json:"port"`
	Protocol          string        `json:"protocol"`
	Verdict           event.Verdict `json:"verdict"`
	Forward           bool          `json:"forward,omitempty"`
	Process           event.Process `json:"process"`
	Count             int           `json:"count"`
	FirstSeen         time.Time     `json:"first_seen"`
	LastSeen          time.Time     `json:"last_seen"`
	Step              string        `json:"step,omitempty"` // workflow step of FirstSeen, if known
	// Reason is why the name-checking relay refused (or, in audit mode,
	// would have refused) the first of these flows.
	Reason string `json:"reason,omitempty"`
}

// DNS is one aggregated DNS query kind: all queries with the same name,
// type and verdict. Answers and Rcodes are unions in first-seen order;
// Process is the first one seen.
type DNS struct {
	Name      string        `json:"name"`
	Type      string        `json:"type"`
	Verdict   event.Verdict `json:"verdict"`
	Answers   []string      `json:"answers"`
	Rcodes    []string      `json:"rcodes,omitempty"`
	Process   event.Process `json:"process"`
	Count     int           `json:"count"`
	FirstSeen time.Time     `json:"first_seen"`
	Step      string        `json:"step,omitempty"` // workflow step of FirstSeen, if known
}

// File is one change to a pre-existing workspace file, in journal order.
type File struct {
	Path    string        `json:"path"`
	Event   event.FileOp  `json:"event"`
	Process event.Process `json:"process"`
	Time    time.Time     `json:"time"`
	Step    string        `json:"step,omitempty"` // workflow step of the process, else of Time, if known
}

// Steering is one steering file created or changed (event.Steer).
type Steering struct {
	Path    string        `json:"path"`
	Change  string        `json:"change"` // created, or a file event of a file that existed
	Why     string        `json:"why"`
	Process event.Process `json:"process"`
	Time    time.Time     `json:"time"`
	Step    string        `json:"step,omitempty"`
}

// Privileged is one start of a privilege-raising program (sudo, su, ...),
// in journal order.
type Privileged struct {
	Program string        `json:"program"` // the program, or docker's socket
	Process event.Process `json:"process"`
	Time    time.Time     `json:"time"`
	Verdict event.Verdict `json:"verdict,omitempty"` // blocked: a refused docker request
	Detail  string        `json:"detail,omitempty"`  // the refused docker request
	Step    string        `json:"step,omitempty"`    // workflow step, if known
}

// Message is a note from the agent or one of its components (or, with
// component "report", a problem the report builder found in the journal).
type Message struct {
	Time      time.Time       `json:"time,omitzero"` // zero (left out) for the report's own messages
	Component event.Component `json:"component"`
	Message   string          `json:"message"`
	// Tamper marks an error about our own enforcement being changed or
	// switched off, and Process is who did it, when known (egress/guard).
	Tamper  bool           `json:"tamper,omitempty"`
	Process *event.Process `json:"process,omitempty"`
}

// Tampering returns the errors about our own enforcement being changed
// or switched off during the run (each was undone where it could be).
func (r *Report) Tampering() []Message {
	var out []Message
	for _, m := range r.Agent.Errors {
		if m.Tamper {
			out = append(out, m)
		}
	}
	return out
}

// Agent describes the agent's own health during the run.
type Agent struct {
	Start *time.Time `json:"start"` // nil if the journal has no Start record
	// Attribution is how events were tied to processes: "ebpf" or
	// "procfs" (best effort), with why; "" for an older journal.
	Attribution       string     `json:"attribution,omitempty"`
	AttributionReason string     `json:"attribution_reason,omitempty"`
	Stop              *time.Time `json:"stop"` // nil if the agent did not stop cleanly
	StoppedCleanly    bool       `json:"stopped_cleanly"`
	// Usage is the agent process's own CPU time and peak memory, as it
	// measured them when it stopped (the last one's, if its supervisor
	// restarted it); nil if it did not stop cleanly or did not measure.
	Usage *event.Usage `json:"usage,omitempty"`
	// Snapshot is the time of the journal's Snapshot record when the
	// journal ends there: the agent went on enforcing after it.
	Snapshot *time.Time  `json:"snapshot,omitempty"`
	Journal  JournalInfo `json:"journal"`
	// Gaps are the times the agent was not running during the run
	// (killed, then restarted by its supervisor); each is also an error.
	Gaps     []Gap     `json:"gaps"`
	Errors   []Message `json:"errors"`
	Warnings []Message `json:"warnings"`
	Info     []Message `json:"info"`
	// NotCovered says what a monitor did not watch (event.Coverage): the
	// summary's verdict line warns of it. Omitted when everything was.
	NotCovered   []Message   `json:"not_covered,omitempty"`
	Components   []Component `json:"components"`
	Lost         Tally       `json:"lost"`
	Unattributed Tally       `json:"unattributed"`
	// UnattributedEvents counts flows, DNS queries and file events in the
	// journal whose process is unknown (PID 0).
	UnattributedEvents int `json:"unattributed_events"`
	JournalBadLines    int `json:"journal_bad_lines"`
	// UnknownRecords counts journal records with no field this version
	// understands (a newer agent, or a damaged line that still parsed).
	UnknownRecords int `json:"unknown_records"`
}

// Gap is a time the agent was down (event.Gap). Seconds is To - From;
// From is the dead agent's last sign of life, so the gap is at most a
// heartbeat (agent.HeartbeatEvery) shorter than this.
type Gap struct {
	From    time.Time      `json:"from"`
	To      time.Time      `json:"to"`
	Seconds float64        `json:"seconds"`
	Reason  string         `json:"reason"`
	Process *event.Process `json:"process,omitempty"`
}

// Component holds one component's Stats; the counts are Unknown when the
// component wrote no Stats record.
type Component struct {
	Name         event.Component `json:"component"`
	Reported     bool            `json:"reported"`
	Events       Count           `json:"events"`
	Lost         Count           `json:"lost"`
	Unattributed Count           `json:"unattributed"`
}

// Tally is a counter summed over components. Total is unknown when any
// expected component did not report; Known is the sum over those that did.
type Tally struct {
	Total       Count                     `json:"total"`
	Known       uint64                    `json:"known"`
	ByComponent map[event.Component]Count `json:"by_component"`
}

// Counts are the report's headline numbers. Egress* count connections
// (flows); Destinations* count distinct host·port·protocol per verdict,
// where host is the domain when known, else the address.
type Counts struct {
	EgressAllowed       int `json:"egress_allowed"`
	EgressBlocked       int `json:"egress_blocked"`
	EgressAudit         int `json:"egress_audit"`
	DestinationsAllowed int `json:"destinations_allowed"`
	DestinationsBlocked int `json:"destinations_blocked"`
	DestinationsAudit   int `json:"destinations_audit"`
	DNSQueries          int `json:"dns_queries"`
	DNSBlocked          int `json:"dns_blocked"`
	DNSBlockedNames     int `json:"dns_blocked_names"`
	DNSAudit            int `json:"dns_audit"`
	Files               int `json:"files"`
}

// Build turns journal records (in journal order) into a Report. It is
// pure: no I/O, no clock. recs may be nil.
func Build(recs []event.Record, opt Options) *Report {
	r := &Report{
		Schema:           Schema,
		AllowedEndpoints: []string{},
		ImplicitAllowed:  []string{},
		Egress:           []Egress{},
		DNS:              []DNS{},
		Files:            []File{},
		Steering:         []Steering{},
		Privileged:       []Privileged{},
	}
	a := &r.Agent
	a.Errors, a.Warnings, a.Info, a.Gaps = []Message{}, []Message{}, []Message{}, []Gap{}
	a.JournalBadLines = opt.JournalBadLines

	var start *event.Start
	starts, gaps := 0, 0
	roots := map[runnerstep.Key]event.StepRoot{}
	for _, rec := range recs {
		if sr := rec.StepRoot; sr != nil {
			roots[runnerstep.Key{PID: sr.PID, Cmdline: sr.Cmdline}] = *sr
		}
		if rec.Gap != nil {
			gaps++
		}
		if rec.Start != nil {
			starts++
			if start == nil {
				start = rec.Start
			}
		}
	}
	if start != nil {
		r.Mode = start.Mode
		r.AllowedEndpoints = append(r.AllowedEndpoints, start.AllowedEndpoints...)
		r.ImplicitAllowed = append(r.ImplicitAllowed, start.ImplicitAllowed...)
		r.Workspace = start.Workspace
		r.FileMonitoring = start.FileMonitoring
		t := start.Time
		a.Start = &t
		a.Attribution, a.AttributionReason = start.Attribution, start.AttributionReason
		if a.Attribution == "procfs" {
			a.Warnings = append(a.Warnings, Message{Component: event.ComponentAgent,
				Message: "processes are looked up after the fact (best effort: short-lived senders may go unnamed): " + a.AttributionReason})
		}
	} else {
		a.Warnings = append(a.Warnings, Message{Component: event.ComponentReport,
			Message: "the journal has no start record: the agent's settings are unknown"})
	}
	if starts > 1+gaps { // a restart after a gap has its own error
		a.Warnings = append(a.Warnings, Message{Time: start.Time, Component: event.ComponentReport,
			Message: "the journal has more than one start record: the agent was started again during the run"})
	}
	workspace := opt.Workspace
	if workspace == "" {
		workspace = r.Workspace
	}

	names := indexAnswers(recs)
	eg := map[egressKey]*Egress{} // aggregated flows
	var egRows []*Egress          // in first-seen order
	dq := map[dnsKey]*dnsAgg{}    // aggregated DNS rows
	var dnsRows []*dnsAgg         // in first-seen order
	stats := map[event.Component]*Component{}
	addStats := func(st *event.Stats) {
		c := stats[st.Component]
		if c == nil {
			c = &Component{Name: st.Component, Reported: true}
			stats[st.Component] = c
		}
		c.Events = c.Events.add(st.Events)
		c.Lost = c.Lost.add(st.Lost)
		c.Unattributed = c.Unattributed.add(st.Unattributed)
	}
	// live holds each running component's latest counts from a snapshot
	// (event.Stats.Live) until its own Stats supersede them.
	live := map[event.Component]event.Stats{}
	flushLive := func() {
		for _, st := range live {
			addStats(&st)
		}
		clear(live)
	}
	expected := map[event.Component]bool{event.ComponentFlowlog: true, event.ComponentResolver: true}
	if start != nil && start.FileMonitoring {
		expected[event.ComponentFilemon] = true
	}

	for i, rec := range recs {
		switch {
		case rec.Flow != nil:
			f := rec.Flow
			expected[event.ComponentFlowlog] = true
			ip := normIP(f.IP)
			domain := relayName(f)
			if domain == "" {
				domain = names.domainFor(ip, i, f.Time, f.Process, a.Attribution != "ebpf")
			}
			k := egressKey{domain: domain, ip: ip, port: f.Port, proto: strings.ToLower(f.Protocol),
				verdict: f.Verdict, forward: f.Forward, exe: f.Process.Exe, cmdline: f.Process.Cmdline}
			n := max(f.Count, 1) // the flow log folds a process's repeats
			if f.Process.PID == 0 {
				a.UnattributedEvents += n
			}
			if e := eg[k]; e != nil {
				e.Count += n
				if f.Time.Before(e.FirstSeen) {
					e.FirstSeen = f.Time
				}
				if f.Time.After(e.LastSeen) {
					e.LastSeen = f.Time
				}
				continue
			}
			others, total := names.others(ip, domain)
			e := &Egress{Domain: domain, OtherDomains: others, OtherDomainsTotal: total,
				IP: ip, Port: f.Port, Protocol: k.proto, Verdict: f.Verdict, Forward: f.Forward,
				Process: f.Process, Count: n, FirstSeen: f.Time, LastSeen: f.Time, Reason: f.Reason}
			eg[k] = e
			egRows = append(egRows, e)
		case rec.DNS != nil:
			d := rec.DNS
			expected[event.ComponentResolver] = true
			if d.Process.PID == 0 {
				a.UnattributedEvents += max(d.Count, 1)
			}
			k := dnsKey{name: d.Name, typ: d.Type, verdict: d.Verdict}
			g := dq[k]
			if g == nil {
				g = &dnsAgg{row: DNS{Name: d.Name, Type: d.Type, Verdict: d.Verdict, Answers: []string{},
					Process: d.Process, FirstSeen: d.Time}}
				dq[k] = g
				dnsRows = append(dnsRows, g)
			}
			g.row.Count += max(d.Count, 1)
			for _, ans := range d.Answers {
				g.addAnswer(ans)
			}
			if d.Rcode != "" && !slices.Contains(g.row.Rcodes, d.Rcode) {
				g.row.Rcodes = append(g.row.Rcodes, d.Rcode)
			}
		case rec.File != nil:
			f := rec.File
			expected[event.ComponentFilemon] = true
			if f.Process.PID == 0 {
				a.UnattributedEvents++
			}
			r.Files = append(r.Files, File{Path: relPath(f.Path, workspace), Event: f.Event,
				Process: f.Process, Time: f.Time})
		case rec.Steer != nil:
			st := rec.Steer
			r.Steering = append(r.Steering, Steering{Path: relPath(st.Path, workspace), Change: st.Change, Why: st.Why,
				Process: st.Process, Time: st.Time})
		case rec.Exec != nil:
			e := rec.Exec
			expected[event.ComponentPrivmon] = true
			r.Privileged = append(r.Privileged, Privileged{Program: e.Program, Process: e.Process, Time: e.Time,
				Verdict: e.Verdict, Detail: e.Detail})
		case rec.Note != nil:
			n := rec.Note
			m := Message{Time: n.Time, Component: n.Component, Message: n.Message, Tamper: n.Tamper, Process: n.Process}
			switch n.Level {
			case event.LevelError:
				a.Errors = append(a.Errors, m)
			case event.LevelInfo:
				a.Info = append(a.Info, m)
			default: // warning, or a level this version does not know
				a.Warnings = append(a.Warnings, m)
			}
		case rec.Coverage != nil:
			c := rec.Coverage
			a.NotCovered = append(a.NotCovered, Message{Time: c.Time, Component: c.Component, Message: c.NotCovered})
			a.Warnings = append(a.Warnings, Message{Time: c.Time, Component: c.Component,
				Message: "not watched: " + c.NotCovered + ": " + c.Reason})
		case rec.Stats != nil && rec.Stats.Live:
			live[rec.Stats.Component] = *rec.Stats // the latest, until the component's own Stats
		case rec.Stats != nil:
			delete(live, rec.Stats.Component)
			addStats(rec.Stats)
		case rec.Stop != nil:
			t := rec.Stop.Time
			a.Stop = &t
			a.Usage = rec.Stop.Usage
			a.Snapshot = nil // a snapshot before the end is just a mark
		case rec.Snapshot != nil:
			t := rec.Snapshot.Time
			a.Snapshot = &t
		case rec.Gap != nil:
			g := rec.Gap
			gap := Gap{From: g.From, To: g.To, Seconds: g.To.Sub(g.From).Seconds(), Reason: g.Reason, Process: g.Process}
			a.Gaps = append(a.Gaps, gap)
			from := "an unknown time"
			if !g.From.IsZero() {
				from = g.From.UTC().Format("15:04:05.000")
			}
			a.Errors = append(a.Errors, Message{Time: g.To, Component: event.ComponentAgent, Tamper: true, Process: g.Process,
				Message: fmt.Sprintf("the agent was not running for %.3f s (from %s to %s UTC; %s) until its supervisor restarted it: the table stayed, so what was blocked stayed blocked, but nothing was recorded meanwhile and DNS went unanswered",
					gap.Seconds, from, g.To.UTC().Format("15:04:05.000"), g.Reason)})
		case rec.Start != nil:
			flushLive() // an agent that died after a snapshot: its last word
		default:
			a.UnknownRecords++
		}
	}
	liveCounts := len(live) > 0
	flushLive()
	a.StoppedCleanly = a.Stop != nil
	a.Journal = opt.Journal
	a.Journal.Snapshot = a.Snapshot != nil
	if a.Snapshot != nil {
		a.Info = append(a.Info, Message{Component: event.ComponentReport,
			Message: snapshotNote(liveCounts)})
	} else if !a.StoppedCleanly {
		a.Warnings = append(a.Warnings, Message{Component: event.ComponentReport,
			Message: "agent did not stop cleanly: events from its last moments may be missing"})
	}
	if opt.JournalBadLines > 0 {
		a.Warnings = append(a.Warnings, Message{Component: event.ComponentReport,
			Message: "the journal has unreadable lines (see journal_bad_lines); their events are missing"})
	}
	if a.UnknownRecords > 0 {
		a.Warnings = append(a.Warnings, Message{Component: event.ComponentReport,
			Message: "the journal has records this report version does not understand (see unknown_records)"})
	}
	for name := range stats {
		expected[name] = true
	}
	a.Components = components(expected, stats)
	a.Lost = tally(a.Components, func(c Component) Count { return c.Lost })
	a.Unattributed = tally(a.Components, func(c Component) Count { return c.Unattributed })

	// Sort pointers, then copy: the rows are large.
	sortEgress(egRows)
	r.Egress = make([]Egress, 0, len(egRows))
	for _, e := range egRows {
		r.Egress = append(r.Egress, *e)
	}
	slices.SortStableFunc(dnsRows, func(x, y *dnsAgg) int {
		return cmp.Or(
			cmp.Compare(verdictRank(x.row.Verdict), verdictRank(y.row.Verdict)),
			cmp.Compare(x.row.Name, y.row.Name),
			cmp.Compare(x.row.Type, y.row.Type))
	})
	r.DNS = make([]DNS, 0, len(dnsRows))
	for _, g := range dnsRows {
		r.DNS = append(r.DNS, g.row)
	}
	labelSteps(r, opt.Steps, roots)
	r.Counts = counts(r)
	r.SuggestedPolicy = suggest(r)
	return r
}

type egressKey struct {
	domain, ip   string
	port         uint16
	proto        string
	verdict      event.Verdict
	forward      bool
	exe, cmdline string
}

type dnsKey struct {
	name, typ string
	verdict   event.Verdict
}

// relPath makes p relative to workspace when it is an absolute path inside it.
func relPath(p, workspace string) string {
	if workspace == "" || !strings.HasPrefix(p, "/") {
		return p
	}
	ws := strings.TrimSuffix(path.Clean(workspace), "/")
	cp := path.Clean(p)
	if rest, ok := strings.CutPrefix(cp, ws+"/"); ok && ws != "" {
		return rest
	}
	return p
}

// verdictRank orders verdicts blocked, audit, allowed, then anything else.
func verdictRank(v event.Verdict) int {
	switch v {
	case event.Blocked:
		return 0
	case event.Audit:
		return 1
	case event.Allowed:
		return 2
	}
	return 3
}

// host is what a user would name a destination by: its domain when known.
func (e Egress) host() string {
	if e.Domain != "" {
		return e.Domain
	}
	return e.IP
}

func sortEgress(es []*Egress) {
	slices.SortStableFunc(es, func(x, y *Egress) int {
		c := cmp.Or(
			cmp.Compare(verdictRank(x.Verdict), verdictRank(y.Verdict)),
			cmp.Compare(x.host(), y.host()),
			cmp.Compare(x.Port, y.Port),
			cmp.Compare(x.Protocol, y.Protocol),
			cmp.Compare(x.IP, y.IP),
			cmp.Compare(x.Process.Exe, y.Process.Exe),
			cmp.Compare(x.Process.Cmdline, y.Process.Cmdline),
		)
		if c == 0 && x.Forward != y.Forward {
			c = 1
			if y.Forward {
				c = -1
			}
		}
		return c
	})
}

// relayName is the name a flow itself carried (TLS SNI or HTTP Host, read
// by the relay), which beats DNS correlation: it is the name the client
// asked that address for. A name no host could have (the relay quoted
// it) is not used; the flow then falls back to correlation.
func relayName(f *event.Flow) string {
	if f.Name == "" || strings.HasPrefix(f.Name, `"`) {
		return ""
	}
	return normName(f.Name)
}

// snapshotNote is the report's word on a journal that ends at a snapshot.
func snapshotNote(liveCounts bool) string {
	if liveCounts {
		return "the journal is a snapshot taken while the agent went on enforcing: events after it are not in this report; counts (lost events among them) are as of the snapshot"
	}
	return "the journal is a snapshot taken while the agent went on enforcing: events after it are not in this report, and components report their counts (lost events among them) only when they stop"
}
