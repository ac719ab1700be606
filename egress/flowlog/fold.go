package flowlog

import (
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/internal/fold"
)

// folder passes the first flow of each kind straight on and folds the
// repeats of that kind (same destination, protocol, verdict, direction,
// relay name and reason, and the same process) into one record with a
// Count, emitted at the next flush. A process that opens thousands of
// connections to one server then costs the journal one record per
// second, not one per connection: encoding each flow with its process and
// parents was the largest part of the agent's CPU per allowed flow
// (bench/conn.sh, perf).
type folder = fold.Folder[flowKind, event.Flow]

// flowKind is what makes two flows the same row of the report: the
// process is its pid and image, since a pid can be reused by another
// image (its parents follow from the pid while it lives).
type flowKind struct {
	ip, proto    string
	port         uint16
	verdict      event.Verdict
	forward      bool
	pid          int
	exe, cmdline string
	container    string
	unknown      string
	name, reason string
}

// foldInterval is how long repeats wait to be emitted as one record.
const foldInterval = time.Second

func newFolder(emit event.Emit) *folder {
	return fold.New[flowKind](func(f *event.Flow) { emit(event.Record{Flow: f}) },
		func(f *event.Flow) { f.Count = 1 },
		func(p *event.Flow, f event.Flow) {
			p.Count++
			if f.Time.After(p.Time) {
				p.Time = f.Time
			}
		})
}

func kindOf(f *event.Flow) flowKind {
	return flowKind{ip: f.IP, proto: f.Protocol, port: f.Port, verdict: f.Verdict, forward: f.Forward,
		pid: f.Process.PID, exe: f.Process.Exe, cmdline: f.Process.Cmdline, container: f.Process.Container,
		unknown: f.Process.Unknown, name: f.Name, reason: f.Reason}
}
