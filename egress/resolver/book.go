package resolver

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// maxBookNames bounds the names the book remembers; beyond it, some are
// forgotten (a connection to one of their addresses is then refused by the
// relay until the name is asked again).
const maxBookNames = 50000

// book remembers which addresses each name resolved to, and until when:
// the name-checking relay (egress/relay) lets a TLS or HTTP connection
// through only to an address its SNI or Host name was answered with.
// Safe for concurrent use.
type book struct {
	mu     sync.RWMutex
	byName map[string]map[netip.Addr]time.Time
	byAddr map[netip.Addr]map[string]struct{}
}

func newBook() *book {
	return &book{byName: map[string]map[netip.Addr]time.Time{}, byAddr: map[netip.Addr]map[string]struct{}{}}
}

// add notes that name resolved to addrs, valid until expires.
func (b *book) add(name string, addrs []netip.Addr, expires time.Time) {
	if len(addrs) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := b.byName[name]
	if m == nil {
		if len(b.byName) >= maxBookNames {
			b.evictLocked()
		}
		m = map[netip.Addr]time.Time{}
		b.byName[name] = m
	}
	for _, a := range addrs {
		a = a.Unmap()
		if old, ok := m[a]; !ok || old.Before(expires) {
			m[a] = expires
		}
		names := b.byAddr[a]
		if names == nil {
			names = map[string]struct{}{}
			b.byAddr[a] = names
		}
		names[name] = struct{}{}
	}
}

// has reports whether name resolved to a (in force now).
func (b *book) has(name string, a netip.Addr, now time.Time) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	exp, ok := b.byName[name][a.Unmap()]
	return ok && now.Before(exp)
}

// names returns, sorted, the names that resolved to a (in force now).
func (b *book) names(a netip.Addr, now time.Time) []string {
	a = a.Unmap()
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []string
	for n := range b.byAddr[a] {
		if now.Before(b.byName[n][a]) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// prune forgets what expired before now.
func (b *book) prune(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for n, m := range b.byName {
		for a, exp := range m {
			if !now.Before(exp) {
				b.forgetLocked(n, a)
			}
		}
	}
}

// evictLocked makes room: it forgets what has expired and, if the book is
// still full, a sixteenth of the names chosen at random (map order), so a
// flood of new names costs amortized constant time per name.
func (b *book) evictLocked() {
	now := time.Now()
	drop := len(b.byName) / 16
	for n, m := range b.byName {
		expired := true
		for _, exp := range m {
			expired = expired && !now.Before(exp)
		}
		if !expired && len(b.byName) < maxBookNames {
			continue
		}
		if !expired {
			if drop == 0 {
				continue
			}
			drop--
		}
		for a := range m {
			b.forgetLocked(n, a)
		}
	}
}

func (b *book) forgetLocked(name string, a netip.Addr) {
	delete(b.byName[name], a)
	if len(b.byName[name]) == 0 {
		delete(b.byName, name)
	}
	delete(b.byAddr[a], name)
	if len(b.byAddr[a]) == 0 {
		delete(b.byAddr, a)
	}
}

// Resolved reports whether the resolver answered a query for name (any
// case, trailing dot or not) with address a, and that answer's allowance
// (TTL, at least a minute, plus Config.Grace) has not run out. Answers are
// remembered in both modes. Safe for concurrent use.
func (r *Resolver) Resolved(name string, a netip.Addr) bool {
	return r.book.has(canonical(name), a, time.Now())
}

// NamesOf returns, sorted, the names whose answers in force carried
// address a: the names a connection to a may have meant. Safe for
// concurrent use.
func (r *Resolver) NamesOf(a netip.Addr) []string {
	return r.book.names(a, time.Now())
}
