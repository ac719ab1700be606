//go:build !linux

package flowlog

import (
	"context"
	"errors"

	"github.com/harden-runner/harden-runner/event"
)

// Reader reads an NFLOG group; only Linux has one.
type Reader struct{ cfg Config }

func newReader(cfg Config) *Reader { return &Reader{cfg: cfg} }

// Start fails: NFLOG is Linux only.
func (r *Reader) Start(ctx context.Context) error {
	return errors.New("flowlog: NFLOG needs Linux")
}

// Stats returns zero counts: nothing is read here.
func (r *Reader) Stats() event.Stats { return event.Stats{Component: event.ComponentFlowlog} }

// Close does nothing here.
func (r *Reader) Close() error { return nil }

// Flush does nothing here.
func (r *Reader) Flush() {}

// AddLost counts n lost flows; nothing reads them on this system.
func (r *Reader) AddLost(n uint64) {}
