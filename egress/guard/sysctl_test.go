package guard

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/harden-runner/harden-runner/internal/testnet"
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
