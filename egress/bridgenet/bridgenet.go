// Package bridgenet finds the subnets of docker's bridges in the current
// network namespace, and follows them as links and addresses change: the
// firewall leaves traffic to them unpoliced (host to container), and only
// to them.
//
// A link counts as one of docker's bridges when it is named like one
// (docker0, br-*), is of kind bridge, and has only veth ports: root can
// rename the uplink br-x, or build a bridge around it, and the internet
// would then look like a container network. Such a link is reported
// (Scan's notes) and its subnets are left out, so its traffic is policed
// like any other.
package bridgenet

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"

	"github.com/harden-runner/harden-runner/egress/firewall"
	"github.com/vishvananda/netlink"
)

// Named reports whether a link's name is one of docker's bridges' names.
func Named(name string) bool {
	return name == "docker0" || strings.HasPrefix(name, "br-")
}

// Scan returns the subnets of docker's genuine bridges in h's network
// namespace, and a note for each link named like one that is not (why its
// traffic is policed).
func Scan(h *netlink.Handle) (nets []netip.Prefix, notes []string, err error) {
	links, err := h.LinkList()
	if err != nil {
		return nil, nil, fmt.Errorf("bridgenet: list links: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		if !Named(a.Name) {
			continue
		}
		if why := impostor(l, links); why != "" {
			notes = append(notes, fmt.Sprintf("interface %q is named like one of docker's bridges but %s: its traffic is policed like any other", a.Name, why))
			continue
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, nil, fmt.Errorf("bridgenet: addresses of %s: %w", a.Name, err)
		}
		for _, ad := range addrs {
			p, ok := prefix(ad)
			if !ok {
				continue
			}
			if min := firewall.MinBridgeBits(p); p.Bits() < min {
				notes = append(notes, fmt.Sprintf("bridge %q has the address %v, wider than /%d: traffic to it is policed like any other", a.Name, p, min))
				continue
			}
			nets = append(nets, p.Masked())
		}
	}
	slices.SortFunc(nets, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(nets), notes, nil
}

// impostor says why l, named like a docker bridge, is not one ("" if it is).
func impostor(l netlink.Link, links []netlink.Link) string {
	if t := l.Type(); t != "bridge" {
		return "is of kind " + t
	}
	for _, p := range links {
		if p.Attrs().MasterIndex == l.Attrs().Index && p.Type() != "veth" {
			return fmt.Sprintf("has the port %q of kind %s (docker's have only veth ones)", p.Attrs().Name, p.Type())
		}
	}
	return ""
}

func prefix(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IPNet.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := a.IPNet.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}

// Config configures Watch.
type Config struct {
	// Set receives the subnets at every change (the firewall's
	// SetBridgeNets). Required.
	Set func([]netip.Prefix) error
	// Note receives each note of Scan once. Required.
	Note func(string)
	Log  *slog.Logger
}

// Watch subscribes to link and address changes in the calling thread's
// network namespace and calls cfg.Set with the subnets whenever they
// differ from the last ones it set, until ctx ends. It returns once
// subscribed, after the first Scan.
func Watch(ctx context.Context, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// Its sockets stay in this namespace, whichever thread reads them.
	h, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("bridgenet: netlink: %w", err)
	}
	done := make(chan struct{})
	stop := func() { close(done); h.Close() }
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	failed := make(chan error, 2)
	onErr := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}); err != nil {
		stop()
		return fmt.Errorf("bridgenet: watch links: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		stop()
		return fmt.Errorf("bridgenet: watch addresses: %w", err)
	}
	w := &watcher{cfg: cfg, h: h, noted: make(map[string]bool)}
	// After subscribing: a change in between is in the channels.
	if err := w.rescan(); err != nil {
		stop()
		return err
	}
	go func() {
		defer stop()
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-failed:
				cfg.Log.Warn("bridgenet: netlink", "err", err)
			case _, ok := <-links:
				if !ok {
					return
				}
			case _, ok := <-addrs:
				if !ok {
					return
				}
			}
			// One scan for a burst (docker adds a veth, moves it, sets it up).
			for drained := false; !drained; {
				select {
				case <-links:
				case <-addrs:
				default:
					drained = true
				}
			}
			if err := w.rescan(); err != nil {
				cfg.Log.Warn("bridgenet: scan", "err", err)
			}
		}
	}()
	return nil
}

type watcher struct {
	cfg   Config
	h     *netlink.Handle
	last  []netip.Prefix
	set   bool
	noted map[string]bool
}

func (w *watcher) rescan() error {
	nets, notes, err := Scan(w.h)
	if err != nil {
		return err
	}
	for _, n := range notes {
		if !w.noted[n] {
			w.noted[n] = true
			w.cfg.Note(n)
		}
	}
	if w.set && slices.Equal(nets, w.last) {
		return nil
	}
	if err := w.cfg.Set(nets); err != nil {
		return fmt.Errorf("bridgenet: %w", err)
	}
	w.last, w.set = nets, true
	return nil
}
