package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/egress/firewall"
	"github.com/harden-runner/harden-runner/internal/testnet"
)

// TestRunReportsMarkedTCP: root (a step with sudo) gives its own socket
// the packet mark that exempts the agent's own upstream sockets (SO_MARK)
// and connects to a host the policy does not name. In audit mode the flow
// gets out, as audit mode lets everything out, but it must be in
// report.json with its process: the mark used to hide it from the log. In
// block mode it is refused, never reaching the far end, and reported.
func TestRunReportsMarkedTCP(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		mode, verdict string
		port          int
		reach         bool
	}{{"audit", "audit", 443, true}, {"block", "blocked", 8443, false}} {
		t.Run(tc.mode, func(t *testing.T) {
			dir := filepath.Join(w.tmp, "mark-"+tc.mode)
			// curl's connection goes through the relay, whose own upstream
			// connection carries the mark: it must not be reported twice.
			cmd := w.In(w.Runner, w.bin, "run", "--egress-policy", tc.mode, "--allowed-endpoints", "allowed.test:443",
				"--upstream", "198.18.0.2", "--report-dir", dir, "--disable-file-monitoring", "--", "sh", "-c",
				`HR_GOCLIENT=markdial "$0" "$1"; curl -4 -sk -o /dev/null --max-time 5 https://allowed.test/`,
				w.self, "198.18.1.11:"+strconv.Itoa(tc.port))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("run: %v\n%s", err, out)
			}
			hits := w.HitsTo("tcp", testnet.Host4(11), uint16(tc.port))
			if (len(hits) > 0) != tc.reach {
				t.Errorf("%s mode: the marked connection reached the far end %d times", tc.mode, len(hits))
			}
			rep := readReport(t, dir)
			assertFlow(t, rep, "198.18.1.11", tc.port, tc.verdict, "goclient")
			assertFlow(t, rep, "198.18.1.10", 443, "allowed", "curl")
			for _, e := range rep.Egress {
				if e.IP == "198.18.1.10" && filepath.Base(e.Process.Exe) != "curl" {
					t.Errorf("the relay's own connection is reported as a flow: %+v", e)
				}
			}
		})
	}
}

// markDial ("markdial ADDR") connects to ADDR from a socket carrying the
// agent's mark, writes a line and waits a moment for the far end; it
// succeeds whether or not the connection was refused (the far end's log
// and the report say what happened).
func markDial(args []string) int {
	d := net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, firewall.DefaultMark)
		}); err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "markdial:", err)
		return 0
	}
	defer c.Close()
	fmt.Fprintln(c, "marked")
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, _ = c.Read(make([]byte, 1))
	return 0
}
