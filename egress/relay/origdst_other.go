//go:build !linux

package relay

import (
	"errors"
	"net"
	"net/netip"
)

func originalDst(*net.TCPConn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("relay: original destination needs Linux")
}

func markControl(uint32) func(string, string, syscallRawConn) error { return nil }
