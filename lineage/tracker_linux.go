package lineage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/harden-runner/harden-runner/egress/packet"
	"golang.org/x/sys/unix"
)

// Tracker loads the BPF programs, keeps the process table from their
// events and answers who owned a flow. Its methods are safe for concurrent
// use. A Tracker that failed to Start answers nothing (every lookup misses).
type Tracker struct {
	cfg   Config
	log   *slog.Logger
	table *table

	mu     sync.Mutex
	objs   *lineageObjects
	sysctl *sysctlwObjects // nil when the kernel refused it
	links  []link.Link
	rd     *ringbuf.Reader
	done   chan struct{}

	// flowMu serializes drains of flowRd (the kernel's flow ring) into
	// flows; a drain never blocks (flowRd's deadline is in the past).
	flowMu  sync.Mutex
	flowRd  *ringbuf.Reader
	flowRec ringbuf.Record
	flows   *flowTable
	// accRd is the kernel's accept ring, drained with flowRd (under
	// flowMu); what a drain read goes to onAccept once flowMu is
	// released (the function may look flows up). handing is read-locked
	// from a drain's read to the end of its onAccept call, so that Drain
	// can wait for drains that other goroutines are in.
	accRd    *ringbuf.Reader
	accRec   ringbuf.Record
	onAccept atomic.Pointer[func([]packet.Accept)]
	handing  sync.RWMutex
	started  bool
	closed   bool

	// events counts the records read, unreadable those that were not
	// understood, handled both (after the table changed).
	events, unreadable, handled atomic.Uint64
	// currentAt is a monotonic time (ns) by which the table held every
	// event the kernel had submitted: a lookup as of an earlier time
	// needs no new check (a map read, a system call, per flow otherwise).
	currentAt atomic.Uint64
	// running is set once Start attached everything and cleared by
	// Close: asked once per lookup, so not behind mu.
	running atomic.Bool
	// tcpStorage makes TCP owners go through socket-local storage even
	// where sock_ops can name the current task (tests of that path, which
	// kernels before 6.16 take).
	tcpStorage bool
	// tcpCurrent is whether Start had TCP owners read from the current
	// task (set before running, read-only after).
	tcpCurrent bool
}

// boolByte is b as the BPF object's __u8 flags take it.
func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// New returns a Tracker for cfg. It does no I/O.
func New(cfg Config) (*Tracker, error) {
	if cfg.Keep < 0 {
		return nil, fmt.Errorf("lineage: negative Keep %v", cfg.Keep)
	}
	if cfg.Keep == 0 {
		cfg.Keep = 30 * time.Second
	}
	if cfg.ICMPFresh <= 0 {
		cfg.ICMPFresh = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Tracker{cfg: cfg, log: cfg.Log, table: newTable(), flows: newFlowTable(maxFlows)}, nil
}

// Start checks the kernel, loads and attaches the programs, reads the
// processes already running from /proc and reads events until ctx ends or
// Close. On error nothing stays attached and the error wraps
// ErrUnsupported (the caller falls back to /proc) or says what failed.
func (t *Tracker) Start(ctx context.Context) (err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started || t.closed {
		return errors.New("lineage: already started")
	}
	t.started = true
	if v := os.Getenv(DisableEnv); v != "" {
		return fmt.Errorf("%w: %s=%s", ErrUnsupported, DisableEnv, v)
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return fmt.Errorf("%w: no kernel BTF: %v", ErrUnsupported, err)
	}
	cg := t.cfg.Cgroup
	if cg == "" {
		var release func()
		if cg, release, err = cgroup2Root(); err != nil {
			return fmt.Errorf("%w: %v", ErrUnsupported, err)
		}
		defer release() // the links hold the cgroup once attached
	}
	defer func() {
		if err != nil {
			t.detach()
		}
	}()
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("%w: memlock: %v", ErrUnsupported, err)
	}
	spec, err := loadLineage()
	if err != nil {
		return fmt.Errorf("lineage: read the BPF object: %w", err)
	}
	if err := spec.Variables["dns_port"].Set(t.cfg.DNSPort); err != nil {
		return fmt.Errorf("lineage: set the DNS port: %w", err)
	}
	if err := spec.Variables["accept_mark"].Set(t.cfg.AcceptMark); err != nil {
		return fmt.Errorf("lineage: set the accept mark: %w", err)
	}
	// One decoded copy of the kernel's BTF for both objects: decoding it
	// again for the sysctl program was 18 of the agent's 50 ms in Start.
	opts := &ebpf.CollectionOptions{Cache: btf.NewCache()}
	objs, err := t.load(spec, opts)
	if err != nil {
		return err
	}
	t.objs = objs
	p := objs.lineagePrograms
	for _, tr := range []*ebpf.Program{p.OnExec, p.OnFork, p.OnExit, p.OnSend, p.OnFib4, p.OnFib6} {
		l, err := link.AttachTracing(link.TracingOptions{Program: tr})
		if err != nil {
			return fmt.Errorf("%w: attach %s: %v", ErrUnsupported, tr, err)
		}
		t.links = append(t.links, l)
	}
	for _, c := range []struct {
		prog *ebpf.Program
		at   ebpf.AttachType
	}{
		{p.OnSockCreate, ebpf.AttachCGroupInetSockCreate},
		{p.OnConnect4, ebpf.AttachCGroupInet4Connect},
		{p.OnConnect6, ebpf.AttachCGroupInet6Connect},
		{p.OnSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{p.OnSendmsg6, ebpf.AttachCGroupUDP6Sendmsg},
		{p.OnSockops, ebpf.AttachCGroupSockOps},
		{p.OnEgress, ebpf.AttachCGroupInetEgress},
	} {
		if c.prog == p.OnEgress && t.cfg.AcceptMark == 0 {
			continue // it would run on every packet to do nothing
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: c.at, Program: c.prog})
		if err != nil && c.prog == p.OnEgress {
			// The firewall then logs allowed flows itself (AcceptMark 0).
			t.log.Info("lineage: no cgroup egress program; allowed flows go through NFLOG", "err", err)
			t.cfg.AcceptMark = 0
			continue
		}
		if err != nil {
			return fmt.Errorf("%w: attach %v to %s: %v", ErrUnsupported, c.at, cg, err)
		}
		t.links = append(t.links, l)
	}
	t.startSysctl(cg, opts)
	if t.rd, err = ringbuf.NewReader(objs.Events); err != nil {
		return fmt.Errorf("lineage: ring buffer: %w", err)
	}
	flowRd, err := ringbuf.NewReader(objs.Flowring)
	if err != nil {
		return fmt.Errorf("lineage: flow ring buffer: %w", err)
	}
	flowRd.SetDeadline(time.Unix(1, 0)) // reads return what is there, never wait
	accRd, err := ringbuf.NewReader(objs.Acceptring)
	if err != nil {
		flowRd.Close()
		return fmt.Errorf("lineage: accept ring buffer: %w", err)
	}
	accRd.SetDeadline(time.Unix(1, 0))
	t.flowMu.Lock()
	t.flowRd, t.accRd = flowRd, accRd
	t.flowMu.Unlock()
	// Attached first, seeded second: a process started in between is in
	// both, and the event wins (seed adds only unknown pids).
	t.seed()
	t.done = make(chan struct{})
	go t.read()
	go t.expire(ctx)
	t.running.Store(true)
	return nil
}

// load loads the lineage object, TCP owners from the current task where
// the kernel lets sock_ops ask for it (see tcp_current in lineage.c) and
// t.tcpStorage does not forbid it; if the verifier still refuses that, once
// more from socket-local storage. It sets t.tcpCurrent. t.mu held.
func (t *Tracker) load(spec *ebpf.CollectionSpec, opts *ebpf.CollectionOptions) (*lineageObjects, error) {
	current := !t.tcpStorage
	for _, fn := range []asm.BuiltinFunc{asm.FnGetCurrentPidTgid, asm.FnGetCurrentUidGid, asm.FnGetCurrentCgroupId} {
		current = current && features.HaveProgramHelper(ebpf.SockOps, fn) == nil
	}
	for {
		if err := spec.Variables["tcp_current"].Set(boolByte(current)); err != nil {
			return nil, fmt.Errorf("lineage: set tcp_current: %w", err)
		}
		objs := &lineageObjects{}
		err := spec.LoadAndAssign(objs, opts)
		if err == nil {
			t.tcpCurrent = current
			t.log.Debug("lineage: TCP owners", "from_current_task", current)
			return objs, nil
		}
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			t.log.Debug("lineage: verifier", "tcp_current", current, "log", fmt.Sprintf("%+v", ve))
			if current {
				current = false // a helper the probes did not cover
				continue
			}
		}
		return nil, fmt.Errorf("%w: load: %v", ErrUnsupported, err)
	}
}

// startSysctl loads and attaches the sysctl writers' program, its own
// object: a kernel that refuses it loses only SysctlWriter. t.mu held.
func (t *Tracker) startSysctl(cg string, opts *ebpf.CollectionOptions) {
	objs := &sysctlwObjects{}
	if err := loadSysctlwObjects(objs, opts); err != nil {
		t.log.Info("lineage: sysctl writers are not recorded", "err", err)
		return
	}
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: ebpf.AttachCGroupSysctl, Program: objs.OnSysctl})
	if err != nil {
		t.log.Info("lineage: sysctl writers are not recorded", "err", err)
		objs.Close()
		return
	}
	t.links = append(t.links, l)
	t.sysctl = objs
}

// SysctlWriter returns the process that last wrote the sysctl name (as
// sysctl(8) spells it, "net.ipv4.conf.all.route_localnet") in the network
// namespace whose inode number is netns, if the kernel recorded it.
func (t *Tracker) SysctlWriter(netns uint32, name string) (Owner, bool) {
	t.mu.Lock()
	objs := t.sysctl
	t.mu.Unlock()
	if objs == nil {
		return Owner{}, false
	}
	var k sysctlwLinSysctl
	k.Netns = netns
	for i, c := range []byte(strings.ReplaceAll(name, ".", "/")) {
		if i == len(k.Name)-1 {
			break // cut as the kernel cut it
		}
		k.Name[i] = int8(c)
	}
	var o sysctlwLinOwner
	if err := objs.SysctlWriters.Lookup(&k, &o); err != nil {
		return Owner{}, false
	}
	return Owner{PID: int(o.Tgid), TID: int(o.Pid), UID: int(o.Uid), Cgroup: o.Cgroup, At: o.Ktime}, true
}

// cgroup2Root finds the cgroup v2 hierarchy: its mount in our mount
// namespace, else in pid 1's, reached through /proc/1/root (`ip netns
// exec` mounts a new /sys that hides the cgroup mounts), else (pid 1's
// root not readable, as in a container) a private mount of cgroup2 on a
// thread of its own mount namespace, named by its open directory
// (/proc/self/fd/N, which resolves in any mount namespace). release
// closes that directory; call it after attaching.
func cgroup2Root() (dir string, release func(), err error) {
	nop := func() {}
	if dir, err := cgroup2Mount("/proc/self/mountinfo"); err == nil {
		return dir, nop, nil
	}
	if d, err := cgroup2Mount("/proc/1/mountinfo"); err == nil {
		if _, serr := os.Stat("/proc/1/root" + d); serr == nil {
			return "/proc/1/root" + d, nop, nil
		}
	}
	f, err := cgroup2Private()
	if err != nil {
		return "", nil, fmt.Errorf("no cgroup v2 mount reachable: %w", err)
	}
	return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())), func() { f.Close() }, nil
}

// cgroup2Private mounts cgroup2 on /sys/fs/cgroup in a private mount
// namespace (onPrivateMount) and returns the open root directory.
func cgroup2Private() (*os.File, error) {
	var f *os.File
	err := onPrivateMount("cgroup2", "/sys/fs/cgroup", func() (err error) {
		f, err = os.Open("/sys/fs/cgroup")
		return err
	})
	return f, err
}

// onPrivateMount mounts fstype on target in a mount namespace of one
// locked thread (nobody else sees the mount; the thread and its namespace
// end with the goroutine) and runs fn there.
func onPrivateMount(fstype, target string, fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with its namespace
		err := unix.Unshare(unix.CLONE_NEWNS)
		if err == nil {
			err = unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
		}
		if err == nil {
			err = unix.Mount(fstype, target, fstype, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		}
		if err == nil {
			err = fn()
		}
		if err != nil {
			err = fmt.Errorf("mount %s privately: %w", fstype, err)
		}
		ch <- err
	}()
	return <-ch
}

func cgroup2Mount(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// "... mountpoint opts ... - fstype source superopts"
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if fs := strings.Fields(pre); len(fs) >= 5 && fs[3] == "/" {
			return fs[4], nil
		}
	}
	return "", errors.New("no cgroup v2 mount")
}

// read turns ring-buffer records into table changes until Close.
func (t *Tracker) read() {
	defer close(t.done)
	var rec ringbuf.Record
	for {
		if err := t.rd.ReadInto(&rec); err != nil {
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			t.unreadable.Add(1)
			continue
		}
		t.handle(rec.RawSample)
		t.handled.Add(1)
		t.table.touch() // wakes Process waiting for the table to be current
	}
}

var taskSize = int(unsafe.Sizeof(lineageLinTask{}))

// execHead is the part of an exec record before its arguments.
var execHead = int(unsafe.Offsetof(lineageLinExec{}.Args))

func (t *Tracker) handle(b []byte) {
	if len(b) < taskSize {
		t.unreadable.Add(1)
		return
	}
	var task lineageLinTask
	if _, err := binary.Decode(b, binary.NativeEndian, &task); err != nil {
		t.unreadable.Add(1)
		return
	}
	t.events.Add(1)
	p := Proc{PID: int(task.Tgid), PPID: int(task.Ppid), UID: int(task.Uid), Start: task.Start, Cgroup: task.Cgroup}
	switch task.Kind {
	case 1: // LIN_EXEC
		// Sent only as long as its arguments (on_exec): the rest of the
		// struct stays zero, and ArgsLen must fit in what came.
		if len(b) < execHead {
			t.unreadable.Add(1)
			return
		}
		var e lineageLinExec
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&e)), unsafe.Sizeof(e)), b)
		if int(e.ArgsLen) > min(len(b), int(unsafe.Sizeof(e)))-execHead {
			t.unreadable.Add(1)
			return
		}
		fn := cstr(e.Filename[:], int(e.FilenameLen))
		p.Exe = resolveExe(p.PID, fn)
		p.Cmdline = joinArgs(bytesOf(e.Args[:], int(e.ArgsLen)))
		if t.cfg.OnExec != nil {
			t.cfg.OnExec(p) // before the table shows it: see Config.OnExec
		}
		t.table.exec(p)
	case 2: // LIN_FORK
		t.table.fork(p)
	case 3: // LIN_EXIT
		t.table.exit(p.PID, p.Start, task.Ktime)
	default:
		t.unreadable.Add(1)
	}
}

func bytesOf(a []int8, n int) []byte {
	n = min(max(n, 0), len(a))
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(a))), n)
}

func cstr(a []int8, n int) string {
	b := bytesOf(a, n)
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// resolveExe names the executable as readlink /proc/PID/exe does, while
// the process lives; the path given to execve otherwise (symlinks resolved
// if it is absolute and resolvable from here).
func resolveExe(pid int, filename string) string {
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err == nil {
		return exe
	}
	if filepath.IsAbs(filename) {
		if r, err := filepath.EvalSymlinks(filename); err == nil {
			return r
		}
	}
	return filename
}

// seed adds the processes already running, from /proc.
func (t *Tracker) seed() {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := "/proc/" + e.Name() + "/"
		stat, err := os.ReadFile(dir + "stat")
		if err != nil {
			continue
		}
		p := Proc{PID: pid, PPID: statPPid(stat), UID: -1}
		p.Exe, _ = os.Readlink(dir + "exe")
		if b, err := os.ReadFile(dir + "cmdline"); err == nil {
			p.Cmdline = joinArgs(b)
		}
		var st unix.Stat_t
		if unix.Stat(dir, &st) == nil {
			p.UID = int(st.Uid)
		}
		t.table.seed(p)
	}
}

// statPPid is the fourth field of /proc/PID/stat ("pid (comm) S ppid").
func statPPid(b []byte) int {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// flowDrain is how often the flow ring is drained when no lookup did it:
// the ring holds over half a second at 100,000 flows a second.
const flowDrain = 100 * time.Millisecond

// acceptDrain is flowDrain with accept records: they are the allowed
// flows' reports, and their owners are looked up when they are read (a
// port pair reused within the interval would name the newer owner).
const acceptDrain = 20 * time.Millisecond

// expire drops exited processes older than Keep, every second, and drains
// the flow ring every flowDrain.
func (t *Tracker) expire(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	every := flowDrain
	if t.cfg.AcceptMark != 0 {
		every = acceptDrain
	}
	drain := time.NewTicker(every)
	defer drain.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.done:
			return
		case <-drain.C:
			t.drainFlows()
		case <-tick.C:
			if now := monotonic(); now > uint64(t.cfg.Keep) {
				t.table.expire(now - uint64(t.cfg.Keep))
			}
		}
	}
}

// monotonic is CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns.
func monotonic() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

// Running reports whether the programs are attached.
func (t *Tracker) Running() bool {
	return t.running.Load()
}

// Process returns the table's entry for pid as it was at the monotonic
// time at (0: now). If the table does not know it, Process waits up to
// wait for the ring buffer to deliver it (its exec or fork may still be in
// flight), then gives up.
func (t *Tracker) Process(pid int, at uint64, wait time.Duration) (Proc, bool) {
	if !t.Running() {
		return Proc{}, false
	}
	var p Proc
	var ok bool
	t.untilCurrent(wait, at, func() <-chan struct{} {
		var changed <-chan struct{}
		p, ok, changed = t.table.get(pid, at)
		return changed
	})
	return p, ok
}

// untilCurrent calls look until the table holds every event the kernel
// had submitted when look ran (at != 0: by the monotonic time at, which
// needs no new check once the table is known current past it), waiting
// between calls for the table's next change (the channel look returns),
// for up to wait in all; wait <= 0: one call. What look found last is the
// answer: found before the table was current, it may be older than an
// event still in flight (an exec's new image).
func (t *Tracker) untilCurrent(wait time.Duration, at uint64, look func() <-chan struct{}) {
	var deadline time.Time // set on the first wait: most lookups need none
	for {
		// current before look: an event applied in between then shows.
		cur := wait <= 0 || at != 0 && at < t.currentAt.Load() || t.current()
		changed := look()
		if cur {
			return
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(wait)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		timer := time.NewTimer(left)
		select {
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// current reports whether the table holds every event the kernel has
// submitted so far (none still in the ring buffer or being applied).
func (t *Tracker) current() bool {
	t.mu.Lock()
	objs := t.objs
	t.mu.Unlock()
	if objs == nil {
		return true
	}
	now := monotonic() // before the count: what was submitted by now is in it
	var per []uint64
	if err := objs.Counts.Lookup(uint32(0), &per); err != nil {
		return true
	}
	var produced uint64
	for _, n := range per {
		produced += n
	}
	if t.handled.Load() < produced {
		return false
	}
	for {
		old := t.currentAt.Load()
		if now <= old || t.currentAt.CompareAndSwap(old, now) {
			return true
		}
	}
}

// FlowOwner returns the owner of the socket that sent a packet from src to
// dst; proto is the IP protocol number; IPv4 and IPv4-mapped addresses are
// the same. A connected UDP socket's flow is recorded just after its first
// send, so a miss is retried for up to wait. For ICMP and ICMPv6 it is the
// last process that sent ICMP to dst, if it did within Config.ICMPFresh.
func (t *Tracker) FlowOwner(proto uint8, src, dst netip.AddrPort, wait time.Duration) (Owner, bool) {
	if !t.Running() {
		return Owner{}, false
	}
	k := flowKey(proto, src, dst)
	var deadline time.Time // set on the first miss: most lookups have none
	for {
		// Drained first, hit or miss: a newer record of the same flow
		// (its ports reused, an ICMP destination pinged again) may still
		// be in the ring, and the table's older one would name the
		// previous owner. An empty ring costs a lock and two atomic loads.
		t.drainFlows()
		o, ok := t.flows.get(k)
		if ok {
			if k.Proto == protoICMP || k.Proto == protoICMPv6 {
				if monotonic()-o.Ktime > uint64(t.cfg.ICMPFresh) {
					return Owner{}, false
				}
			}
			return owner(o), true
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(wait)
		}
		if !time.Now().Before(deadline) {
			return Owner{}, false
		}
		time.Sleep(200 * time.Microsecond) // polling: records come without a wake-up
	}
}

var flowrecSize = int(unsafe.Sizeof(lineageLinFlowrec{}))

// drainFlows moves every record in the flow ring to the flow table, then
// hands the accept ring's records to OnAccept's function.
func (t *Tracker) drainFlows() {
	t.handing.RLock()
	defer t.handing.RUnlock()
	if acc := t.drainRings(); len(acc) > 0 {
		if f := t.onAccept.Load(); f != nil {
			(*f)(acc)
		}
	}
}

// Drain moves what the kernel recorded so far to the flow table and hands
// the accepts to OnAccept's function, its own and those other goroutines
// had taken from the ring, before it returns.
func (t *Tracker) Drain() {
	t.drainFlows()
	t.handing.Lock() // waits for the drains in progress
	//lint:ignore SA2001 the lock is the wait: drains hold it read-locked
	t.handing.Unlock()
}

// drainRings drains both rings and returns the accept records read.
func (t *Tracker) drainRings() []packet.Accept {
	t.flowMu.Lock()
	defer t.flowMu.Unlock()
	if t.flowRd != nil && t.flowRd.AvailableBytes() != 0 {
		t.drainFlowsLocked()
	}
	if t.accRd == nil || t.accRd.AvailableBytes() == 0 {
		return nil
	}
	// The handler's to keep; sized from what the ring holds (a record is
	// its header and the struct, 8-byte aligned), not grown per record.
	acc := make([]packet.Accept, 0, t.accRd.AvailableBytes()/(8+(acceptSize+7)&^7))
	for {
		if err := t.accRd.ReadInto(&t.accRec); err != nil {
			break
		}
		if len(t.accRec.RawSample) < acceptSize {
			t.unreadable.Add(1)
			continue
		}
		var r lineageLinAccept
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), acceptSize), t.accRec.RawSample)
		acc = append(acc, packet.Accept{Proto: r.Proto, ISN: r.Isn, UID: r.Uid, At: r.Ktime,
			Src: netip.AddrPortFrom(netip.AddrFrom16(r.Saddr).Unmap(), r.Sport),
			Dst: netip.AddrPortFrom(netip.AddrFrom16(r.Daddr).Unmap(), r.Dport)})
	}
	return acc
}

var acceptSize = int(unsafe.Sizeof(lineageLinAccept{}))

// drainFlowsLocked moves the flow ring's records to the table; flowMu held.
func (t *Tracker) drainFlowsLocked() {
	t.flows.mu.Lock() // once per drain, not per record
	defer t.flows.mu.Unlock()
	for {
		if err := t.flowRd.ReadInto(&t.flowRec); err != nil {
			// os.ErrDeadlineExceeded: drained; ErrClosed: closing.
			return
		}
		if len(t.flowRec.RawSample) < flowrecSize {
			t.unreadable.Add(1)
			continue
		}
		// A copy of the C struct as it is (bpf2go laid the Go type out
		// the same, padding included): binary.Decode's reflection was a
		// third of a drain's time.
		var r lineageLinFlowrec
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&r)), flowrecSize), t.flowRec.RawSample)
		t.flows.putLocked(r.Flow, r.Owner)
	}
}

// OnAccept sets the function the accept ring's records go to, in
// batches, from whichever goroutine drained them (a flow lookup, or the
// drain every 100 ms). It must not block for long; it may look flows up.
// The slice is the function's to keep. Records drained before it was set
// are dropped.
func (t *Tracker) OnAccept(f func([]packet.Accept)) { t.onAccept.Store(&f) }

// AcceptMark is the mark bit the firewall should set on the packets it
// accepts as new allowed flows: Config.AcceptMark once the programs are
// attached, else 0 (the firewall must then log those flows itself).
func (t *Tracker) AcceptMark() uint32 {
	if !t.Running() {
		return 0
	}
	return t.cfg.AcceptMark
}

// LocalOwner returns the owner of the socket that last sent from src to
// port 53 or Config.DNSPort, whatever the address (for the resolver, which
// sees queries after the firewall redirected them).
func (t *Tracker) LocalOwner(proto uint8, src netip.AddrPort) (Owner, bool) {
	t.mu.Lock()
	objs := t.objs
	t.mu.Unlock()
	if objs == nil {
		return Owner{}, false
	}
	var o lineageLinOwner
	k := localKey(proto, src)
	if err := objs.Locals.Lookup(&k, &o); err != nil {
		return Owner{}, false
	}
	return owner(o), true
}

// AcceptsSeen is how many packets with Config.AcceptMark's bit the egress
// program has seen (recorded or counted lost), for a comparison with the
// firewall's count of the packets it marked.
func (t *Tracker) AcceptsSeen() uint64 {
	return t.counted(4) // LIN_ACCEPTS_SEEN
}

// counted sums the BPF counters at idx over every CPU (0 once closed).
func (t *Tracker) counted(idx ...uint32) uint64 {
	t.mu.Lock()
	objs := t.objs
	t.mu.Unlock()
	if objs == nil {
		return 0
	}
	var per []uint64
	var n uint64
	for _, i := range idx {
		if err := objs.Counts.Lookup(i, &per); err == nil {
			for _, c := range per {
				n += c
			}
		}
	}
	return n
}

// Stats returns what the tracker counted so far.
func (t *Tracker) Stats() Stats {
	return Stats{Events: t.events.Load(), Procs: t.table.len(),
		Lost: t.unreadable.Load() + t.counted(1, 2, 3)} // LIN_LOST, LIN_FLOWS_LOST, LIN_ACCEPTS_LOST
}

// Close detaches the programs and stops reading. Safe to call twice.
func (t *Tracker) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	t.running.Store(false)
	return t.detach()
}

// detach undoes Start; t.mu must be held.
func (t *Tracker) detach() error {
	var errs []error
	for _, l := range t.links {
		errs = append(errs, l.Close())
	}
	t.links = nil
	if t.rd != nil {
		errs = append(errs, t.rd.Close())
		if t.done != nil {
			<-t.done
		}
		t.rd = nil
	}
	t.flowMu.Lock()
	if t.flowRd != nil {
		errs = append(errs, t.flowRd.Close())
		t.flowRd = nil
	}
	if t.accRd != nil {
		errs = append(errs, t.accRd.Close())
		t.accRd = nil
	}
	t.flowMu.Unlock()
	if t.objs != nil {
		errs = append(errs, t.objs.Close())
		t.objs = nil
	}
	if t.sysctl != nil {
		errs = append(errs, t.sysctl.Close())
		t.sysctl = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lineage: close: %w", err)
	}
	return nil
}
