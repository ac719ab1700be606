package flowlog

import "github.com/harden-runner/harden-runner/event"

// The NFLOG prefix convention, shared with the firewall's rules: "hr:" then
// "f" for forwarded traffic, then one letter for the verdict. Short, because
// the kernel copies the prefix into every logged packet (and nftables caps
// it at 127 bytes).
const prefixHead = "hr:"

// MarkedPrefix logs a new TCP connection that carried the agent's own
// packet mark in audit mode: the relay's, or a root process's that set
// SO_MARK to hide its flow. The reader reports it as an audit flow unless
// the socket is the agent's own.
const MarkedPrefix = prefixHead + "m"

// ReasonMarked is the Reason of a flow logged under MarkedPrefix.
const ReasonMarked = "carried the agent's own packet mark (SO_MARK), which only the agent's sockets may"

var verdictLetters = [...]struct {
	v event.Verdict
	c byte
}{
	{event.Allowed, 'a'},
	{event.Blocked, 'b'},
	{event.Audit, 'u'}, // "unenforced": let through, would have been blocked
}

// Prefix returns the NFLOG prefix for a verdict and whether the traffic is
// forwarded (from a container) rather than sent by the host: "hr:a",
// "hr:b", "hr:u", "hr:fa", "hr:fb", "hr:fu". An unknown verdict gives "".
func Prefix(v event.Verdict, forward bool) string {
	for _, l := range verdictLetters {
		if l.v != v {
			continue
		}
		if forward {
			return prefixHead + "f" + string(l.c)
		}
		return prefixHead + string(l.c)
	}
	return ""
}

// ParsePrefix is the inverse of Prefix. ok is false for any other string,
// such as a prefix of someone else's rule logging to the same group.
func ParsePrefix(p string) (v event.Verdict, forward bool, ok bool) {
	if len(p) < len(prefixHead)+1 || p[:len(prefixHead)] != prefixHead {
		return "", false, false
	}
	rest := p[len(prefixHead):]
	if len(rest) == 2 && rest[0] == 'f' {
		forward, rest = true, rest[1:]
	}
	if len(rest) != 1 {
		return "", false, false
	}
	for _, l := range verdictLetters {
		if l.c == rest[0] {
			return l.v, forward, true
		}
	}
	return "", false, false
}
