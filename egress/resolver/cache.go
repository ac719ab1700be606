package resolver

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Cache limits. Negative answers are kept at most maxNegTTL; nothing is kept
// longer than maxTTL whatever the upstream said.
const (
	maxTTL    = time.Hour
	maxNegTTL = 5 * time.Minute
)

type exchangeFunc func(ctx context.Context, m *dns.Msg) (*dns.Msg, error)

// cache answers repeated questions from memory and collapses concurrent
// identical questions into one upstream exchange. Safe for concurrent use.
type cache struct {
	next  exchangeFunc
	limit int
	group singleflight.Group

	mu      sync.RWMutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

func newCache(next exchangeFunc, limit int) *cache {
	return &cache{next: next, limit: limit, entries: make(map[string]cacheEntry)}
}

// key identifies a question: name (any case), type, class and the EDNS0 DO
// and CD bits, which change what an upstream returns.
func key(req *dns.Msg) string {
	q := req.Question[0]
	var b strings.Builder
	b.Grow(len(q.Name) + 12)
	b.WriteString(strings.ToLower(q.Name))
	b.WriteByte('|')
	b.WriteByte(byte(q.Qtype >> 8))
	b.WriteByte(byte(q.Qtype))
	b.WriteByte(byte(q.Qclass >> 8))
	b.WriteByte(byte(q.Qclass))
	if o := req.IsEdns0(); o != nil && o.Do() {
		b.WriteByte('D')
	}
	if req.CheckingDisabled {
		b.WriteByte('C')
	}
	return b.String()
}

// get returns a private copy of the answer to req, with TTLs counted down
// for the time it spent in the cache; an upstream exchange may take up to
// timeout (a context is made only then: a hit needs none).
func (c *cache) get(req *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	if m, ok := c.lookup(req); ok {
		return m, nil
	}
	k := key(req)
	v, err, _ := c.group.Do(k, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		up := upstreamQuery(req)
		resp, err := c.next(ctx, up)
		if err != nil {
			return nil, err
		}
		c.store(k, resp)
		return resp, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*dns.Msg).Copy(), nil
}

// lookup returns what get would answer req from memory, if it can.
func (c *cache) lookup(req *dns.Msg) (*dns.Msg, bool) {
	k := key(req)
	now := time.Now()
	c.mu.RLock()
	e, ok := c.entries[k]
	c.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	return aged(e.msg, now.Sub(e.stored)), true
}

func (c *cache) store(k string, m *dns.Msg) {
	var ttl time.Duration
	switch m.Rcode {
	case dns.RcodeSuccess:
		if len(m.Answer) == 0 {
			ttl = min(negTTL(m), maxNegTTL)
			break
		}
		ttl = min(minTTL(m.Answer), maxTTL)
	case dns.RcodeNameError:
		ttl = min(negTTL(m), maxNegTTL)
	default:
		return // SERVFAIL and friends are not cached
	}
	if ttl <= 0 || m.Truncated {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.limit {
		c.evictLocked(now)
	}
	c.entries[k] = cacheEntry{msg: m, stored: now, expires: now.Add(ttl)}
}

// evictLocked drops expired entries, or a tenth of the cache if none expired.
func (c *cache) evictLocked(now time.Time) {
	n := 0
	for k, e := range c.entries {
		if now.After(e.expires) {
			delete(c.entries, k)
			n++
		}
	}
	for k := range c.entries {
		if n >= c.limit/10 {
			break
		}
		delete(c.entries, k)
		n++
	}
}

// upstreamQuery is the question we send upstream for req: same question and
// flags, a fresh random ID, and always EDNS0 (so big answers come over UDP),
// keeping the client's DO bit.
func upstreamQuery(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.Id = dns.Id()
	m.RecursionDesired = true
	m.CheckingDisabled = req.CheckingDisabled
	m.Question = []dns.Question{req.Question[0]}
	do := false
	if o := req.IsEdns0(); o != nil {
		do = o.Do()
	}
	m.SetEdns0(1232, do)
	return m
}

func minTTL(rrs []dns.RR) time.Duration {
	var t uint32
	for i, rr := range rrs {
		if h := rr.Header(); i == 0 || h.Ttl < t {
			t = h.Ttl
		}
	}
	return time.Duration(t) * time.Second
}

// negTTL is the SOA minimum (capped by the SOA's own TTL), RFC 2308.
func negTTL(m *dns.Msg) time.Duration {
	for _, rr := range m.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			return time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
		}
	}
	return 0
}

// aged copies m with every TTL lowered by age (not below zero).
func aged(m *dns.Msg, age time.Duration) *dns.Msg {
	c := m.Copy()
	sec := uint32(age / time.Second)
	for _, sec2 := range [][]dns.RR{c.Answer, c.Ns, c.Extra} {
		for _, rr := range sec2 {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			if h.Ttl > sec {
				h.Ttl -= sec
			} else {
				h.Ttl = 0
			}
		}
	}
	return c
}
