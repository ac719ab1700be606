package resolver

import (
	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/fold"
)

// folder passes the first of each kind of DNS event straight on and folds
// identical repeats (name, type, verdict, rcode, pid) into one record with
// a Count, emitted at the next flush: the journal encoding is what a flush
// burst costs the answer path (p99).
type folder = fold.Folder[foldKey, event.DNS]

type foldKey struct {
	name, typ string
	verdict   event.Verdict
	rcode     string
	pid       int
}

func newFolder(emit event.Emit) *folder {
	return fold.New[foldKey](func(d *event.DNS) { emit(event.Record{DNS: d}) },
		func(d *event.DNS) { d.Count = 1 },
		func(p *event.DNS, d event.DNS) { p.Count++; p.Time = d.Time })
}

// dnsKind is d's kind.
func dnsKind(d *event.DNS) foldKey {
	return foldKey{d.Name, d.Type, d.Verdict, d.Rcode, d.Process.PID}
}
