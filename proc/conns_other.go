//go:build !linux

package proc

import (
	"errors"
	"net/netip"
)

// Conn is one TCP connection of this machine: its local and remote address.
type Conn struct {
	Local, Remote netip.AddrPort
}

// TCPConns lists TCP connections; only Linux has sock_diag.
func TCPConns() ([]Conn, error) { return nil, errors.New("proc: TCP connections: not supported here") }
