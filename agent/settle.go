package agent

import (
	"context"
	"os"
	"path/filepath"
	"time"
)

// How waitSettled decides that checkout is done: the workspace has entries
// and neither its top-level listing nor .git/index changed for settleQuiet.
const (
	settlePoll  = 200 * time.Millisecond
	settleQuiet = 2 * time.Second
)

// waitSettled blocks until dir has content that stopped changing, or ctx
// ends. It is how the Action's agent, which starts before actions/checkout,
// takes its file baseline after the sources arrived instead of on an empty
// directory. Changes made in the first settleQuiet after checkout are not
// seen as tampering: they are part of the baseline.
func waitSettled(ctx context.Context, dir string, poll, quiet time.Duration) error {
	var last string
	var since time.Time
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		sig := snapshot(dir)
		now := time.Now()
		switch {
		case sig == "":
			since = time.Time{}
		case sig != last:
			since = now
		case now.Sub(since) >= quiet:
			return nil
		}
		last = sig
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// snapshot summarizes what checkout changes as it runs: the names and
// mtimes of the top-level entries and of .git/index. "" for no content.
func snapshot(dir string) string {
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) == 0 {
		return ""
	}
	var b []byte
	for _, e := range ents {
		b = append(b, e.Name()...)
		if fi, err := e.Info(); err == nil {
			b = fi.ModTime().AppendFormat(b, time.RFC3339Nano)
		}
		b = append(b, 0)
	}
	if fi, err := os.Stat(filepath.Join(dir, ".git", "index")); err == nil {
		b = fi.ModTime().AppendFormat(b, time.RFC3339Nano)
		b = append(b, byte(fi.Size()), byte(fi.Size()>>8), byte(fi.Size()>>16))
	}
	return string(b)
}
