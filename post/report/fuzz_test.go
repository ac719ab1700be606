package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/journal"
)

func FuzzReadJournal(f *testing.F) {
	// Seeds are the fixtures in small pieces: the fuzzer minimizes every
	// new input it finds (up to -fuzzminimizetime, 60s by default, during
	// which the exec counter stands still); pass -fuzzminimizetime 1s for
	// short smoke runs.
	for _, name := range []string{"block", "audit", "hostile"} {
		b, err := os.ReadFile(filepath.Join("testdata", name+".jsonl"))
		if err != nil {
			f.Fatal(err)
		}
		lines := bytes.SplitAfter(b, []byte("\n"))
		for i := 0; i < len(lines); i += 4 {
			f.Add(bytes.Join(lines[i:min(i+4, len(lines))], nil))
		}
	}
	f.Add([]byte(`{"flow":{"ip":"198.18.0.1","port":443,"protocol":"tcp","verdict":"blocked"}}` + "\n" + `{"dns":{"name":"a","ty`))
	f.Add([]byte("\n\r\n{}\nnull\n{\"stop\":{\"time\":\"9999-12-31T23:59:59-23:59\"}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, bad, err := journal.Read(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		// That every line is a record or bad is journal's FuzzRead.
		r := Build(recs, Options{JournalBadLines: bad})
		js, err := r.JSON()
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(js) {
			t.Fatal("invalid JSON")
		}
		md := r.Summary(4096)
		if len(md) > 4096 {
			t.Fatalf("summary is %d bytes", len(md))
		}
		checkSource(t, md)
		checkWithBlock(t, r.SuggestedPolicy.WithBlock)
	})
}

// FuzzSuggested feeds arbitrary names, addresses and implicit entries
// through Build and checks the suggested policy stays in its grammar.
func FuzzSuggested(f *testing.F) {
	f.Add("api.github.com", "198.18.0.1", uint16(443), "*.github.com:443", false)
	f.Add("a\n    - run: x", "2001:db8::1", uint16(22), "", true)
	f.Add("*.evil.test", "198.18.0.1", uint16(80), "x:*", true)
	f.Add("", "not-an-ip", uint16(443), "[2001:db8::1]", false)
	f.Fuzz(func(t *testing.T, name, ip string, port uint16, implicit string, blocked bool) {
		t0 := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
		v := event.Allowed
		if blocked {
			v = event.Blocked
		}
		recs := []event.Record{
			{Start: &event.Start{Mode: "block", ImplicitAllowed: []string{implicit}}},
			{DNS: &event.DNS{Time: t0, Name: name, Type: "A", Verdict: event.Allowed, Answers: []string{ip}}},
			{DNS: &event.DNS{Time: t0, Name: "x." + name, Type: "AAAA", Verdict: event.Blocked}},
			{Flow: &event.Flow{Time: t0, IP: ip, Port: port, Protocol: "tcp", Verdict: v}},
		}
		sp := Build(recs, Options{}).SuggestedPolicy
		for _, ep := range sp.AllowedEndpoints {
			if !endpointRE.MatchString(ep) {
				t.Fatalf("suggested %q is outside the endpoint grammar", ep)
			}
			if reason := checkObserved(ep); reason != "" {
				t.Fatalf("suggested %q: %s", ep, reason)
			}
		}
		for _, ep := range sp.ReviewEndpoints() {
			if reason := checkObserved(ep); reason != "" {
				t.Fatalf("review %q: %s", ep, reason)
			}
			if strings.Contains(sp.WithBlock, ep) {
				t.Fatalf("review entry %q in the paste-ready block", ep)
			}
		}
		if len(sp.AllowedEndpoints)+len(sp.Review)+len(sp.ImplicitExcluded)+sp.RejectedCount == 0 {
			t.Fatalf("the flow vanished from the suggestion: %+v", sp)
		}
		checkWithBlock(t, sp.WithBlock)
	})
}
