package policy

import (
	"net/netip"
	"slices"
	"strconv"
)

// resultsStorageAccounts is how many productionresultssaN storage accounts
// (N = 0..resultsStorageAccounts-1) GitHub serves job logs, summaries and
// artifacts from. See the README section "Implicit allow-list" for why this
// is an explicit list and not *.blob.core.windows.net.
const resultsStorageAccounts = 20

// Implicit returns the built-in allow-list: what a GitHub-hosted runner needs
// to run the job at all (the Actions service, its log and artifact storage,
// action downloads, the hosted-compute watchdog and the Azure VM agent). Each
// entry has Implicit set. The slice is new on every call and in canonical
// order; the README's "Implicit allow-list" section gives the reason and the
// source of each entry.
func Implicit() []Endpoint {
	out := []Endpoint{
		// Runner <-> Actions service: broker, pipelines, results-receiver,
		// vstoken/token (OIDC), pkg (immutable actions), run-actions-*.
		{Host: "actions.githubusercontent.com", Wildcard: true, Port: 443},
		// Action tarballs (GitHub docs: "Needed for downloading actions").
		{Host: "codeload.github.com", Port: 443},
		// Hosted-compute agent: watchdog and orchestrator; a VM that cannot
		// reach its watchdog is reclaimed mid-job.
		{Host: "githubapp.com", Wildcard: true, Port: 443},
		// Azure WireServer: VM agent (80/tcp, 32526/tcp). Its DNS (53) is
		// used only by our own resolver, never by the workload.
		addrImplicit("168.63.129.16", 80),
		addrImplicit("168.63.129.16", 32526),
		// Azure Instance Metadata Service.
		addrImplicit("169.254.169.254", 80),
	}
	for i := range resultsStorageAccounts {
		out = append(out, Endpoint{
			Host: "productionresultssa" + strconv.Itoa(i) + ".blob.core.windows.net",
			Port: 443,
		})
	}
	for i := range out {
		out[i].Implicit = true
	}
	slices.SortFunc(out, compareEndpoints)
	return out
}

func addrImplicit(addr string, port uint16) Endpoint {
	a := netip.MustParseAddr(addr)
	return Endpoint{Prefix: netip.PrefixFrom(a, a.BitLen()), Port: port}
}
