package report

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/escape"
)

// DefaultSummaryMax is the summary size callers should use: GitHub's 1 MiB
// job-summary cap minus a margin for what else the step appends.
const DefaultSummaryMax = 1<<20 - 16<<10

// detailsRows is the row count above which a table is folded into a
// <details> block.
const detailsRows = 20

// listCap is how many errors or warnings the summary shows per list.
const listCap = 20

// Summary renders the report as GitHub job-summary markdown of at most
// maxBytes bytes (maxBytes <= 0 means DefaultSummaryMax). When the tables
// do not fit they are cut at a row boundary and a note says how many rows
// were left out; the verdict line, agent health and suggested policy are
// kept whenever they fit on their own. All untrusted data is escaped.
func (r *Report) Summary(maxBytes int) string { return r.SummaryNotes(maxBytes, nil) }

// SummaryNotes is Summary with notes from the caller (trusted markdown
// blocks, each ending in a newline, such as the Action's "> [!NOTE]" about
// a missing token) placed after the verdict line and the report's own
// alerts, before the tables: the verdict is always the first line. The
// notes count against maxBytes.
func (r *Report) SummaryNotes(maxBytes int, notes []string) string {
	if maxBytes <= 0 {
		maxBytes = DefaultSummaryMax
	}
	writeHead := func(w *mdWriter) {
		r.writeHead(w)
		for _, n := range notes {
			w.put(n + "\n")
		}
	}
	all := newMDWriter(maxBytes)
	all.reserve = 0
	writeHead(all)
	r.writeMiddle(all)
	r.writeTail(all, true)
	if !all.full {
		return all.finish() // everything fits
	}
	// The head and the tail (health, policy) are kept whole when they fit
	// in half the budget; the tables get the rest. If the policy block is
	// what makes them too big, the tail says so instead of showing it.
	head := newMDWriter(-1)
	writeHead(head)
	h := head.finish()
	for _, policy := range []bool{true, false} {
		tail := newMDWriter(-1)
		r.writeTail(tail, policy)
		t := tail.finish()
		if len(h)+len(t) <= maxBytes/2 {
			return h + within(maxBytes-len(h)-len(t), r.writeMiddle) + t
		}
	}
	return within(maxBytes, func(w *mdWriter) {
		writeHead(w)
		r.writeMiddle(w)
		r.writeTail(w, false)
	})
}

// within renders with write in at most limit bytes. It first tries without
// keeping room for the truncation note, so that output that fits exactly
// is not cut, and renders again with room for the note if it did not fit.
func within(limit int, write func(*mdWriter)) string {
	w := newMDWriter(limit)
	w.reserve = 0
	write(w)
	if !w.full {
		return w.finish()
	}
	w = newMDWriter(limit)
	write(w)
	return w.finish()
}

func (r *Report) writeHead(w *mdWriter) {
	c := r.Counts
	mode := "unknown mode"
	if r.Mode != "" {
		mode = cell(string(r.Mode))
	}
	var parts []string
	if c.DestinationsBlocked > 0 || r.Mode != event.ModeAudit {
		parts = append(parts, plural(c.DestinationsBlocked, "destination", "destinations")+" blocked")
	}
	if c.DestinationsAudit > 0 || r.Mode == event.ModeAudit {
		parts = append(parts, plural(c.DestinationsAudit, "destination", "destinations")+" not on the allow-list (audit)")
	}
	parts = append(parts, strconv.Itoa(c.DestinationsAllowed)+" allowed")
	if c.DNSBlockedNames > 0 {
		parts = append(parts, plural(c.DNSBlockedNames, "DNS name", "DNS names")+" blocked")
	}
	if r.FileMonitoring || c.Files > 0 {
		files := plural(c.Files, "file", "files") + " tampered"
		for _, m := range r.Agent.NotCovered {
			if m.Component == event.ComponentFilemon {
				files += " (⚠️ not watched: " + cell(m.Message) + ")"
				break
			}
		}
		parts = append(parts, files)
		if n := len(r.Steering); n > 0 {
			parts = append(parts, plural(n, "steering file", "steering files"))
		}
	} else {
		parts = append(parts, "file monitoring off")
	}
	w.put("## 🛡️ harden-runner (" + mode + "): " + strings.Join(parts, ", ") + "\n\n")
	a := r.Agent
	if a.Snapshot != nil {
		counts := "nor counts of lost events (components count them when they stop)"
		if a.Lost.Total.Known {
			counts = "and the counts of lost events are as of the snapshot"
		}
		w.put("> ℹ️ The agent still enforces until the VM is discarded: this report is a snapshot of its journal at " +
			a.Snapshot.UTC().Format("15:04:05") + " UTC; events after the snapshot are not in it, " + counts + ".\n\n")
	} else if !a.StoppedCleanly {
		w.put("> ⚠️ The agent did not stop cleanly: events from its last moments may be missing.\n\n")
	}
	if n := len(a.Errors); n > 0 {
		w.put("> ❌ The agent reported " + plural(n, "error", "errors") + ": see Agent health below.\n\n")
	}
	switch {
	case a.Snapshot != nil && !a.Lost.Total.Known:
		// Components count their losses when they stop; they have not.
	case !a.Lost.Total.Known || a.Lost.Total.N > 0:
		w.put("> ⚠️ Events lost: " + a.Lost.Total.String() + ". This report may be incomplete.\n\n")
	}
}

func (r *Report) writeMiddle(w *mdWriter) {
	r.writeSteps(w)
	r.writeEgress(w)
	r.writeDNS(w)
	r.writeFiles(w)
	r.writeSteering(w)
	r.writePrivileged(w)
}

// writePrivileged lists starts of sudo, su and the like, and docker
// requests (refused, and admitted ones folded per client and endpoint); nothing when there were none (it would only be noise).
func (r *Report) writePrivileged(w *mdWriter) {
	if len(r.Privileged) == 0 {
		return
	}
	w.put("### Privilege use\n\n")
	t := r.stepTable("Program", "Process", "Command line", "Time")
	w.table(t.header(), plural(len(r.Privileged), "start", "starts"), len(r.Privileged), func(i int) string {
		p := r.Privileged[i]
		prog := cell(p.Program)
		if p.Verdict != "" { // a docker request: refused, or admitted (folded, with a count)
			prog += " — " + cell(string(p.Verdict)) + ": " + cell(p.Detail)
		}
		return t.row(stepCell(p.Step), prog, processCell(p.Process), cell(p.Process.Cmdline), timeCell(p.Time))
	})
}

// destRow is one summary row: Egress rows merged across addresses.
type destRow struct {
	domain  string
	addrs   []string
	port    uint16
	proto   string
	verdict event.Verdict
	count   int
	steps   []string // workflow steps, in first-seen order
}

type procGroup struct {
	label string // already escaped markdown
	exe   string
	rank  int // best (lowest) verdict rank in the group
	rows  []*destRow
}

func (r *Report) writeEgress(w *mdWriter) {
	w.put("### Outbound destinations\n\n")
	if len(r.Egress) == 0 {
		w.put("No outbound connections were recorded.\n\n")
		return
	}
	groups := map[string]*procGroup{}
	type rowKey struct {
		group, host string
		port        uint16
		proto       string
		verdict     event.Verdict
	}
	rows := map[rowKey]*destRow{}
	for _, e := range r.Egress {
		gk, label := "x:"+e.Process.Exe, cell(e.Process.Exe)
		switch {
		case e.Process.Exe != "":
		case e.Forward:
			gk, label = "forward", "Forwarded traffic (containers), process unknown"
		default:
			gk, label = "unknown", "Unknown process"
		}
		g := groups[gk]
		if g == nil {
			g = &procGroup{label: label, exe: e.Process.Exe, rank: verdictRank(e.Verdict)}
			groups[gk] = g
		}
		g.rank = min(g.rank, verdictRank(e.Verdict))
		k := rowKey{gk, e.host(), e.Port, e.Protocol, e.Verdict}
		d := rows[k]
		if d == nil {
			d = &destRow{domain: e.Domain, port: e.Port, proto: e.Protocol, verdict: e.Verdict}
			rows[k] = d
			g.rows = append(g.rows, d) // r.Egress is sorted, so rows are too
		}
		if !slices.Contains(d.addrs, e.IP) {
			d.addrs = append(d.addrs, e.IP)
		}
		if e.Step != "" && !slices.Contains(d.steps, e.Step) {
			d.steps = append(d.steps, e.Step)
		}
		d.count += e.Count
	}
	order := make([]*procGroup, 0, len(groups))
	for _, g := range groups {
		order = append(order, g)
	}
	sort.Slice(order, func(i, j int) bool {
		x, y := order[i], order[j]
		if x.rank != y.rank {
			return x.rank < y.rank
		}
		if (x.exe == "") != (y.exe == "") {
			return x.exe != "" // known processes first
		}
		return cmp.Or(cmp.Compare(x.exe, y.exe), cmp.Compare(x.label, y.label)) < 0
	})
	t := r.stepTable("Domain", "Port:", "Addresses", "Protocol", "Verdict", "Count:")
	for _, g := range order {
		n := 0
		for _, d := range g.rows {
			n += d.count
		}
		w.put("#### " + g.label + " (" + plural(n, "connection", "connections") + ")\n\n")
		w.table(t.header(), plural(len(g.rows), "destination", "destinations"),
			len(g.rows), func(i int) string {
				d := g.rows[i]
				domain := "—"
				if d.domain != "" {
					domain = cell(displayName(d.domain))
				}
				port := "—"
				if d.port != 0 {
					port = strconv.Itoa(int(d.port))
				}
				return t.row(stepList(d.steps), domain, port, addrList(d.addrs), cell(d.proto), verdictCell(d.verdict), strconv.Itoa(d.count))
			})
	}
}

// dnsRow is one row of the DNS table: a name's queries of every record
// type with one verdict.
type dnsRow struct {
	DNS
	types []string
}

func (r *Report) writeDNS(w *mdWriter) {
	var rows []*dnsRow
	byName := map[[2]string]*dnsRow{}
	for _, d := range r.DNS {
		if d.Verdict != event.Blocked && d.Verdict != event.Audit {
			continue
		}
		k := [2]string{d.Name, string(d.Verdict)}
		row := byName[k]
		if row == nil {
			row = &dnsRow{DNS: d}
			byName[k] = row
			rows = append(rows, row) // r.DNS is sorted by verdict, name, type
		} else {
			row.Count += d.Count
			if d.FirstSeen.Before(row.FirstSeen) {
				row.Process, row.FirstSeen, row.Step = d.Process, d.FirstSeen, d.Step
			}
		}
		if !slices.Contains(row.types, d.Type) {
			row.types = append(row.types, d.Type)
		}
	}
	if r.Mode == event.ModeAudit || r.Counts.DNSAudit > 0 {
		w.put("### DNS names not on the allow-list\n\n")
	} else {
		w.put("### Blocked DNS names\n\n")
	}
	if len(rows) == 0 {
		w.put("None.\n\n")
		return
	}
	t := r.stepTable("Name", "Type", "Verdict", "Queries:", "Process")
	w.table(t.header(), plural(len(rows), "name", "names"), len(rows), func(i int) string {
		d := rows[i]
		return t.row(stepCell(d.Step), cell(displayName(d.Name)), cellList(d.types, 6), verdictCell(d.Verdict),
			strconv.Itoa(d.Count), processCell(d.Process))
	})
}

func (r *Report) writeFiles(w *mdWriter) {
	w.put("### Tampered files\n\n")
	switch {
	case len(r.Files) == 0 && !r.FileMonitoring:
		w.put("File monitoring was off.\n\n")
		return
	case len(r.Files) == 0:
		w.put("No file that existed when the job started was changed.\n\n")
		return
	}
	t := r.stepTable("Path", "Event", "Process", "Time")
	w.table(t.header(), plural(len(r.Files), "file event", "file events"), len(r.Files), func(i int) string {
		f := r.Files[i]
		return t.row(stepCell(f.Step), cell(f.Path), cell(string(f.Event)), processCell(f.Process), timeCell(f.Time))
	})
}

// writeSteering lists steering files; nothing when there were none.
func (r *Report) writeSteering(w *mdWriter) {
	if len(r.Steering) == 0 {
		return
	}
	w.put("### Files that steer the build's tools\n\nNot source files, but they change what npm, pip, pytest, go, MSBuild, git or the workflow do.\n\n")
	t := r.stepTable("Path", "Change", "What it steers", "Process", "Time")
	w.table(t.header(), plural(len(r.Steering), "steering file", "steering files"), len(r.Steering), func(i int) string {
		f := r.Steering[i]
		return t.row(stepCell(f.Step), cell(f.Path), cell(f.Change), cell(f.Why), processCell(f.Process), timeCell(f.Time))
	})
}

func (r *Report) writeTail(w *mdWriter, policy bool) {
	a := r.Agent
	w.put("### Agent health\n\n")
	// Folded when it has nothing to say: every component reported, nothing
	// was lost, no error.
	quiet := a.Lost.Total.Known && a.Lost.Total.N == 0 && len(a.Errors) == 0
	if quiet {
		w.open("<details><summary>"+escape.HTMLText("No events lost, no errors: "+
			plural(len(a.Components), "component", "components")+" reported")+"</summary>\n\n", "</details>\n\n")
	}
	w.table("| Component | Events | Lost | Unattributed |\n| --- | ---: | ---: | ---: |\n", "components",
		len(a.Components)+1, func(i int) string {
			if i == len(a.Components) {
				return "| total | | " + a.Lost.Total.String() + " | " + a.Unattributed.Total.String() + " |\n"
			}
			c := a.Components[i]
			return "| " + cell(string(c.Name)) + " | " + c.Events.String() + " | " + c.Lost.String() + " | " +
				c.Unattributed.String() + " |\n"
		})
	var facts []string
	if a.Start != nil {
		facts = append(facts, "Started: "+cell(a.Start.UTC().Format(time.RFC3339)))
	} else {
		facts = append(facts, "Started: unknown (the journal has no start record)")
	}
	if a.Stop != nil {
		facts = append(facts, "Stopped: "+cell(a.Stop.UTC().Format(time.RFC3339)))
	} else if a.Snapshot != nil {
		facts = append(facts, "Snapshot: "+cell(a.Snapshot.UTC().Format(time.RFC3339))+" (the agent went on enforcing)")
	} else {
		facts = append(facts, "Stopped: the agent did not stop cleanly")
	}
	if u := a.Usage; u != nil {
		facts = append(facts, fmt.Sprintf("The agent's own use: %.2f s CPU (%.2f user, %.2f system), peak memory %.1f MB",
			u.UserSeconds+u.SystemSeconds, u.UserSeconds, u.SystemSeconds, float64(u.MaxRSSBytes)/1e6))
	}
	if !a.Lost.Total.Known {
		facts = append(facts, "Lost events: unknown, at least "+strconv.FormatUint(a.Lost.Known, 10)+
			" (a component did not report its counters)")
	}
	if a.UnattributedEvents > 0 {
		facts = append(facts, "Events with an unknown process: "+strconv.Itoa(a.UnattributedEvents))
	}
	if a.JournalBadLines > 0 {
		facts = append(facts, "Unreadable journal lines skipped: "+strconv.Itoa(a.JournalBadLines))
	}
	if a.UnknownRecords > 0 {
		facts = append(facts, "Journal records not understood: "+strconv.Itoa(a.UnknownRecords))
	}
	for _, f := range facts {
		w.put("- " + f + "\n")
	}
	w.put("\n")
	if quiet {
		w.close()
	}
	writeMessages(w, "Errors", a.Errors)
	writeMessages(w, "Warnings", a.Warnings)
	r.writePolicy(w, policy)
}

func writeMessages(w *mdWriter, title string, ms []Message) {
	if len(ms) == 0 {
		return
	}
	w.put("#### " + title + "\n\n")
	for i, m := range ms {
		if i == listCap {
			w.put(fmt.Sprintf("- …and %d more in report.json\n", len(ms)-listCap))
			break
		}
		w.put("- " + cell(string(m.Component)) + ": " + cell(m.Message) + "\n")
	}
	w.put("\n")
}

// writePolicy writes the suggested policy: the paste-ready with: block
// (only if block is true, else a pointer to report.json), then what was
// refused, for review, outside the block.
func (r *Report) writePolicy(w *mdWriter, block bool) {
	sp := r.SuggestedPolicy
	w.put("### Suggested policy\n\n")
	switch {
	case !block:
		w.put("The suggested allow-list has " + plural(len(sp.AllowedEndpoints), "entry", "entries") +
			", too long for this summary: see suggested_policy in report.json.\n\n")
	case len(sp.Review) > 0:
		f := escape.Fence(sp.WithBlock)
		w.put("The endpoints this run used and reached, ready to paste into the harden-runner step (what was blocked is not in it: see below):\n\n" +
			f + "yaml\n" + sp.WithBlock + f + "\n\n")
	default:
		f := escape.Fence(sp.WithBlock)
		w.put("This would let the run pass with egress-policy: block. Paste it into the harden-runner step:\n\n" +
			f + "yaml\n" + sp.WithBlock + f + "\n\n")
	}
	if len(sp.Review) > 0 {
		w.put("#### Review before allowing\n\n" +
			"The run tried these and was refused. A build may need them, or they may be what an attacker wanted out: check each one before you add it.\n\n")
		for i, e := range sp.Review {
			if i == listCap {
				w.put(fmt.Sprintf("- …and %d more in suggested_policy.review in report.json\n", len(sp.Review)-listCap))
				break
			}
			what := plural(e.Count, "blocked connection", "blocked connections")
			if e.Reason == reasonDNSOnly {
				what = plural(e.Count, "blocked DNS query", "blocked DNS queries") + "; port 443 assumed"
			}
			w.put("- " + cell(e.Endpoint) + " (" + what + ")\n")
		}
		w.put("\n")
	}
	var notes []string
	if n := len(sp.ImplicitExcluded); n > 0 {
		notes = append(notes, "Left out because the Action always allows them (implicit): "+plural(n, "endpoint", "endpoints")+".")
	}
	if sp.RejectedCount > 0 {
		notes = append(notes, "Left out because they cannot be written as a safe host:port entry: "+
			plural(sp.RejectedCount, "destination", "destinations")+" (see suggested_policy.rejected in report.json).")
	}
	for _, n := range notes {
		w.put("- " + n + "\n")
	}
	if len(notes) > 0 {
		w.put("\n")
	}
}
