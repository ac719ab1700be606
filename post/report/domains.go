package report

import (
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

// Which name a flow's address came from: the answers index, per process.

type dnsAgg struct {
	row  DNS
	seen map[string]bool // set once there are many answers
}

// addAnswer adds ans to the row's answers unless it is there already.
func (g *dnsAgg) addAnswer(ans string) {
	if g.seen == nil {
		if slices.Contains(g.row.Answers, ans) {
			return
		}
		g.row.Answers = append(g.row.Answers, ans)
		if len(g.row.Answers) > 16 {
			g.seen = map[string]bool{}
			for _, a := range g.row.Answers {
				g.seen[a] = true
			}
		}
		return
	}
	if !g.seen[ans] {
		g.seen[ans] = true
		g.row.Answers = append(g.row.Answers, ans)
	}
}

// answerRef is one DNS answer naming an address: the journal index of the
// DNS record, its time and its query name.
type answerRef struct {
	idx  int
	time time.Time
	name string
}

// askedKey is an address in an answer and the process that asked.
type askedKey struct {
	ip  string
	pid int
}

// answerIndex maps an address and the process that asked to the DNS
// answers that contained it.
type answerIndex struct {
	refs  map[askedKey][]answerRef // in journal order
	names map[string][]string      // distinct names per address, sorted
}

// maxOtherDomains caps Egress.OtherDomains.
const maxOtherDomains = 10

func indexAnswers(recs []event.Record) answerIndex {
	ix := answerIndex{refs: map[askedKey][]answerRef{}, names: map[string][]string{}}
	seen := map[[2]string]bool{}
	for i, rec := range recs {
		d := rec.DNS
		if d == nil || d.Name == "" {
			continue
		}
		for _, ans := range d.Answers {
			a, err := netip.ParseAddr(ans)
			if err != nil {
				continue // a CNAME target
			}
			ip := a.Unmap().WithZone("").String()
			k := askedKey{ip, d.Process.PID}
			ix.refs[k] = append(ix.refs[k], answerRef{idx: i, time: d.Time, name: d.Name})
			if k := [2]string{ip, d.Name}; !seen[k] {
				seen[k] = true
				ix.names[ip] = append(ix.names[ip], d.Name)
			}
		}
	}
	for _, ns := range ix.names {
		sort.Strings(ns)
	}
	return ix
}

// domainFor names the address ip of the flow at journal index i, time t,
// sent by process p, from an answer to a query of p itself, else of its
// nearest ancestor that asked; only when there is none and unknown is
// true (best-effort attribution), from a query whose process is unknown
// (pid 0: the resolver could not tell who asked). So a connection to an
// address the process never looked up is never shown, nor suggested, under
// a name another known process resolved to it.
func (ix answerIndex) domainFor(ip string, i int, t time.Time, p event.Process, unknown bool) string {
	if p.PID == 0 {
		return ix.answerFor(askedKey{ip, 0}, i, t)
	}
	if name := ix.answerFor(askedKey{ip, p.PID}, i, t); name != "" {
		return name
	}
	for _, a := range p.Parents {
		if a.PID <= 1 {
			break // init (or a container's) asks for nobody's children
		}
		if name := ix.answerFor(askedKey{ip, a.PID}, i, t); name != "" {
			return name
		}
	}
	if !unknown {
		return ""
	}
	return ix.answerFor(askedKey{ip, 0}, i, t)
}

// answerFor is the name of the latest answer for k before journal index
// i, else of the first one after it timestamped at most reorderSkew
// after t, else "".
func (ix answerIndex) answerFor(k askedKey, i int, t time.Time) string {
	refs := ix.refs[k]
	j := sort.Search(len(refs), func(k int) bool { return refs[k].idx > i })
	if j > 0 {
		return refs[j-1].name
	}
	if j < len(refs) && !refs[j].time.After(t.Add(reorderSkew)) {
		return refs[j].name
	}
	return ""
}

// others lists up to maxOtherDomains names other than domain that
// resolved to ip, and how many there are in all.
func (ix answerIndex) others(ip, domain string) ([]string, int) {
	var out []string
	total := 0
	for _, n := range ix.names[ip] {
		if n == domain {
			continue
		}
		total++
		if len(out) < maxOtherDomains {
			out = append(out, n)
		}
	}
	return out, total
}

// normIP returns the canonical text of an address (IPv4-mapped IPv6
// unmapped, lower case, zone dropped), or s unchanged if it does not parse.
func normIP(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return a.Unmap().WithZone("").String()
}
