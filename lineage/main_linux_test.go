package lineage

import (
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/testnet"
	"golang.org/x/sys/unix"
)

// The system tests run in the runner namespace that testnet.Reexec makes
// (with a "container" namespace routed through it): the senders' packets
// go only to test addresses there. The BPF programs attach machine-wide but
// only observe.
func TestMain(m *testing.M) {
	if sendHelper() {
		return
	}
	if code, done := testnet.Reexec("lineage", true); done {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// sendHelper is the test binary run as a short-lived sender: with
// LINEAGE_SEND=proto,addr:port it sends one datagram (or connects) and exits;
// tcpfd connects the TCP socket it was given as fd 3 (made by another
// process) and exits without waiting for an answer; write3 writes to fd 3
// (a socket another process connected) and exits.
func sendHelper() bool {
	spec := os.Getenv("LINEAGE_SEND")
	if spec == "" {
		return false
	}
	proto, addr, _ := strings.Cut(spec, ",")
	dst := netip.MustParseAddrPort(addr)
	switch proto {
	case "tcp":
		c, err := net.DialTimeout("tcp", dst.String(), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
	case "tcpfd":
		if err := unix.Connect(3, sockaddr(dst)); err != nil && err != unix.EINPROGRESS {
			os.Exit(5)
		}
	case "write3":
		if _, err := unix.Write(3, []byte("x")); err != nil && err != unix.EAGAIN {
			os.Exit(6)
		}
	case "udplite":
		fd, err := unix.Socket(family(dst.Addr()), unix.SOCK_DGRAM, unix.IPPROTO_UDPLITE)
		if err != nil {
			os.Exit(2)
		}
		if err := unix.Sendto(fd, []byte("x"), 0, sockaddr(dst)); err != nil {
			os.Exit(3)
		}
		unix.Close(fd)
	default:
		os.Exit(4)
	}
	os.Exit(0)
	return true
}

// family is a's address family.
func family(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// sockaddr is ap as a socket address.
func sockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}
