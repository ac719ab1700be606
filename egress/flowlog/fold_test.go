package flowlog

import (
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
)

func TestFolder(t *testing.T) {
	t0 := time.Unix(1000, 0)
	flow := func(pid int, port uint16, sec int) event.Flow {
		return event.Flow{Time: t0.Add(time.Duration(sec) * time.Second), IP: "198.18.0.2", Port: port,
			Protocol: "tcp", Verdict: event.Allowed, Process: event.Process{PID: pid, Exe: "/usr/bin/curl"}}
	}
	type out struct {
		pid   int
		port  uint16
		count int
		sec   int
	}
	for _, tc := range []struct {
		name   string
		in     []event.Flow
		flush  bool // flush between the first half and the second
		before []out
		after  []out
	}{
		{"first passes", []event.Flow{flow(1, 443, 0)}, false, []out{{1, 443, 0, 0}}, nil},
		{"repeats fold with the last time", []event.Flow{flow(1, 443, 0), flow(1, 443, 2), flow(1, 443, 1)}, false,
			[]out{{1, 443, 0, 0}}, []out{{1, 443, 2, 2}}},
		{"another process is its own kind", []event.Flow{flow(1, 443, 0), flow(2, 443, 1)}, false,
			[]out{{1, 443, 0, 0}, {2, 443, 0, 1}}, nil},
		{"another port is its own kind", []event.Flow{flow(1, 443, 0), flow(1, 80, 1)}, false,
			[]out{{1, 443, 0, 0}, {1, 80, 0, 1}}, nil},
		{"a known kind stays known after a flush", []event.Flow{flow(1, 443, 0), flow(1, 443, 1), flow(1, 443, 2)}, true,
			[]out{{1, 443, 0, 0}, {1, 443, 1, 1}}, []out{{1, 443, 1, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []out
			fo := newFolder(func(r event.Record) {
				f := r.Flow
				got = append(got, out{f.Process.PID, f.Port, f.Count, int(f.Time.Sub(t0) / time.Second)})
			})
			for i, f := range tc.in {
				fo.Add(kindOf(&f), f)
				if tc.flush && i == 1 {
					fo.Flush()
				}
			}
			check := func(when string, want []out) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("%s: emitted %+v, want %+v", when, got, want)
				}
				for i := range want {
					if got[i] != want[i] {
						t.Errorf("%s: emitted %+v, want %+v", when, got, want)
					}
				}
			}
			check("before the flush", tc.before)
			got = nil
			fo.Flush()
			check("at the flush", tc.after)
		})
	}
}
