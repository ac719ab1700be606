// Package guard watches harden-runner's own enforcement while the job
// runs: it subscribes to the kernel's nftables notifications (every
// committed ruleset generation names the committing process), and when a
// commit by anyone else deletes or changes our table, its chains or its sets,
// it has the firewall put the whole table back in one batch and records an
// error naming the change and the process. A base chain that another table
// adds ahead of ours on a hook we use (it sees packets before we do and can
// mark or rewrite them) is recorded as an error too; it is not removed.
//
// Guard does not decide what the table holds: Restore (the firewall's own
// builder, with the learned set elements re-added) does.
package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/harden-runner/harden-runner/event"
)

// Hook is one of our base chains: where it runs and at what priority.
type Hook struct {
	Hook     uint32 // NF_INET_*
	Priority int32
}

// Config says what to watch and how to put it back.
type Config struct {
	Table string // our table, family inet; required
	Hooks []Hook // our base chains (firewall.Hooks); a foreign chain before one is reported
	// Restore re-installs our table in one batch; required.
	Restore func() error
	// Verify checks our table is whole, for when notifications were lost
	// (the socket overflowed); nil: restore unconditionally then.
	Verify func() error
	// Existing are other tables' base chains at Start (only Base, Family,
	// Table, Name, Hook and Priority matter): those running before ours are
	// reported as a warning, and rules added to them later as tampering.
	Existing []Change
	NetNS    int // netns fd; 0: the caller's
	Emit     event.Emit
	Process  func(pid int) event.Process // who a pid is (proc.Info); required
	Log      *slog.Logger
	// OwnPort reports whether a netlink port id is one of our own
	// nftables sockets (firewall.OwnsPort); nil: judged by pid only.
	OwnPort func(portID uint32) bool
	// isSelf reports whether a thread id is one of ours; tests replace it.
	isSelf func(tid int) bool
}

// Guard is a running watch. Start once; Close is safe to call twice.
type Guard struct {
	cfg      Config
	log      *slog.Logger
	conn     *netlink.Conn
	done     chan struct{}
	closeMu  sync.Mutex
	closed   bool
	tampered atomic.Int64
	restores atomic.Int64
	lastNs   atomic.Int64 // duration of the last restore
	// early are foreign base chains seen to run before one of ours,
	// "family table chain" -> description; only the reading goroutine uses it.
	early map[string]string
}

// New validates cfg. It does no I/O.
func New(cfg Config) (*Guard, error) {
	if cfg.Table == "" || cfg.Restore == nil || cfg.Process == nil || cfg.Emit == nil {
		return nil, errors.New("guard: Table, Restore, Process and Emit are required")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.isSelf == nil {
		cfg.isSelf = ownThread
	}
	return &Guard{cfg: cfg, log: cfg.Log, done: make(chan struct{}), early: make(map[string]string)}, nil
}

// ownThread: the kernel names the committing thread, not the process.
func ownThread(tid int) bool {
	_, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid))
	return err == nil
}

// readBuffer is the notification socket's receive buffer: a flush of a
// large set sends one message per element batch, and an overflow loses
// them (then Verify decides).
const readBuffer = 8 << 20

// Start subscribes to the notifications and watches until ctx ends or
// Close. It returns once subscribed: every commit after it is seen.
func (g *Guard) Start(ctx context.Context) error {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: g.cfg.NetNS})
	if err != nil {
		return fmt.Errorf("guard: open netlink: %w", err)
	}
	if err := c.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		c.Close()
		return fmt.Errorf("guard: subscribe to nftables notifications: %w", err)
	}
	_ = c.SetReadBuffer(readBuffer)
	g.conn = c
	for _, ch := range g.cfg.Existing {
		ch.Add, ch.Object, ch.Base = true, "chain", true
		if g.before(ch, false) {
			g.early[earlyKey(ch)] = ch.String()
			msg := fmt.Sprintf("chain %s %s %s (hook %s priority %d) runs before harden-runner's rules and can change what they see; it was there before the agent started",
				ch.Family, ch.Table, ch.Name, hookName(ch.Hook), ch.Priority)
			g.log.Warn("guard: " + msg)
			g.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentGuard, Level: event.LevelWarning, Message: msg}})
		}
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = g.Close()
		case <-g.done:
		}
	}()
	go g.read()
	return nil
}

// Tampered returns how many commits by other processes changed our table
// or put a chain before ours so far.
func (g *Guard) Tampered() int { return int(g.tampered.Load()) }

// Restores returns how many times the table was put back.
func (g *Guard) Restores() int { return int(g.restores.Load()) }

// LastRestore returns how long the last restore took, from the commit's
// notification to our batch's acknowledgement.
func (g *Guard) LastRestore() time.Duration { return time.Duration(g.lastNs.Load()) }

// Close stops watching. Safe to call twice.
func (g *Guard) Close() error {
	g.closeMu.Lock()
	defer g.closeMu.Unlock()
	if g.closed || g.conn == nil {
		g.closed = true
		return nil
	}
	g.closed = true
	close(g.done)
	return g.conn.Close()
}

func (g *Guard) read() {
	var pending []Change
	for {
		msgs, err := g.conn.Receive()
		seen := time.Now()
		if err != nil {
			select {
			case <-g.done:
				return
			default:
			}
			if errors.Is(err, unix.ENOBUFS) {
				pending = nil
				g.lost()
				continue
			}
			g.emit(fmt.Sprintf("enforcement is no longer watched: reading nftables notifications: %v", err), nil)
			return
		}
		for _, m := range msgs {
			ch, gen, err := decode(m)
			switch {
			case errors.Is(err, errNotNFT):
			case err != nil:
				g.log.Warn("guard: undecodable notification", "err", err)
			case gen != nil:
				gen.Changes, pending = pending, nil
				g.commit(*gen, seen)
			default:
				pending = append(pending, ch)
			}
		}
	}
}

// lost handles a socket overflow: commits were missed, so check the table.
func (g *Guard) lost() {
	if g.cfg.Verify != nil {
		if err := g.cfg.Verify(); err == nil {
			g.log.Warn("guard: nftables notifications lost; our table is whole")
			return
		} else {
			g.restoreNow(fmt.Sprintf("our table was changed while notifications were lost (%v)", err))
			g.tampered.Add(1)
			return
		}
	}
	defer g.tampered.Add(1)
	g.restoreNow("nftables notifications were lost (socket overflow): the table was re-installed in case it was changed")
}

// commit judges one generation.
func (g *Guard) commit(c Commit, seen time.Time) {
	if (c.PID != 0 && g.cfg.isSelf(c.PID)) || (c.PortID != 0 && g.cfg.OwnPort != nil && g.cfg.OwnPort(c.PortID)) {
		return // our own install, restore or set update
	}
	var ours, early, rewrite []string
	for _, ch := range c.Changes {
		switch {
		case ch.Family == "inet" && ch.Table == g.cfg.Table:
			ours = append(ours, ch.String())
		case ch.Object == "chain" && ch.Add && ch.Base && g.before(ch, true):
			g.early[earlyKey(ch)] = ch.String()
			early = append(early, ch.String())
		case ch.Object == "chain" && !ch.Add:
			delete(g.early, earlyKey(ch))
		case ch.Object == "rule" && ch.Add && g.early[earlyKey(ch)] != "":
			early = append(early, ch.String()+" (a chain that runs before ours)")
		case ch.Object == "rule" && ch.Add && ch.Rewrites != "" && ch.Family != "arp":
			// Wherever it runs: in a chain after ours it changes a
			// packet our rules already let through (or, jumped to from
			// one, from a chain that is no base chain).
			rewrite = append(rewrite, ch.String()+" ("+ch.Rewrites+")")
		}
	}
	if len(ours) == 0 && len(early) == 0 && len(rewrite) == 0 {
		return
	}
	// Counted once its notes are out, so a reader of Tampered finds them.
	defer g.tampered.Add(1)
	// Who did it is read while the table goes back (reading /proc takes
	// milliseconds; the committer may exit meanwhile, then Comm remains).
	who := make(chan event.Process, 1)
	go func() {
		p := g.cfg.Process(c.PID)
		if p.Exe == "" && c.Comm != "" {
			p.Exe = c.Comm
		}
		who <- p
	}()
	var took time.Duration
	var rerr error
	if len(ours) > 0 {
		took, rerr = g.restore(seen)
	}
	p := <-who
	if len(early) > 0 {
		g.emit(fmt.Sprintf("%s by %s: it runs before harden-runner's rules and can change what they see (not removed)",
			summarize(early), describe(c, p)), &p)
	}
	if len(rewrite) > 0 {
		g.emit(fmt.Sprintf("%s by %s: it rewrites or re-sends packets, which can send a flow harden-runner's rules allowed to another destination (not removed)",
			summarize(rewrite), describe(c, p)), &p)
	}
	if len(ours) > 0 {
		g.emitRestore(fmt.Sprintf("%s by %s", summarize(ours), describe(c, p)), &p, took, rerr)
	}
}

// restore puts the table back; it returns how long that took since seen.
func (g *Guard) restore(seen time.Time) (time.Duration, error) {
	err := g.cfg.Restore()
	took := time.Since(seen)
	if err == nil {
		g.lastNs.Store(int64(took))
		g.restores.Add(1)
	}
	return took, err
}

// emitRestore records a restore and why it was needed.
func (g *Guard) emitRestore(why string, p *event.Process, took time.Duration, err error) {
	if err != nil {
		g.emit(fmt.Sprintf("enforcement tampered with: %s; restoring it failed: %v", why, err), p)
		return
	}
	g.emit(fmt.Sprintf("enforcement tampered with: %s; restored in %v", why, took.Round(10*time.Microsecond)), p)
}

// restoreNow restores for a reason without a committer (lost notifications).
func (g *Guard) restoreNow(why string) {
	took, err := g.restore(time.Now())
	g.emitRestore(why, nil, took, err)
}

func (g *Guard) emit(msg string, p *event.Process) {
	g.log.Error("guard: " + msg)
	g.cfg.Emit(event.Record{Note: &event.Note{Time: time.Now(), Component: event.ComponentGuard, Level: event.LevelError,
		Message: msg, Tamper: true, Process: p}})
}

// before reports whether a foreign base chain runs ahead of one of ours on
// the same hook (IPv4/IPv6 families). Of two chains of equal priority the
// kernel runs the one registered later first (nf_hook_entries_grow puts a
// new hook before those of its priority): a chain added while we run
// (added) is ahead of ours at our own priority too, one that was there
// before we started is not.
func (g *Guard) before(ch Change, added bool) bool {
	if ch.Family != "ip" && ch.Family != "ip6" && ch.Family != "inet" {
		return false
	}
	for _, h := range g.cfg.Hooks {
		if h.Hook == ch.Hook && (ch.Priority < h.Priority || added && ch.Priority == h.Priority) {
			return true
		}
	}
	return false
}

// FamilyName is nft's name for an nftables family number ("inet", "ip", ...).
func FamilyName(fam uint8) string {
	if n, ok := families[fam]; ok {
		return n
	}
	return fmt.Sprint(fam)
}

func earlyKey(ch Change) string { return ch.Family + " " + ch.Table + " " + ch.Name }

// summarize joins the changes of one commit, the first few in full.
func summarize(changes []string) string {
	const max = 4
	seen := make(map[string]bool)
	var uniq []string
	for _, c := range changes {
		if !seen[c] {
			seen[c] = true
			uniq = append(uniq, c)
		}
	}
	// The most drastic first: a deleted table says more than its rules.
	rank := func(c string) int {
		for i, o := range []string{"table", "chain", "set", "rule", "element"} {
			if strings.Contains(c, " "+o+" ") {
				return i
			}
		}
		return 5
	}
	sort.SliceStable(uniq, func(i, j int) bool { return rank(uniq[i]) < rank(uniq[j]) })
	if len(uniq) > max {
		return strings.Join(uniq[:max], ", ") + fmt.Sprintf(" and %d more changes", len(uniq)-max)
	}
	return strings.Join(uniq, ", ")
}

// describe names the committer: the kernel's pid even if the process is gone.
func describe(c Commit, p event.Process) string {
	p.PID = c.PID
	return who(p)
}
