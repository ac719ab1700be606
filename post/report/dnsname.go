package report

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// displayName turns a DNS name as the journal holds it into the name the
// query carried, for the summary. The resolver records names in the DNS
// presentation format (RFC 1035 section 5.1, as miekg/dns writes them):
// inside a label, '.', ' ', '\”, '@', ';', '(', ')', '"' and '\' are
// backslash-escaped and bytes outside printable ASCII are written \DDD, so
// a query for <script>alert(1)</script>.exfil.test is journaled as
// <script>alert\(1\)</script>.exfil.test. displayName undoes that, so a
// reader sees the name byte for byte, except where the bytes themselves
// would mislead: a '.' or '\' inside a label stays \. and \\ (else a
// reader could not tell it from a label separator or an escape), and a
// byte that is a control character or not part of valid UTF-8 stays
// \DDD. A name without backslashes comes back unchanged; a backslash that
// starts no escape (at the end, or \1 without three digits) is shown as
// \\. report.json keeps the journal's text.
func displayName(name string) string {
	if !strings.Contains(name, `\`) {
		return name
	}
	var out strings.Builder
	var label []byte
	flush := func() {
		writeLabel(&out, label)
		label = label[:0]
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '.':
			flush()
			out.WriteByte('.')
		case c != '\\':
			label = append(label, c)
		case i+3 < len(name) && isDigits(name[i+1:i+4]):
			n, _ := strconv.Atoi(name[i+1 : i+4])
			if n > 255 {
				label = append(label, '\\')
				continue
			}
			label = append(label, byte(n))
			i += 3
		case i+1 < len(name) && !isDigit(name[i+1]):
			label = append(label, name[i+1])
			i++
		default: // a dangling or malformed escape: the backslash itself
			label = append(label, '\\')
		}
	}
	flush()
	return out.String()
}

// writeLabel writes one label's bytes for display (see displayName).
func writeLabel(b *strings.Builder, label []byte) {
	for len(label) > 0 {
		r, n := utf8.DecodeRune(label)
		switch {
		case r == utf8.RuneError && n <= 1, r < 0x20, r == 0x7f:
			b.WriteByte('\\')
			b.WriteString(pad3(label[0]))
			n = 1
		case r == '.' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.Write(label[:n])
		}
		label = label[n:]
	}
}

func pad3(c byte) string {
	s := strconv.Itoa(int(c))
	return strings.Repeat("0", 3-len(s)) + s
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}
