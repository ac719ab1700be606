//go:build !linux

package filemon

import (
	"context"
	"errors"
	"log/slog"
)

type run struct{}

func start(context.Context, Config, *slog.Logger) (*run, error) {
	return nil, errors.New("file monitoring needs Linux")
}

func (*run) close() error { return nil }
