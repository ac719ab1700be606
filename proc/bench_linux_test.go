package proc

import (
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// crowdForTest starts n idle processes, so that /proc looks like a busy CI
// job's, and stops them at cleanup.
func crowdForTest(b testing.TB, n int) {
	b.Helper()
	cmds := make([]*exec.Cmd, 0, n)
	for range n {
		c := exec.Command("sleep", "3600")
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, c)
	}
	b.Cleanup(func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	})
}

// benchClient starts socat connected over TCP to a server in the internet
// namespace and returns the client's pid and the connection's addresses.
func benchClient(b *testing.B, server netip.AddrPort, clients <-chan netip.AddrPort) (int, netip.AddrPort) {
	cmd, stdin := startClient(b, "socat", "-T", "3600", "STDIO", "TCP:"+server.String())
	io.WriteString(stdin, "x")
	return cmd.Process.Pid, waitAddr(b, clients)
}

// BenchmarkOwner measures one Owner lookup among 200 extra processes: warm
// (the same socket again: inode and process caches hit), a new socket of a
// recently seen process (its fd table is scanned), and cold (all caches
// emptied before every lookup so /proc is scanned and every ancestor read),
// once with the client the newest process (scanned first) and once the oldest.
func BenchmarkOwner(b *testing.B) {
	inet := inetNSForTest(b)
	server, clients := tcpServerForTest(b, inet, "tcp4", "198.18.0.2:0")
	oldPid, oldLocal := benchClient(b, server, clients)
	crowdForTest(b, 200)
	newPid, newLocal := benchClient(b, server, clients)

	const (
		warm      = iota
		newSocket // the inode cache forgets: as if each lookup were a new socket
		cold      // every cache forgets
	)
	run := func(b *testing.B, local, remote netip.AddrPort, pid int, mode int) {
		f := NewFinder(nil)
		defer f.Close()
		f.Owner("tcp", local, remote)
		b.ReportAllocs()
		for b.Loop() {
			switch mode {
			case cold:
				f.resetCaches()
			case newSocket:
				f.inodes.mu.Lock()
				f.inodes.cur, f.inodes.old = nil, nil
				f.inodes.mu.Unlock()
			}
			if p := f.Owner("tcp", local, remote); p.PID != pid {
				b.Fatalf("Owner = %+v, want pid %d", p, pid)
			}
		}
	}
	b.Run("warm", func(b *testing.B) { run(b, oldLocal, server, oldPid, warm) })
	b.Run("recent-pid-new-socket", func(b *testing.B) { run(b, oldLocal, server, oldPid, newSocket) })
	b.Run("cold-client-newest", func(b *testing.B) { run(b, newLocal, server, newPid, cold) })
	b.Run("cold-client-oldest", func(b *testing.B) { run(b, oldLocal, server, oldPid, cold) })
	b.Run("warm-any-remote", func(b *testing.B) { run(b, oldLocal, netip.AddrPort{}, oldPid, warm) })
	b.Run("warm-parallel", func(b *testing.B) {
		f := NewFinder(nil)
		defer f.Close()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if p := f.Owner("tcp", oldLocal, server); p.PID != oldPid {
					b.Errorf("Owner = %+v", p)
					return
				}
			}
		})
	})
}

// BenchmarkSocketLookup compares the socket step alone: our exact
// sock_diag request on a kept socket against vishvananda/netlink's SocketGet
// (a port-filtered dump on a new netlink socket per call).
func BenchmarkSocketLookup(b *testing.B) {
	inet := inetNSForTest(b)
	server, clients := tcpServerForTest(b, inet, "tcp4", "198.18.0.2:0")
	conn, err := net.Dial("tcp4", server.String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	local := waitAddr(b, clients)
	b.Run("exact", func(b *testing.B) {
		c := newDiagConn()
		defer c.close()
		b.ReportAllocs()
		for b.Loop() {
			if s, err := c.exact(unix.IPPROTO_TCP, local, server); err != nil || s.inode == 0 {
				b.Fatal(s, err)
			}
		}
	})
	b.Run("port-dump", func(b *testing.B) {
		c := newDiagConn()
		defer c.close()
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			c.dump(unix.IPPROTO_TCP, unix.AF_INET, local.Port(), func(diagSocket) bool { n++; return true })
			if n != 1 {
				b.Fatal(n)
			}
		}
	})
	b.Run("vishvananda-SocketGet", func(b *testing.B) {
		l := &net.TCPAddr{IP: local.Addr().AsSlice(), Port: int(local.Port())}
		r := &net.TCPAddr{IP: server.Addr().AsSlice(), Port: int(server.Port())}
		b.ReportAllocs()
		for b.Loop() {
			if s, err := netlink.SocketGet(l, r); err != nil || s.INode == 0 {
				b.Fatal(s, err)
			}
		}
	})
}

// BenchmarkInfo measures Info on a process three levels below pid 1.
func BenchmarkInfo(b *testing.B) {
	cmd := exec.Command("sh", "-c", "sleep 3600")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	b.ReportAllocs()
	for b.Loop() {
		if p := Info(cmd.Process.Pid); p.Exe == "" {
			b.Fatal(p, strconv.Itoa(cmd.Process.Pid))
		}
	}
}
