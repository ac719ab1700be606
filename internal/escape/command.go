package escape

import (
	"strings"

	"github.com/sethvargo/go-githubactions"
)

// Command formats one workflow command line, e.g.
// Command("error", map[string]string{"title": t}, msg) →
// "::error title=...::msg", with go-githubactions' escaping of the
// property values and the message (the runner's own rules), so no data
// can end the command early nor start another line. Properties are
// written in key order; keys that are not plain ASCII letters or digits
// are dropped (go-githubactions does not escape keys). name must be a
// literal command name.
func Command(name string, props map[string]string, message string) string {
	cmd := githubactions.Command{Name: name, Message: message}
	for k, v := range props {
		if isIdent(k) {
			if cmd.Properties == nil {
				cmd.Properties = githubactions.CommandProperties{}
			}
			cmd.Properties[k] = v
		}
	}
	return cmd.String()
}

// CommandData escapes the message part of a workflow command the way the
// runner expects: '%' → %25, CR → %0D, LF → %0A.
func CommandData(s string) string {
	return dataEscaper.Replace(s)
}

// dataEscaper has the rules of go-githubactions' unexported escapeData
// (TestCommandDataMatchesLibrary holds them together).
var dataEscaper = strings.NewReplacer("%", "%25", "\r", "%0D", "\n", "%0A")

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
