package policy

import (
	"fmt"
	"strings"

	"github.com/harden-runner/harden-runner/event"
)

// Mode is the egress policy: Audit lets everything through and records what
// Block would have stopped; Block stops everything the policy does not allow.
// It is the journal's event.Mode: one type from the input to the report.
type Mode = event.Mode

// The two egress policies, spelled as the `egress-policy` input spells them.
const (
	Audit = event.ModeAudit
	Block = event.ModeBlock
)

// ParseMode parses the `egress-policy` input: "audit" or "block", in any
// case, with surrounding white space ignored. Anything else is an error that
// names the value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(asciiLower(strings.TrimSpace(s))); m {
	case Audit, Block:
		return m, nil
	}
	if strings.TrimSpace(s) == "" {
		return "", fmt.Errorf(`egress-policy: empty; want "audit" or "block"`)
	}
	return "", fmt.Errorf(`egress-policy: %q is not "audit" or "block"`, s)
}

// asciiLower lower-cases ASCII letters only (DNS names are case-insensitive
// in ASCII alone), and returns s itself when it has no upper-case letter.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + ('a' - 'A')
				}
			}
			return string(b)
		}
	}
	return s
}
