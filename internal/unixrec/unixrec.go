// Package unixrec is a listening unix socket for tests that records the
// first line each client sends: which socket a connect reached is then a
// fact the listener saw, not what the client believed.
package unixrec

import (
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Recorder is a listening unix socket and the lines its clients sent.
// Safe for concurrent use.
type Recorder struct {
	Path string
	mu   sync.Mutex
	seen []string
}

// Listen listens at path, accepting until t's cleanup closes it.
func Listen(t testing.TB, path string) *Recorder {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	r := &Recorder{Path: path}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b := make([]byte, 64)
			n, _ := c.Read(b)
			r.mu.Lock()
			r.seen = append(r.seen, strings.TrimSpace(string(b[:n])))
			r.mu.Unlock()
			c.Close()
		}
	}()
	return r
}

// Saw reports whether a client has sent tag.
func (r *Recorder) Saw(tag string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.seen, tag)
}

// Reached waits up to 5 s for a client to have sent tag.
func (r *Recorder) Reached(tag string) bool {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if r.Saw(tag) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
