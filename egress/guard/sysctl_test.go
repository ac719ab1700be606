package guard

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/testnet"
	"github.com/harden-runner/harden-runner/lineage/lineagetest"
	"github.com/harden-runner/harden-runner/proc"
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
