package flowlog

import "github.com/harden-runner/harden-runner/event"

func eventVerdict(s string) event.Verdict { return event.Verdict(s) }
