package action

import (
	"fmt"
	"strings"
)

// PolicyFile is the content of the file the `policy` input names: the
// same egress settings as the inputs, kept in the repository.
//
// Format (a small subset of YAML; comments start with '#'):
//
//	egress-policy: block
//	allowed-endpoints: >
//	  github.com:443
//	  api.github.com:443
//
// allowed-endpoints may also be a YAML list ("- host:port" lines), a `|`
// block, or one line. Values may be quoted with ' or ". Other keys, tabs in
// indentation, and repeated keys are errors that name the line.
type PolicyFile struct {
	EgressPolicy     string // "" when the file does not set it
	AllowedEndpoints string // entries separated by newlines; "" when unset
}

// maxPolicyFile caps the policy file size.
const maxPolicyFile = 64 << 10

// ParsePolicyFile parses a policy file's content. It does no I/O.
func ParsePolicyFile(data []byte) (*PolicyFile, error) {
	if len(data) > maxPolicyFile {
		return nil, fmt.Errorf("policy file: %d bytes, more than %d", len(data), maxPolicyFile)
	}
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	s = strings.TrimPrefix(s, "\ufeff")
	lines := strings.Split(s, "\n")
	pf := &PolicyFile{}
	seen := map[string]bool{}
	for i := 0; i < len(lines); i++ {
		ln := i + 1
		raw := lines[i]
		line := strings.TrimRight(stripComment(raw), " \t")
		if strings.TrimSpace(line) == "" || line == "---" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			return nil, fmt.Errorf("policy file: line %d: unexpected indentation (keys start at column 1)", ln)
		}
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("policy file: line %d: want \"key: value\"", ln)
		}
		key = strings.TrimSpace(key)
		if key != "egress-policy" && key != "allowed-endpoints" {
			return nil, fmt.Errorf("policy file: line %d: unknown key %q (want egress-policy or allowed-endpoints)", ln, key)
		}
		if seen[key] {
			return nil, fmt.Errorf("policy file: line %d: %s given twice", ln, key)
		}
		seen[key] = true
		val = strings.TrimSpace(val)
		// The value's continuation: the indented lines that follow.
		var block []string
		for i+1 < len(lines) {
			next := lines[i+1]
			if strings.TrimSpace(stripComment(next)) != "" && next[0] != ' ' && next[0] != '\t' {
				break
			}
			if strings.HasPrefix(strings.TrimLeft(next, " "), "\t") {
				return nil, fmt.Errorf("policy file: line %d: tab in indentation", i+2)
			}
			block = append(block, next)
			i++
		}
		v, err := value(val, block, ln)
		if err != nil {
			return nil, err
		}
		if key == "egress-policy" {
			if strings.ContainsAny(v, "\n") {
				return nil, fmt.Errorf("policy file: line %d: egress-policy must be one word", ln)
			}
			pf.EgressPolicy = v
		} else {
			pf.AllowedEndpoints = v
		}
	}
	return pf, nil
}

// value turns a key's inline value and its indented continuation lines
// into text: a scalar, a `|`/`>` block (entries one per line), or a list.
func value(inline string, block []string, ln int) (string, error) {
	var items []string
	switch {
	case inline == "|" || inline == ">" || inline == "|-" || inline == ">-":
		for _, b := range block {
			// Inside a block scalar '#' is text; a line at column 1 can
			// only be a comment (anything else would have ended the block).
			if t := strings.TrimSpace(b); t != "" && (b[0] == ' ' || b[0] == '\t') {
				items = append(items, t)
			}
		}
		return strings.Join(items, "\n"), nil
	case inline == "":
		for j, b := range block {
			t := strings.TrimSpace(stripComment(b))
			if t == "" {
				continue
			}
			item, ok := strings.CutPrefix(t, "-")
			if !ok {
				return "", fmt.Errorf("policy file: line %d: want a \"- host:port\" list item", ln+1+j)
			}
			q, err := unquote(strings.TrimSpace(item), ln+1+j)
			if err != nil {
				return "", err
			}
			items = append(items, q)
		}
		return strings.Join(items, "\n"), nil
	}
	for j, b := range block {
		if strings.TrimSpace(stripComment(b)) != "" {
			return "", fmt.Errorf("policy file: line %d: a value on the key's line cannot continue on the next", ln+1+j)
		}
	}
	if strings.HasPrefix(inline, "[") {
		inner, ok := strings.CutSuffix(strings.TrimPrefix(inline, "["), "]")
		if !ok {
			return "", fmt.Errorf("policy file: line %d: unterminated [ list", ln)
		}
		for _, p := range strings.Split(inner, ",") {
			q, err := unquote(strings.TrimSpace(p), ln)
			if err != nil {
				return "", err
			}
			if q != "" {
				items = append(items, q)
			}
		}
		return strings.Join(items, "\n"), nil
	}
	return unquote(inline, ln)
}

func unquote(s string, ln int) (string, error) {
	if len(s) >= 1 && (s[0] == '"' || s[0] == '\'') {
		if len(s) < 2 || s[len(s)-1] != s[0] {
			return "", fmt.Errorf("policy file: line %d: unterminated quote", ln)
		}
		s = s[1 : len(s)-1]
		if strings.ContainsAny(s, "\"'\\") {
			return "", fmt.Errorf("policy file: line %d: quotes or backslashes inside a quoted value are not supported", ln)
		}
	}
	return s, nil
}

// stripComment drops a '#' comment: one at the start of the line or after
// white space, outside quotes.
func stripComment(s string) string {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return s[:i]
		}
	}
	return s
}
