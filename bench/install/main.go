// Command install measures how long harden-runner's firewall takes to
// install an allow-list of N address entries (half IPv4 /32, half IPv6
// /127, none adjacent), and prints the same list for the alternatives:
//
//	install -n N -reps R          install R times in the current netns, print ms per install
//	install -n N -emit ipt4|ipt6  iptables-restore / ip6tables-restore input, one rule per entry
//	install -n N -emit nft        an nft -f script: one table, the entries in interval sets
//	install -n N -emit policy     a policy file (egress/policyfile) with the entries
//
// For bench scripts only, inside a namespace the script made.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/harden-runner/harden-runner/egress/firewall"
	"github.com/harden-runner/harden-runner/egress/policy"
)

func main() {
	n := flag.Int("n", 1000, "entries")
	reps := flag.Int("reps", 5, "installs to time")
	emit := flag.String("emit", "", "print the list for ipt4, ipt6, nft or policy instead of installing")
	flag.Parse()
	eps := entries(*n)
	if *emit != "" {
		w := bufio.NewWriter(os.Stdout)
		defer w.Flush()
		emitList(w, *emit, eps)
		return
	}
	for range *reps {
		fw, err := firewall.New(firewall.Config{Block: true, Addrs: policy.New(policy.Block, eps, false).AddrRanges(), ResolverPort: 153})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		start := time.Now()
		if err := fw.Install(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		took := time.Since(start)
		if err := fw.Remove(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("%.1f\n", float64(took.Microseconds())/1000)
	}
}

// entries: v4 198.18.0.0/15 even addresses, v6 2001:db8:2::/48 every 4th /127.
func entries(n int) []policy.Endpoint {
	out := make([]policy.Endpoint, 0, n)
	base6 := netip.MustParseAddr("2001:db8:2::").As16()
	for i := 0; len(out) < n; i++ {
		j := uint32(i / 2)
		if i%2 == 0 {
			v := uint32(198)<<24 | uint32(18)<<16 + 2*j
			a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			out = append(out, policy.Endpoint{Prefix: netip.PrefixFrom(a, 32), Port: 443})
			continue
		}
		b := base6
		v := 4 * j
		b[12], b[13], b[14], b[15] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
		out = append(out, policy.Endpoint{Prefix: netip.PrefixFrom(netip.AddrFrom16(b), 127), Port: 443})
	}
	return out
}

func emitList(w *bufio.Writer, kind string, eps []policy.Endpoint) {
	switch kind {
	case "ipt4", "ipt6":
		fmt.Fprintln(w, "*filter\n:OUTPUT ACCEPT [0:0]")
		for _, e := range eps {
			if e.Prefix.Addr().Is4() == (kind == "ipt4") {
				fmt.Fprintf(w, "-A OUTPUT -d %s -p tcp --dport %d -j ACCEPT\n", e.Prefix, e.Port)
			}
		}
		fmt.Fprintln(w, "-A OUTPUT -j REJECT\nCOMMIT")
	case "nft":
		fmt.Fprintln(w, "table inet bench {")
		for _, fam := range []string{"4", "6"} {
			fmt.Fprintf(w, "set net%s { type ipv%s_addr . inet_service; flags interval; elements = {\n", fam, fam)
			for _, e := range eps {
				if e.Prefix.Addr().Is4() == (fam == "4") {
					fmt.Fprintf(w, "%s . %d,\n", e.Prefix, e.Port)
				}
			}
			fmt.Fprintln(w, "} }")
		}
		fmt.Fprintln(w, "}")
	case "policy":
		fmt.Fprintln(w, "egress-policy: block\nallowed-endpoints:")
		for _, e := range eps {
			fmt.Fprintf(w, "  - %q\n", e.String())
		}
	default:
		fmt.Fprintf(os.Stderr, "install: -emit %q: want ipt4, ipt6, nft or policy\n", kind)
		os.Exit(2)
	}
}
