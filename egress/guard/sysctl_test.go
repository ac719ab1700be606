package guard

import (
	"context"
	"encoding/binary"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/testnet"
	"github.com/harden-runner/harden-runner/lineage/lineagetest"
	"github.com/harden-runner/harden-runner/proc"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TestSysctlsSetBack: root turns route_localnet on in a test namespace;
// it is set back within a few polls and reported. The machine's own
// namespace is never read or written.
func TestSysctlsSetBack(t *testing.T) {
	testnet.Skip(t)
	n := testnet.New(t)
	rec := &records{}
	var s *Sysctls
	err := testnet.InNamespace(n.Runner, func() (err error) {
		s, err = WatchSysctls(context.Background(), SysctlsConfig{Names: []string{"net/ipv4/conf/*/route_localnet"}, Emit: rec.emit})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.files) < 3 { // all, default, lo, eth0
		t.Fatalf("watching %d sysctls, want all, default and each interface", len(s.files))
	}
	if out, err := n.In(n.Runner, "sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v %s", err, out)
	}
	deadline := time.Now().Add(time.Second)
	for s.Changes() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var got string
	for time.Now().Before(deadline) {
		out, err := n.In(n.Runner, "sysctl", "-n", "net.ipv4.conf.eth0.route_localnet").Output()
		if got = strings.TrimSpace(string(out)); err == nil && got == "0" {
			break
		}
	}
	if got != "0" {
		t.Errorf("route_localnet is %q after the guard, want 0", got)
	}
	notes := rec.notes()
	if len(notes) != 1 || !notes[0].Tamper || !strings.Contains(notes[0].Message, "net.ipv4.conf.eth0.route_localnet changed from 0 to 1") {
		t.Errorf("want one error naming the sysctl: %+v", notes)
	}
}

// TestSysctlsNameTheWriter: with the kernel's records, the tamper note
// names the process that wrote the sysctl (before: "sysctl writes name no
// process"), even though it exited long before the guard looked.
func TestSysctlsNameTheWriter(t *testing.T) {
	testnet.Skip(t)
	n := testnet.New(t)
	finder := proc.NewFinder(nil).WithLineage(lineagetest.Start(t))
	rec := &records{}
	var s *Sysctls
	err := testnet.InNamespace(n.Runner, func() (err error) {
		s, err = WatchSysctls(context.Background(), SysctlsConfig{Names: []string{"net/ipv4/conf/*/route_localnet"},
			Emit: rec.emit, Writer: finder.SysctlWriter})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if out, err := n.In(n.Runner, "sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1").CombinedOutput(); err != nil {
		t.Fatalf("sysctl: %v %s", err, out)
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.Changes() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	notes := rec.notes()
	if len(notes) != 1 || notes[0].Process == nil || filepath.Base(notes[0].Process.Exe) != "sysctl" ||
		!strings.Contains(notes[0].Message, "by pid") {
		t.Fatalf("want one tamper note naming sysctl(8) as the writer: %+v", notes)
	}
}

// TestSysctlsSetBackNetlinkChange: route_localnet can also be set through
// rtnetlink (RTM_SETLINK, IFLA_AF_SPEC/AF_INET/IFLA_INET_CONF), which is
// no sysctl write: no BPF sysctl hook sees it, and only the poll can. The
// guard must still set it back and report it.
func TestSysctlsSetBackNetlinkChange(t *testing.T) {
	testnet.Skip(t)
	n := testnet.New(t)
	rec := &records{}
	var s *Sysctls
	var ifindex int
	err := testnet.InNamespace(n.Runner, func() (err error) {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		s, err = WatchSysctls(context.Background(), SysctlsConfig{Names: []string{"net/ipv4/conf/*/route_localnet"}, Emit: rec.emit})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The attack, from the runner's namespace.
	err = testnet.InNamespace(n.Runner, func() error {
		c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		const devconfRouteLocalnet = 26 // IPV4_DEVCONF_ROUTE_LOCALNET
		ae := netlink.NewAttributeEncoder()
		ae.Nested(unix.IFLA_AF_SPEC, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(unix.AF_INET, func(ae *netlink.AttributeEncoder) error {
				ae.Nested(unix.IFLA_INET_CONF, func(ae *netlink.AttributeEncoder) error {
					ae.Uint32(devconfRouteLocalnet, 1)
					return nil
				})
				return nil
			})
			return nil
		})
		attrs, err := ae.Encode()
		if err != nil {
			return err
		}
		// struct ifinfomsg: family, pad, type, index, flags, change.
		ifi := make([]byte, 16)
		binary.NativeEndian.PutUint32(ifi[4:], uint32(ifindex))
		_, err = c.Execute(netlink.Message{Header: netlink.Header{Type: unix.RTM_SETLINK,
			Flags: netlink.Request | netlink.Acknowledge}, Data: append(ifi, attrs...)})
		return err
	})
	if err != nil {
		t.Fatalf("RTM_SETLINK route_localnet=1: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.Changes() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	out, _ := n.In(n.Runner, "sysctl", "-n", "net.ipv4.conf.eth0.route_localnet").Output()
	if got := strings.TrimSpace(string(out)); got != "0" {
		t.Errorf("route_localnet is %q after the guard, want 0", got)
	}
	notes := rec.notes()
	if len(notes) != 1 || !strings.Contains(notes[0].Message, "net.ipv4.conf.eth0.route_localnet changed from 0 to 1") {
		t.Errorf("want one tamper note for the netlink change: %+v", notes)
	}
}
