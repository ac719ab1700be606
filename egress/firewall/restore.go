package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables"
)

// Hook is one of our table's base chains: its hook (NF_INET_*) and
// priority, as the kernel holds them.
type Hook struct {
	Chain    string
	Hook     uint32
	Priority int32
}

// shape is what the kernel held of our table right after Install: chains
// (with rule counts) and set names. Verify compares against it.
type shape struct {
	chains map[string]int
	sets   []string
	hooks  []Hook
}

// readShapeLocked lists our table as the kernel has it.
func (f *Firewall) readShapeLocked() (shape, error) {
	s := shape{chains: make(map[string]int)}
	chains, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return s, fmt.Errorf("firewall: list chains: %w", err)
	}
	t := &nftables.Table{Name: f.cfg.Table, Family: nftables.TableFamilyINet}
	for _, c := range chains {
		if c.Table.Name != f.cfg.Table {
			continue
		}
		rules, err := f.conn.GetRules(t, c)
		if err != nil {
			return s, fmt.Errorf("firewall: list rules of chain %q: %w", c.Name, err)
		}
		s.chains[c.Name] = len(rules)
		if c.Hooknum != nil && c.Priority != nil {
			s.hooks = append(s.hooks, Hook{Chain: c.Name, Hook: uint32(*c.Hooknum), Priority: int32(*c.Priority)})
		}
	}
	sets, err := f.conn.GetSets(t)
	if err != nil {
		return s, fmt.Errorf("firewall: list sets: %w", err)
	}
	for _, st := range sets {
		s.sets = append(s.sets, st.Name)
	}
	slices.Sort(s.sets)
	return s, nil
}

// Hooks returns our base chains as installed, for a watch that must know
// which foreign chains run before ours. Nil before Install.
func (f *Firewall) Hooks() []Hook {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.shape.hooks)
}

// Verify checks that our table still has every chain with its rules and
// every set it had after Install. It cannot tell an emptied dyn set from
// expired elements.
func (f *Firewall) Verify() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed {
		return ErrNotInstalled
	}
	now, err := f.readShapeLocked()
	if err != nil {
		return err
	}
	var diffs []string
	for name, n := range f.shape.chains {
		if m, ok := now.chains[name]; !ok {
			diffs = append(diffs, "chain "+name+" missing")
		} else if m != n {
			diffs = append(diffs, fmt.Sprintf("chain %s has %d rules, not %d", name, m, n))
		}
	}
	for name := range now.chains {
		if _, ok := f.shape.chains[name]; !ok {
			diffs = append(diffs, "chain "+name+" added")
		}
	}
	if !slices.Equal(now.sets, f.shape.sets) {
		diffs = append(diffs, fmt.Sprintf("sets are %v, not %v", now.sets, f.shape.sets))
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		return fmt.Errorf("firewall: table %q changed: %s", f.cfg.Table, strings.Join(diffs, "; "))
	}
	return nil
}

// Restore puts the whole table back as Install made it, in one batch, with
// the addresses the resolver allowed since (dyn4/dyn6) re-added for the
// rest of their lifetime. Whatever was done to the table (deleted,
// flushed, rules added or removed) is replaced.
func (f *Firewall) Restore() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.installed || f.conn == nil {
		return ErrNotInstalled
	}
	b := newBuilder(f.conn, f.cfg, f.bridges)
	b.build()
	now := time.Now()
	if err := f.queueAllowedLocked(b.sets, f.expiry, now); err != nil {
		return fmt.Errorf("firewall: restore table %q: %w", f.cfg.Table, err)
	}
	if err := f.conn.Flush(); err != nil {
		return fmt.Errorf("firewall: restore table %q: %w", f.cfg.Table, err)
	}
	f.table, f.sets = b.table, b.sets
	// Elements skipped above are gone from the kernel: forget them, so
	// Allow re-adds them.
	for k, exp := range f.expiry {
		if exp.Sub(now) < time.Second {
			delete(f.expiry, k)
		}
	}
	return nil
}

// BaseChain is a base chain of any table: where it runs and at what
// priority. Family is the nftables family number (NFPROTO_*).
type BaseChain struct {
	Family      uint8
	Table, Name string
	Hook        uint32
	Priority    int32
}

// ForeignBaseChains lists the base chains of every table but ours, for a
// watch that reports those running before ours.
func (f *Firewall) ForeignBaseChains() ([]BaseChain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conn == nil {
		return nil, ErrNotInstalled
	}
	chains, err := f.conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("firewall: list chains: %w", err)
	}
	var out []BaseChain
	for _, c := range chains {
		if c.Hooknum == nil || c.Priority == nil || c.Table == nil ||
			c.Table.Family == nftables.TableFamilyINet && c.Table.Name == f.cfg.Table {
			continue
		}
		out = append(out, BaseChain{Family: uint8(c.Table.Family), Table: c.Table.Name, Name: c.Name,
			Hook: uint32(*c.Hooknum), Priority: int32(*c.Priority)})
	}
	return out, nil
}

// queueAllowedLocked queues, into the batch being built, the dyn-set
// elements of allowed (address·port -> expiry) that have a second or more
// left, for what is left of their lifetime.
func (f *Firewall) queueAllowedLocked(sets map[string]*nftables.Set, allowed map[elemKey]time.Time, now time.Time) error {
	var v4, v6 []nftables.SetElement
	for k, exp := range allowed {
		left := exp.Sub(now)
		if left < time.Second {
			continue // about to expire anyway; the next lookup re-adds it
		}
		el := nftables.SetElement{Key: concatKey(k.addr, k.port), Timeout: left.Truncate(time.Millisecond)}
		if k.addr.Is4() {
			v4 = append(v4, el)
		} else {
			v6 = append(v6, el)
		}
	}
	return errors.Join(addElements(f.conn, sets[setDyn4], v4), addElements(f.conn, sets[setDyn6], v6))
}

// allowedInKernelLocked reads the dyn-set elements of a table of ours
// that is in the kernel now (left by an agent that died), with when each
// expires. No table, or one it cannot read, gives none.
func (f *Firewall) allowedInKernelLocked() map[elemKey]time.Time {
	out := make(map[elemKey]time.Time)
	t := &nftables.Table{Name: f.cfg.Table, Family: nftables.TableFamilyINet}
	now := time.Now()
	for _, name := range []string{setDyn4, setDyn6} {
		s, err := f.conn.GetSetByName(t, name)
		if err != nil {
			continue
		}
		elems, err := f.conn.GetSetElements(s)
		if err != nil {
			f.log.Warn("firewall: take over: read set", "set", name, "err", err)
			continue
		}
		n := 4
		if name == setDyn6 {
			n = 16
		}
		for _, e := range elems {
			if len(e.Key) < n+2 || e.Expires <= 0 {
				continue
			}
			a, ok := netip.AddrFromSlice(e.Key[:n])
			if !ok {
				continue
			}
			out[elemKey{a, uint16(e.Key[n])<<8 | uint16(e.Key[n+1])}] = now.Add(e.Expires)
		}
	}
	return out
}
