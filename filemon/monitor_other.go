//go:build !linux

package filemon

import (
	"context"
	"errors"
	"log/slog"

	"github.com/harden-runner/harden-runner/event"
)

type run struct{ base *baseline }

type startOpts struct {
	reported *reportedSet
	onIndex  func(event.Process)
	rebase   *rebaseInput
	procs    *procCache
}

func start(context.Context, Config, *slog.Logger, startOpts) (*run, error) {
	return nil, errors.New("file monitoring needs Linux")
}

func (*run) close(bool, func(string) bool) (event.Stats, error) { return event.Stats{}, nil }

func (*Monitor) rebase() {}

type procCache struct{}

func newProcCache(func(int) event.Process, int) *procCache { return nil }

func waitExit(int, <-chan struct{}) {}

func (*run) counts() event.Stats { return event.Stats{Component: event.ComponentFilemon} }
