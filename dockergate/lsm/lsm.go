// Package lsm closes the paths to dockerd that do not pass the docker
// gate: a socket bind-mounted (or hard-linked) before the gate took the
// socket's place still reaches dockerd's listening socket. A BPF LSM
// program on unix_stream_connect refuses every connect to that listening
// socket — named by its sockfs inode, so nothing else on the machine is
// touched — except the agent's own, and records each refusal.
//
// It needs a kernel with BPF LSM active ("bpf" in
// /sys/kernel/security/lsm; Ubuntu's kernels since 6.x list it when booted
// with lsm=...,bpf, GitHub's hosted images do not by default) that also
// loads BPF trampoline programs (Firecracker guest kernels refuse them
// with EPERM although bpf is active): Start says why not, Diagnose says
// which of the two it is, and the caller falls back to reporting.
package lsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// Denial is one refused connect.
type Denial struct {
	Inode  uint64 // the guarded socket's
	Cgroup uint64 // the process's cgroup v2 ID
	PID    int    // in the initial PID namespace
	NSPID  int    // in the agent's PID namespace; 0 when in another (a container)
	UID    int
	Comm   string
}

// Guard is the loaded, attached program. Close detaches it.
type Guard struct {
	objs guardObjects
	lnk  link.Link
	rd   *ringbuf.Reader
	done chan struct{}
	once sync.Once
}

// Start guards the listening sockets with these sockfs inodes: only the
// processes allowed (pids in the caller's own PID namespace) may connect.
// Every refusal is passed to onDenial, from one goroutine.
func Start(inodes []uint64, allowed []int, onDenial func(Denial)) (*Guard, error) {
	if len(inodes) == 0 {
		return nil, errors.New("lsm: no socket to guard")
	}
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return nil, fmt.Errorf("lsm: own PID namespace: %w", err)
	}
	g := &Guard{done: make(chan struct{})}
	if err := loadGuardObjects(&g.objs, nil); err != nil {
		return nil, fmt.Errorf("lsm: load: %w", err)
	}
	fail := func(err error) (*Guard, error) { g.objs.Close(); return nil, err }
	cfg := guardConfig{NsDev: st.Dev, NsIno: st.Ino}
	if err := g.objs.Config.Put(uint32(0), cfg); err != nil {
		return fail(fmt.Errorf("lsm: config: %w", err))
	}
	for _, ino := range inodes {
		if err := g.objs.Guarded.Put(ino, uint8(1)); err != nil {
			return fail(fmt.Errorf("lsm: guard inode %d: %w", ino, err))
		}
	}
	for _, pid := range allowed {
		if err := g.objs.Allowed.Put(uint32(pid), uint8(1)); err != nil {
			return fail(fmt.Errorf("lsm: allow pid %d: %w", pid, err))
		}
	}
	rd, err := ringbuf.NewReader(g.objs.Denials)
	if err != nil {
		return fail(fmt.Errorf("lsm: ring buffer: %w", err))
	}
	g.rd = rd
	lnk, err := link.AttachLSM(link.LSMOptions{Program: g.objs.GuardConnect})
	if err != nil {
		rd.Close()
		return fail(fmt.Errorf("lsm: attach to unix_stream_connect (is BPF LSM active? /sys/kernel/security/lsm must list bpf): %w", err))
	}
	g.lnk = lnk
	go g.read(onDenial)
	return g, nil
}

func (g *Guard) read(onDenial func(Denial)) {
	defer close(g.done)
	for {
		rec, err := g.rd.Read()
		if err != nil {
			return // closed
		}
		var d guardDenial
		if err := binary.Read(bytes.NewReader(rec.RawSample), binary.NativeEndian, &d); err != nil {
			continue
		}
		comm := d.Comm[:]
		if i := bytes.IndexByte(comm, 0); i >= 0 {
			comm = comm[:i]
		}
		onDenial(Denial{Inode: d.Ino, Cgroup: d.Cgroup, PID: int(d.Pid), NSPID: int(d.Nspid), UID: int(d.Uid), Comm: string(comm)})
	}
}

// Lost returns how many refusals the ring buffer had no room for.
func (g *Guard) Lost() uint64 {
	var n uint64
	_ = g.objs.Lost.Lookup(uint32(0), &n)
	return n
}

// Close detaches the program (connects are no longer refused) and waits
// for the reader. Safe to call twice.
func (g *Guard) Close() error {
	var err error
	g.once.Do(func() {
		err = errors.Join(g.lnk.Close(), g.rd.Close())
		<-g.done
		err = errors.Join(err, g.objs.Close())
	})
	return err
}

// ActiveLSMs is where the kernel lists its active LSMs (securityfs).
const ActiveLSMs = "/sys/kernel/security/lsm"

// Diagnose says, for the report, why Start failed with err on this
// kernel: BPF LSM not active, or active but the kernel refuses to load
// the program, or that it is active (the error then says the rest).
func Diagnose(err error) string {
	b, rerr := readActiveLSMs()
	if rerr != nil {
		return fmt.Sprintf("cannot read the active LSMs: %v", rerr)
	}
	list := strings.TrimSpace(string(b))
	if !slices.Contains(strings.Split(list, ","), "bpf") {
		return fmt.Sprintf("BPF LSM is not active on this kernel (active LSMs: %s; it needs CONFIG_BPF_LSM and bpf in the lsm= boot parameter)", list)
	}
	if errors.Is(err, unix.EPERM) {
		return fmt.Sprintf("BPF LSM is active (%s) but this kernel refuses to load trampoline-attached BPF programs (LSM, fentry) with EPERM before verifying them: a restriction of the kernel build or its hypervisor", list)
	}
	return fmt.Sprintf("BPF LSM is active (%s)", list)
}

// readActiveLSMs reads ActiveLSMs; where securityfs is not mounted, from
// a securityfs mounted in a mount namespace of one thread's own, so
// nothing changes for anyone else.
func readActiveLSMs() ([]byte, error) {
	b, err := os.ReadFile(ActiveLSMs)
	if !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// Never unlocked: the thread, and its mount namespace, end with
		// this goroutine.
		runtime.LockOSThread()
		var r result
		if r.err = unix.Unshare(unix.CLONE_NEWNS); r.err == nil {
			if r.err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); r.err == nil {
				if r.err = unix.Mount("securityfs", "/sys/kernel/security", "securityfs", 0, ""); r.err == nil {
					r.b, r.err = os.ReadFile(ActiveLSMs)
				}
			}
		}
		if r.err != nil {
			r.err = fmt.Errorf("securityfs is not mounted, and mounting it privately failed: %w", r.err)
		}
		ch <- r
	}()
	r := <-ch
	return r.b, r.err
}

// ListeningInodes returns the sockfs inodes of the listening unix
// sockets bound at path in our network namespace (/proc/net/unix keeps
// the path a socket was bound at, also after a rename).
func ListeningInodes(path string) ([]uint64, error) {
	f, err := os.Open("/proc/net/unix")
	if err != nil {
		return nil, fmt.Errorf("lsm: %w", err)
	}
	defer f.Close()
	return parseNetUnix(f, path)
}

// __SO_ACCEPTCON in /proc/net/unix's Flags: a listening socket.
const acceptCon = 1 << 16

func parseNetUnix(f interface{ Read([]byte) (int, error) }, path string) ([]uint64, error) {
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var out []uint64
	first := true
	for sc.Scan() {
		if first { // header
			first = false
			continue
		}
		// Num RefCount Protocol Flags Type St Inode Path
		fl := strings.Fields(sc.Text())
		if len(fl) < 8 || strings.Join(fl[7:], " ") != path {
			continue
		}
		flags, err := strconv.ParseUint(fl[3], 16, 32)
		if err != nil || flags&acceptCon == 0 {
			continue
		}
		ino, err := strconv.ParseUint(fl[6], 10, 64)
		if err != nil {
			continue
		}
		out = append(out, ino)
	}
	return out, sc.Err()
}
