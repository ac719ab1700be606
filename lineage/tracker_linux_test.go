package lineage

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/harden-runner/harden-runner/internal/testnet"
	"golang.org/x/sys/unix"
)

// startForTest starts a Tracker for the test, or skips when the kernel
// cannot run it.
func startForTest(t testing.TB) *Tracker {
	t.Helper()
	// ICMPFresh: a loaded machine can take seconds to run a ping.
	return startConfigForTest(t, Config{ICMPFresh: time.Minute})
}

// startConfigForTest is startForTest with cfg.
func startConfigForTest(t testing.TB, cfg Config) *Tracker {
	t.Helper()
	return startPathForTest(t, cfg, false)
}

// startPathForTest is startConfigForTest that can force TCP owners
// through socket-local storage (tcpStorage).
func startPathForTest(t testing.TB, cfg Config, tcpStorage bool) *Tracker {
	t.Helper()
	testnet.Current(t) // in the test's own namespaces, or skip
	// The test hosts live behind the internet side of the link; this
	// namespace is the test's own.
	for _, r := range [][]string{
		{"ip", "route", "replace", "198.18.1.0/24", "via", testnet.DNS4.String()},
		{"ip", "-6", "route", "replace", "2001:db8:1::/64", "via", testnet.DNS6.String()},
	} {
		if out, err := exec.Command(r[0], r[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", r, err, out)
		}
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr.tcpStorage = tcpStorage
	if err := tr.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// helperForTest copies the test binary where the unprivileged user can run it.
func helperForTest(t *testing.T) string {
	t.Helper()
	// Not t.TempDir: its parent is private to root.
	dir, err := os.MkdirTemp("", "lineage-sender")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "sender")
	if err := os.WriteFile(p, self, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFlow waits for a recorded flow to dst with protocol proto.
func waitFlow(t *testing.T, tr *Tracker, proto uint8, dst netip.Addr) (lineageLinFlow, Owner) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for k, o := range tr.flowsToForTest(dst) {
			if k.Proto == proto {
				return k, o
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no flow (proto %d) to %v recorded", proto, dst)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestShortLivedSenders runs a sender of each protocol as the unprivileged
// user, under a shell, in the runner namespace (the host) and in the
// container namespace, lets it exit, and then asks who sent the flow: the
// sender's exe and uid, and the shell as its parent. The sock_diag/proc
// path named none of these (the socket and the process were gone).
func TestShortLivedSenders(t *testing.T) {
	top := testnet.Current(t)
	tr := startForTest(t)
	helper := helperForTest(t)
	type tc struct {
		name  string
		proto uint8
		dst   netip.Addr
		cmd   string // run by sh -c as uid 65534; {dst} is replaced
		exe   string // base name of the sender's executable
	}
	for i, ns := range []string{"", top.Container} {
		n := 10 + 20*i
		h4 := func(k int) netip.Addr { return testnet.Host4(n + k) }
		h6 := func(k int) netip.Addr { return testnet.Host6(n + k) }
		cs := []tc{
			{"udp4 socat -u", 17, h4(1), "echo x | socat -u - UDP4:{dst}:9999", "socat"},
			{"udp6 socat -u", 17, h6(2), "echo x | socat -u - UDP6:[{dst}]:9999", "socat"},
			{"udplite4", 136, h4(3), "LINEAGE_SEND=udplite,{ap} " + helper, "sender"},
			{"udplite6", 136, h6(4), "LINEAGE_SEND=udplite,{ap} " + helper, "sender"},
			{"icmp ping", 1, h4(5), "ping -c1 -W0.2 {dst} >/dev/null; true", "ping"},
			{"icmpv6 ping", 58, h6(6), "ping -6 -c1 -W0.2 {dst} >/dev/null; true", "ping"},
			{"tcp4 go connect", 6, h4(7), "LINEAGE_SEND=tcp,{ap} " + helper, "sender"},
			{"tcp6 go connect", 6, h6(8), "LINEAGE_SEND=tcp,{ap} " + helper, "sender"},
		}
		if ns != "" {
			// The container namespace reaches only IPv4 (198.19.0.2 routed).
			var v4 []tc
			for _, c := range cs {
				if c.dst.Is4() {
					v4 = append(v4, c)
				}
			}
			cs = v4
		}
		for _, c := range cs {
			name := "host/" + c.name
			if ns != "" {
				name = "container/" + c.name
			}
			c.cmd = strings.ReplaceAll(c.cmd, "{dst}", c.dst.String())
			c.cmd = strings.ReplaceAll(c.cmd, "{ap}", netip.AddrPortFrom(c.dst, 9).String())
			t.Run(name, func(t *testing.T) {
				// "|| exit 9; true" keeps the shell as the sender's parent
				// and fails the test if the sender failed.
				script := c.cmd + " || exit 9; true"
				argv := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script}
				if ns != "" {
					argv = append([]string{"nsenter", "--net=/var/run/netns/" + ns}, argv...)
				}
				cmd := exec.Command(argv[0], argv[1:]...)
				cmd.Env = append(os.Environ(), "LINEAGE_SEND=")
				before := monotonic()
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("%s: %v: %s", script, err, out)
				}
				var o Owner
				if c.proto == protoICMP || c.proto == protoICMPv6 {
					var ok bool
					o, ok = tr.FlowOwner(c.proto, netip.AddrPort{}, netip.AddrPortFrom(c.dst, 0), time.Second)
					if !ok || o.At < before {
						t.Fatalf("no ICMP sender to %v since the ping started: %+v %v", c.dst, o, ok)
					}
				} else {
					k, fo := waitFlow(t, tr, c.proto, c.dst)
					o = fo
					src := netip.AddrPortFrom(netip.IPv4Unspecified(), k.Sport)
					dst := netip.AddrPortFrom(c.dst, k.Dport)
					if got, ok := tr.FlowOwner(c.proto, src, dst, 0); !ok || got != o {
						t.Errorf("FlowOwner(%d, %v, %v) = %+v, %v; want %+v", c.proto, src, dst, got, ok, o)
					}
				}
				if o.UID != 65534 {
					t.Errorf("owner uid %d, want 65534", o.UID)
				}
				p, ok := tr.Process(o.PID, o.At, 10*time.Second)
				if !ok {
					t.Fatalf("process %d not in the table", o.PID)
				}
				if filepath.Base(p.Exe) != c.exe {
					t.Errorf("exe %q (cmdline %q), want %s", p.Exe, p.Cmdline, c.exe)
				}
				par, ok := tr.Process(p.PPID, o.At, 10*time.Second)
				if !ok || filepath.Base(par.Exe) != "dash" {
					t.Errorf("parent %d: %+v %v, want dash", p.PPID, par, ok)
				}
			})
		}
	}
}

// TestTCPOwnerEitherPath: a TCP socket made by one process (the test) and
// connected by another (the sender, handed the socket, as uid 65534),
// which then exits, is the sender's, whether the owner is read from the
// current task in sock_ops (kernels from 6.16) or from the socket-local
// storage that connect4/6 wrote (older kernels; forced here). Naming the
// socket's maker would name the wrong process. And the other way round: a
// socket the test connected with TCP_FASTOPEN_CONNECT, whose SYN leaves
// only with the first write, is the test's when the sender makes that
// write (on the current-task path the SYN is sent in the sender). And a
// socket that was such a fast-open one, disconnected and connected again
// by the sender without the option, is the sender's.
func TestTCPOwnerEitherPath(t *testing.T) {
	testnet.Current(t)
	helper := helperForTest(t)
	for i, storage := range []bool{false, true} {
		t.Run(map[bool]string{false: "current", true: "storage"}[storage], func(t *testing.T) {
			tr := startPathForTest(t, Config{}, storage)
			if !storage && !tr.tcpCurrent {
				t.Skip("this kernel's sock_ops programs cannot ask for the current task")
			}
			if storage && tr.tcpCurrent {
				t.Fatal("tcpStorage set, and TCP owners still come from the current task")
			}
			for _, dst := range []netip.Addr{testnet.Host4(90 + 2*i), testnet.Host6(91 + 2*i)} {
				fd, err := unix.Socket(family(dst), unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
				if err != nil {
					t.Fatal(err)
				}
				sendOnFD3(t, helper, "tcpfd", dst, fd)
				_, o := waitFlow(t, tr, unix.IPPROTO_TCP, dst)
				p, ok := tr.Process(o.PID, o.At, 10*time.Second)
				if !ok || filepath.Base(p.Exe) != "sender" || o.UID != 65534 {
					t.Errorf("owner of the flow to %v: %+v, process %+v %v; want the sender, uid 65534 (the test, pid %d, made the socket)",
						dst, o, p, ok, os.Getpid())
				}
			}
			for _, dst := range []netip.Addr{testnet.Host4(94 + 2*i), testnet.Host6(95 + 2*i)} {
				fd := fastOpenConnect(t, dst)
				time.Sleep(50 * time.Millisecond)
				if got := tr.flowsToForTest(dst); len(got) != 0 {
					t.Fatalf("a flow to %v before any write (the connect was not deferred): %v", dst, got)
				}
				sendOnFD3(t, helper, "write3", dst, fd)
				_, o := waitFlow(t, tr, unix.IPPROTO_TCP, dst)
				if o.PID != os.Getpid() || o.UID != 0 {
					t.Errorf("owner of the fast-open flow to %v: %+v; want the test (pid %d, uid 0), which connected it, not the writer",
						dst, o, os.Getpid())
				}
			}
			for _, dst := range []netip.Addr{testnet.Host4(98 + 2*i), testnet.Host6(99 + 2*i)} {
				fd := fastOpenConnect(t, dst)
				// Disconnect (AF_UNSPEC), drop the option, hand it over.
				unspec := unix.RawSockaddrInet6{Family: unix.AF_UNSPEC}
				if _, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&unspec)), unsafe.Sizeof(unspec)); e != 0 {
					t.Fatalf("disconnect: %v", e)
				}
				if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_FASTOPEN_CONNECT, 0); err != nil {
					t.Fatal(err)
				}
				sendOnFD3(t, helper, "tcpfd", dst, fd)
				_, o := waitFlow(t, tr, unix.IPPROTO_TCP, dst)
				if p, ok := tr.Process(o.PID, o.At, 10*time.Second); !ok || filepath.Base(p.Exe) != "sender" || o.UID != 65534 {
					t.Errorf("owner of the reconnected flow to %v: %+v, process %+v %v; want the sender, uid 65534 (the test connected it before, with fast open)",
						dst, o, p, ok)
				}
			}
		})
	}
}

// fastOpenConnect connects a new socket to dst port 9 with
// TCP_FASTOPEN_CONNECT (no cookie needed): nothing is sent until a write.
func fastOpenConnect(t *testing.T, dst netip.Addr) int {
	t.Helper()
	fd, err := unix.Socket(family(dst), unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []int{unix.TCP_FASTOPEN_CONNECT, unix.TCP_FASTOPEN_NO_COOKIE} {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, opt, 1); err != nil {
			t.Fatalf("setsockopt %d: %v", opt, err)
		}
	}
	if err := unix.Connect(fd, sockaddr(netip.AddrPortFrom(dst, 9))); err != nil && err != unix.EINPROGRESS {
		t.Fatalf("deferred connect: %v", err)
	}
	return fd
}

// sendOnFD3 runs the sender in mode as uid 65534 with the socket fd as its
// fd 3, and closes fd.
func sendOnFD3(t *testing.T, helper, mode string, dst netip.Addr, fd int) {
	t.Helper()
	sock := os.NewFile(uintptr(fd), "tcp")
	defer sock.Close()
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", helper)
	cmd.Env = append(os.Environ(), "LINEAGE_SEND="+mode+","+netip.AddrPortFrom(dst, 9).String())
	cmd.ExtraFiles = []*os.File{sock}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sender (%s): %v: %s", mode, err, out)
	}
}

// TestSpawnedAndExited: a process that lives well under a millisecond is
// in the table afterwards with its own image (never its parent's: the
// fork record is superseded by the exec) and its parent.
func TestSpawnedAndExited(t *testing.T) {
	tr := startForTest(t)
	for i := range 50 {
		arg := fmt.Sprintf("marker-%d", i)
		cmd := exec.Command("/usr/bin/true", arg)
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		took := time.Since(start)
		// A deadline, not a delay: under load the reader may lag.
		p, ok := tr.Process(cmd.Process.Pid, 0, 10*time.Second)
		if !ok {
			t.Fatalf("pid %d (lived %v) not in the table (stats %+v)", cmd.Process.Pid, took, tr.Stats())
		}
		if p.Exe != "/usr/bin/true" || p.Cmdline != "/usr/bin/true "+arg || p.PPID != os.Getpid() {
			t.Fatalf("pid %d (lived %v): %+v; want /usr/bin/true %s, parent %d", cmd.Process.Pid, took, p, arg, os.Getpid())
		}
	}
}

// TestMakerNotSibling: a process made with CLONE_PARENT (a sibling of its
// maker, a child of its maker's parent) has its maker as PPID, so a step
// cannot make a process that looks started by the runner; Execs counts
// the programs run since the fork, so a process that exec'd again is told
// from one that runs what its maker chose.
func TestMakerNotSibling(t *testing.T) {
	tr := startForTest(t)
	if _, err := exec.LookPath("perl"); err != nil {
		t.Skip("needs perl for a raw clone(2)")
	}
	// clone(CLONE_PARENT|SIGCHLD) with no new stack is fork(2) but for
	// the parent; the child runs true, the maker prints the child's pid.
	maker := exec.Command("perl", "-e", `my $p = syscall(56, 0x8000|17, 0, 0, 0, 0); if ($p == 0) { exec "/usr/bin/true", "sibling-marker"; exit 1 } print $p;`)
	out, err := maker.Output()
	if err != nil {
		t.Fatalf("perl: %v", err)
	}
	var pid int
	if _, err := fmt.Sscan(string(out), &pid); err != nil || pid <= 0 {
		t.Fatalf("perl printed %q", out)
	}
	// The sibling is the test process's child: reap it.
	var ws unix.WaitStatus
	_, _ = unix.Wait4(pid, &ws, 0, nil)
	p, ok := tr.Process(pid, 0, 10*time.Second)
	if !ok || p.Cmdline != "/usr/bin/true sibling-marker" {
		t.Fatalf("pid %d: %+v, %v (stats %+v)", pid, p, ok, tr.Stats())
	}
	if p.PPID != maker.Process.Pid || !p.Forked || p.Execs != 1 {
		t.Errorf("sibling: PPID %d Forked %v Execs %d; want its maker %d (not %d), true, 1", p.PPID, p.Forked, p.Execs, maker.Process.Pid, os.Getpid())
	}

	twice := exec.Command("sh", "-c", "exec /usr/bin/true twice-marker")
	if err := twice.Run(); err != nil {
		t.Fatal(err)
	}
	p, ok = tr.Process(twice.Process.Pid, 0, 10*time.Second)
	if !ok || p.Cmdline != "/usr/bin/true twice-marker" || p.PPID != os.Getpid() || !p.Forked || p.Execs != 2 {
		t.Errorf("sh exec'ing true: %+v, %v; want its second program, parent %d, Forked, Execs 2", p, ok, os.Getpid())
	}
}

// TestLocalOwnerDNSOnly: LocalOwner (the resolver's lookup by local port
// alone) answers for sockets that sent to port 53 or Config.DNSPort, and
// only for them: the other flows cost no update of that map.
func TestLocalOwnerDNSOnly(t *testing.T) {
	tr := startConfigForTest(t, Config{DNSPort: 5353})
	for _, c := range []struct {
		port uint16
		want bool
	}{{53, true}, {5353, true}, {9999, false}, {443, false}} {
		t.Run(strconv.Itoa(int(c.port)), func(t *testing.T) {
			conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			dst := netip.AddrPortFrom(testnet.Host4(60), c.port)
			if _, err := conn.WriteToUDPAddrPort([]byte("x"), dst); err != nil {
				t.Fatal(err)
			}
			src := netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(conn.LocalAddr().(*net.UDPAddr).Port))
			// The flow itself is recorded whatever the port.
			if o, ok := tr.FlowOwner(unix.IPPROTO_UDP, src, dst, time.Second); !ok || o.PID != os.Getpid() {
				t.Fatalf("FlowOwner = %+v, %v; want our pid %d", o, ok, os.Getpid())
			}
			o, ok := tr.LocalOwner(unix.IPPROTO_UDP, src)
			if ok != c.want || ok && o.PID != os.Getpid() {
				t.Errorf("LocalOwner(udp, %v) to port %d = %+v, %v; want found=%v", src, c.port, o, ok, c.want)
			}
		})
	}
}

// TestSysctlWriter: a sysctl written by a short-lived shell in the test's
// namespace is named with that shell, after it exited; the same name in
// another network namespace is not this one's.
func TestSysctlWriter(t *testing.T) {
	tr := startForTest(t)
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "echo 1 > /proc/sys/net/ipv4/conf/lo/route_localnet; echo 0 > /proc/sys/net/ipv4/conf/lo/route_localnet; echo $$")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	sh, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	o, ok := tr.SysctlWriter(uint32(st.Ino), "net.ipv4.conf.lo.route_localnet")
	if !ok || o.PID != sh || o.UID != 0 {
		t.Fatalf("SysctlWriter = %+v, %v; want the shell, pid %d", o, ok, sh)
	}
	if p, ok := tr.Process(o.PID, o.At, time.Second); !ok || filepath.Base(p.Exe) != "dash" {
		t.Errorf("writer's process %+v, %v; want dash", p, ok)
	}
	if o, ok := tr.SysctlWriter(uint32(st.Ino)+1, "net.ipv4.conf.lo.route_localnet"); ok {
		t.Errorf("another namespace's record: %+v", o)
	}
}

// TestFlowsOutlastTheRing: flow records come without a wake-up, so
// nothing but the tracker's own drain empties their ring when nobody
// looks a flow up. Over two rings' worth of new flows, then the
// last one: still found, and nothing was lost on the way.
func TestFlowsOutlastTheRing(t *testing.T) {
	tr := startForTest(t)
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const n = 150000 // the ring holds 65,536
	var dst netip.AddrPort
	for i := range n {
		dst = netip.AddrPortFrom(testnet.Host4(61), uint16(1+i%60000))
		if i >= 60000 {
			dst = netip.AddrPortFrom(testnet.Host4(62+i/60000), uint16(1+i%60000))
		}
		if _, err := conn.WriteToUDPAddrPort([]byte("x"), dst); err != nil {
			t.Fatal(err)
		}
	}
	src := netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(conn.LocalAddr().(*net.UDPAddr).Port))
	if o, ok := tr.FlowOwner(unix.IPPROTO_UDP, src, dst, 0); !ok || o.PID != os.Getpid() {
		t.Errorf("last of %d flows: FlowOwner = %+v, %v; want our pid %d", n, o, ok, os.Getpid())
	}
	if s := tr.Stats(); s.Lost != 0 {
		t.Errorf("Stats().Lost = %d; want 0", s.Lost)
	}
}

// TestNewestOwnerWins: a flow recorded again by another process (its
// ports reused; an ICMP destination pinged again) is named after the
// newer sender at once, although the table still holds the older record
// and the newer one may still be in the ring.
func TestNewestOwnerWins(t *testing.T) {
	tr := startForTest(t)
	dst := netip.AddrPortFrom(testnet.Host4(90), 9999)
	const sport = 47111
	child := exec.Command("socat", "-u", "-", fmt.Sprintf("UDP4:%s,sourceport=%d", dst, sport))
	child.Stdin = strings.NewReader("x\n")
	if out, err := child.CombinedOutput(); err != nil {
		t.Fatalf("socat: %v: %s", err, out)
	}
	src := netip.AddrPortFrom(netip.IPv4Unspecified(), sport)
	if o, ok := tr.FlowOwner(unix.IPPROTO_UDP, src, dst, time.Second); !ok || o.PID != child.Process.Pid {
		t.Fatalf("first sender: FlowOwner = %+v, %v; want socat, pid %d", o, ok, child.Process.Pid)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{Port: sport})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.WriteToUDPAddrPort([]byte("x"), dst); err != nil {
		t.Fatal(err)
	}
	if o, ok := tr.FlowOwner(unix.IPPROTO_UDP, src, dst, 0); !ok || o.PID != os.Getpid() {
		t.Errorf("same ports, second sender: FlowOwner = %+v, %v; want this test, pid %d", o, ok, os.Getpid())
	}

	ping := netip.AddrPortFrom(testnet.Host4(91), 0)
	p := exec.Command("ping", "-c1", "-W0.2", ping.Addr().String())
	_ = p.Run() // no answer needed: the send is what is recorded
	if o, ok := tr.FlowOwner(unix.IPPROTO_ICMP, netip.AddrPort{}, ping, time.Second); !ok || o.PID != p.Process.Pid {
		t.Fatalf("ping: FlowOwner = %+v, %v; want ping, pid %d", o, ok, p.Process.Pid)
	}
	// This process pings the same address within ICMPFresh and asks at once.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	echo := []byte{8, 0, 0xf7, 0xff, 0, 0, 0, 0} // type 8, code 0, checksum of the rest
	if err := unix.Sendto(fd, echo, 0, &unix.SockaddrInet4{Addr: ping.Addr().As4()}); err != nil {
		t.Fatal(err)
	}
	if o, ok := tr.FlowOwner(unix.IPPROTO_ICMP, netip.AddrPort{}, ping, time.Second); !ok || o.PID != os.Getpid() {
		t.Errorf("pinged again by this test: FlowOwner = %+v, %v; want pid %d, not ping's %d", o, ok, os.Getpid(), p.Process.Pid)
	}
}
