package flowlog

import "github.com/harden-runner/harden-runner/event"

func eventVerdict(s string) event.Verdict { return event.Verdict(s) }

// flowCount is how many flows a record stands for (the reader folds a
// process's repeats).
func flowCount(f *event.Flow) int { return max(f.Count, 1) }
