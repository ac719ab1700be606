module github.com/harden-runner/harden-runner

go 1.26.0

require (
	github.com/cilium/ebpf v0.22.0
	github.com/florianl/go-nflog/v2 v2.3.0
	github.com/florianl/go-nfqueue/v2 v2.0.2
	github.com/fsnotify/fsnotify v1.10.1
	github.com/google/go-github/v55 v55.0.0
	github.com/google/nftables v0.3.0
	github.com/mdlayher/netlink v1.9.1-0.20260312172110-2a932c0fc1ae
	github.com/miekg/dns v1.1.73
	github.com/sethvargo/go-githubactions v1.4.0
	github.com/vishvananda/netlink v1.3.1
	github.com/vishvananda/netns v0.0.5
	github.com/yuin/goldmark v1.8.7
	go.yaml.in/yaml/v3 v3.0.6
	golang.org/x/crypto/x509roots/fallback v0.0.0-20261030153154-30a33513ff6d
	golang.org/x/net v0.57.0
	golang.org/x/sync v0.25.0
	golang.org/x/sys v0.50.0
)

require (
	github.com/ProtonMail/go-crypto v0.0.0-20230217124315-7d5c6f04bbb8 // indirect
	github.com/cloudflare/circl v1.3.3 // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/google/go-querystring v1.1.0 // indirect
	github.com/mdlayher/socket v0.5.1 // indirect
	golang.org/x/crypto v0.54.0 // indirect
)

// The pseudo-version go-nflog v2.3.0 asks for (and v1.10.0) allocates the
// receive buffer at the message's exact length and then slices it to the
// aligned length: NFQUEUE messages with an unaligned payload panic. v1.9.0
// reads into page-size buffers.
replace github.com/mdlayher/netlink => github.com/mdlayher/netlink v1.9.0

tool github.com/cilium/ebpf/cmd/bpf2go
