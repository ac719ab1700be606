package report

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/harden-runner/harden-runner/event"
)

// Counts of what the agent's components saw and lost.

func components(expected map[event.Component]bool, stats map[event.Component]*Component) []Component {
	out := make([]Component, 0, len(expected))
	for name := range expected {
		if c := stats[name]; c != nil {
			out = append(out, *c)
		} else {
			out = append(out, Component{Name: name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func tally(cs []Component, f func(Component) Count) Tally {
	t := Tally{Total: Count{Known: true}, ByComponent: map[event.Component]Count{}}
	for _, c := range cs {
		v := f(c)
		t.ByComponent[c.Name] = v
		if v.Known {
			t.Known += v.N
			t.Total.N += v.N
		} else {
			t.Total = Count{}
		}
	}
	if !t.Total.Known {
		t.Total.N = 0
	}
	return t
}

func counts(r *Report) Counts {
	var c Counts
	type dest struct {
		host  string
		port  uint16
		proto string
	}
	dests := map[event.Verdict]map[dest]bool{}
	for _, e := range r.Egress {
		switch e.Verdict {
		case event.Allowed:
			c.EgressAllowed += e.Count
		case event.Blocked:
			c.EgressBlocked += e.Count
		case event.Audit:
			c.EgressAudit += e.Count
		}
		if dests[e.Verdict] == nil {
			dests[e.Verdict] = map[dest]bool{}
		}
		dests[e.Verdict][dest{e.host(), e.Port, e.Protocol}] = true
	}
	c.DestinationsAllowed = len(dests[event.Allowed])
	c.DestinationsBlocked = len(dests[event.Blocked])
	c.DestinationsAudit = len(dests[event.Audit])
	blockedNames := map[string]bool{}
	for _, d := range r.DNS {
		c.DNSQueries += d.Count
		switch d.Verdict {
		case event.Blocked:
			c.DNSBlocked += d.Count
			blockedNames[d.Name] = true
		case event.Audit:
			c.DNSAudit += d.Count
		}
	}
	c.DNSBlockedNames = len(blockedNames)
	c.Files = len(r.Files)
	return c
}

// Count is a counter that may be unknown (its component never reported).
// It marshals as a JSON number, or as the string "unknown" — never as a
// silent zero.
type Count struct {
	N     uint64
	Known bool
}

func (c Count) add(n uint64) Count { return Count{N: c.N + n, Known: true} }

// String returns the number, or "unknown".
func (c Count) String() string {
	if !c.Known {
		return "unknown"
	}
	return strconv.FormatUint(c.N, 10)
}

// MarshalJSON implements json.Marshaler.
func (c Count) MarshalJSON() ([]byte, error) {
	if !c.Known {
		return []byte(`"unknown"`), nil
	}
	return strconv.AppendUint(nil, c.N, 10), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (c *Count) UnmarshalJSON(b []byte) error {
	if string(b) == `"unknown"` {
		*c = Count{}
		return nil
	}
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("report: count %s: want a number or \"unknown\"", b)
	}
	*c = Count{N: n, Known: true}
	return nil
}
