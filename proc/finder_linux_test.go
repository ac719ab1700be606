package proc

import (
	"github.com/harden-runner/harden-runner/internal/testnet"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tcpServerForTest listens on addr in namespace ns, accepts connections
// and holds them open (never answering), and sends each client's address on
// the returned channel.
func tcpServerForTest(t testing.TB, ns, network, addr string) (netip.AddrPort, <-chan netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	if err := testnet.InNamespace(ns, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, ns, err)
	}
	ch := make(chan netip.AddrPort, 64)
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			select {
			case ch <- c.RemoteAddr().(*net.TCPAddr).AddrPort():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr).AddrPort(), ch
}

// udpServerForTest receives datagrams on addr in namespace ns and sends
// each sender's address on the returned channel.
func udpServerForTest(t testing.TB, ns, network, addr string) (netip.AddrPort, <-chan netip.AddrPort) {
	t.Helper()
	var pc *net.UDPConn
	if err := testnet.InNamespace(ns, func() error {
		c, err := net.ListenPacket(network, addr)
		if err == nil {
			pc = c.(*net.UDPConn)
		}
		return err
	}); err != nil {
		t.Fatalf("listen %s %s in %s: %v", network, addr, ns, err)
	}
	ch := make(chan netip.AddrPort, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			_, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			select {
			case ch <- from:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc.LocalAddr().(*net.UDPAddr).AddrPort(), ch
}

// startClient starts a real client program and stops it at cleanup. Its
// standard input (returned) stays open until then, so socat clients stay
// connected.
func startClient(t testing.TB, args ...string) (*exec.Cmd, io.Writer) {
	t.Helper()
	if _, err := exec.LookPath(args[0]); err != nil {
		t.Skipf("client %s not installed", args[0])
	}
	cmd := exec.Command(args[0], args[1:]...)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdin = pr
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	pr.Close()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		pw.Close()
		if t.Failed() && out.Len() > 0 {
			t.Logf("%s stderr: %s", args[0], out.String())
		}
	})
	return cmd, pw
}

// exeOf returns the absolute, symlink-free path of a program in PATH.
func exeOf(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed", name)
	}
	p, err = filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitAddr(t testing.TB, ch <-chan netip.AddrPort) netip.AddrPort {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("the client never reached the test server")
		return netip.AddrPort{}
	}
}

var unpriv = []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}

func TestOwner(t *testing.T) {
	inet := inetNSForTest(t)
	tcp4, tcp4Clients := tcpServerForTest(t, inet, "tcp4", "198.18.0.2:0")
	tcp6, tcp6Clients := tcpServerForTest(t, inet, "tcp6", "[2001:db8::2]:0")
	udp4, udp4Clients := udpServerForTest(t, inet, "udp4", "198.18.0.2:0")
	udp6, udp6Clients := udpServerForTest(t, inet, "udp6", "[2001:db8::2]:0")
	p4, p6 := tcp4.Port(), tcp6.Port()
	u4, u6 := udp4.Port(), udp6.Port()
	itoa := func(p uint16) string { return strconv.Itoa(int(p)) }

	f := NewFinder(nil)
	t.Cleanup(func() { f.Close() })

	tests := []struct {
		name       string
		proto      string
		args       []string
		clients    <-chan netip.AddrPort
		server     netip.AddrPort
		anyRemote  bool // look up with a zero remote, as the resolver does
		exe        string
		uid        int
		parentExe  string // the first ancestor's exe, if checked
		mappedSock bool
	}{
		{name: "curl tcp4", proto: "tcp", args: []string{"curl", "-s", "-m", "30", "http://198.18.0.2:" + itoa(p4) + "/"},
			clients: tcp4Clients, server: tcp4, exe: "curl"},
		{name: "curl tcp6 unprivileged", proto: "tcp",
			args:    append(append([]string{}, unpriv...), "curl", "-s", "-m", "30", "http://[2001:db8::2]:"+itoa(p6)+"/"),
			clients: tcp6Clients, server: tcp6, exe: "curl", uid: 65534},
		{name: "socat tcp ipv4-mapped AF_INET6 socket", proto: "tcp",
			args:    []string{"socat", "-T", "30", "STDIO", "TCP6:[::ffff:198.18.0.2]:" + itoa(p4)},
			clients: tcp4Clients, server: tcp4, exe: "socat"},
		{name: "curl tcp4 any remote", proto: "tcp", args: []string{"curl", "-s", "-m", "30", "http://198.18.0.2:" + itoa(p4) + "/"},
			clients: tcp4Clients, server: tcp4, exe: "curl", anyRemote: true},
		{name: "socat udp4 connected", proto: "udp",
			args:    []string{"sh", "-c", "echo hello | socat -T 30 - UDP:198.18.0.2:" + itoa(u4) + "; sleep 30"},
			clients: udp4Clients, server: udp4, exe: "socat", parentExe: "sh"},
		{name: "socat udp4 connected any remote (redirected DNS)", proto: "udp",
			args:    []string{"socat", "-T", "30", "STDIO", "UDP:198.18.0.2:" + itoa(u4)},
			clients: udp4Clients, server: udp4, exe: "socat", anyRemote: true},
		{name: "socat udp4 unconnected sendto", proto: "udp",
			args:    []string{"socat", "-T", "30", "STDIO", "UDP-SENDTO:198.18.0.2:" + itoa(u4)},
			clients: udp4Clients, server: udp4, exe: "socat"},
		{name: "socat udp ipv4-mapped AF_INET6 socket, any remote", proto: "udp",
			args:    []string{"socat", "-T", "30", "STDIO", "UDP6:[::ffff:198.18.0.2]:" + itoa(u4)},
			clients: udp4Clients, server: udp4, exe: "socat", anyRemote: true},
		{name: "dig udp6 unprivileged", proto: "udp",
			args:    append(append([]string{}, unpriv...), "dig", "@2001:db8::2", "-p", itoa(u6), "+tries=1", "+timeout=30", "example.test"),
			clients: udp6Clients, server: udp6, exe: "dig", uid: 65534},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := exeOf(t, tc.exe)
			// Drain stale client addresses from an earlier case.
			for len(tc.clients) > 0 {
				<-tc.clients
			}
			cmd, stdin := startClient(t, tc.args...)
			if tc.args[0] == "socat" && tc.proto == "udp" {
				// A UDP client is seen only once it sends a datagram.
				io.WriteString(stdin, "hello\n")
			}
			local := waitAddr(t, tc.clients)
			remote := tc.server
			if tc.anyRemote {
				remote = netip.AddrPort{}
			}
			got := f.Owner(tc.proto, local, remote)
			if got.Unknown != "" || got.PID == 0 {
				t.Fatalf("Owner(%s, %v, %v) = %+v, want the client", tc.proto, local, remote, got)
			}
			if got.Exe != want {
				t.Errorf("Exe = %q, want %q (pid %d, cmdline %q)", got.Exe, want, got.PID, got.Cmdline)
			}
			if tc.args[0] != "sh" && got.PID != cmd.Process.Pid {
				t.Errorf("PID = %d, want the client's %d", got.PID, cmd.Process.Pid)
			}
			if got.UID != tc.uid {
				t.Errorf("UID = %d, want %d", got.UID, tc.uid)
			}
			if len(got.Parents) == 0 {
				t.Fatalf("no parents: %+v", got)
			}
			if tc.args[0] == "sh" {
				if got.Parents[0].PID != cmd.Process.Pid || got.Parents[0].Exe != exeOf(t, "sh") {
					t.Errorf("Parents[0] = %+v, want sh %d", got.Parents[0], cmd.Process.Pid)
				}
			} else if got.Parents[0].PID != os.Getpid() {
				t.Errorf("Parents[0] = %+v, want the test %d", got.Parents[0], os.Getpid())
			}
		})
	}

	t.Run("no such socket", func(t *testing.T) {
		got := f.Owner("tcp", netip.MustParseAddrPort("198.18.0.1:9"), netip.MustParseAddrPort("198.18.0.2:9"))
		if got.PID != 0 || got.Unknown != "no socket" {
			t.Errorf("Owner = %+v, want Unknown=no socket", got)
		}
	})
	t.Run("bad input", func(t *testing.T) {
		for _, c := range []struct{ proto, local string }{{"icmp", "198.18.0.1:1"}, {"tcp", ""}, {"udp", "198.18.0.1:0"}} {
			var l netip.AddrPort
			if c.local != "" {
				l = netip.MustParseAddrPort(c.local)
			}
			if got := f.Owner(c.proto, l, netip.AddrPort{}); got.PID != 0 || got.Unknown == "" {
				t.Errorf("Owner(%s, %v) = %+v, want unknown", c.proto, l, got)
			}
		}
	})
	lookups, failed := f.Stats()
	if lookups != uint64(len(tests))+4 || failed < 4 {
		t.Errorf("Stats = %d lookups, %d failed; want %d, >=4", lookups, failed, len(tests)+4)
	}
}

func TestRecentList(t *testing.T) {
	f := NewFinder(nil)
	for _, pid := range []int32{1, 2, 3, 2} {
		f.remember(pid)
	}
	if got := f.recent[:f.nrecent]; len(got) != 3 || got[0] != 2 || got[1] != 3 || got[2] != 1 {
		t.Errorf("recent = %v, want [2 3 1]", got)
	}
	for i := range int32(recentCap + 5) {
		f.remember(100 + i)
	}
	if f.nrecent != recentCap || f.recent[0] != 100+recentCap+4 {
		t.Errorf("recent = %v, want %d newest first", f.recent[:f.nrecent], recentCap)
	}
	f.forget(100 + recentCap + 4)
	f.forget(12345)
	if f.nrecent != recentCap-1 || f.recent[0] != 100+recentCap+3 {
		t.Errorf("after forget: %v", f.recent[:f.nrecent])
	}
}

func TestParseSocketLink(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"socket:[12345]", 12345, true},
		{"socket:[4294967295]", 4294967295, true},
		{"socket:[4294967296]", 0, false},
		{"socket:[]", 0, false},
		{"socket:[12a]", 0, false},
		{"pipe:[123]", 0, false},
		{"/dev/null", 0, false},
		{"socket:[123", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseSocketLink([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseSocketLink(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
