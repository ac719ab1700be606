package sudowatch

import (
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// User is whom a sudoers rule may name: by name, by uid (#1001), by a
// group (%docker, %#127) or through a User_Alias of those.
type User struct {
	Name   string
	UID    string   // decimal; "" if unknown
	Groups []string // the user's groups by name, its primary group included
	GIDs   []string // the same by number
}

// LookupUser reads root's /etc/passwd and /etc/group for name. A user
// that is not there is returned with its name only.
func LookupUser(root, name string) User {
	u := User{Name: name}
	var gid string
	if b, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Split(line, ":"); len(f) > 3 && f[0] == name {
				u.UID, gid = f[2], f[3]
				break
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/group")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Split(line, ":")
			if len(f) < 4 {
				continue
			}
			if (gid != "" && f[2] == gid) || slices.Contains(strings.Split(f[3], ","), name) {
				u.Groups, u.GIDs = append(u.Groups, f[0]), append(u.GIDs, f[2])
			}
		}
	}
	return u
}

// Grant is one rule that gives a user sudo rights.
type Grant struct {
	File string // as the host names it: "/etc/sudoers", "/etc/sudoers.d/runner"
	Line int    // of the rule's first line
	Rule string // the rule, white space collapsed
}

// maxIncludeDepth is how deep @include chains are followed: sudo's own
// limit (a loop is cut here anyway: each file is read once).
const maxIncludeDepth = 128

// Scan reads the sudoers policy under root (/etc/sudoers, what it
// includes, and /etc/sudoers.d whether or not it is included) and returns
// every rule that gives u sudo rights, in the order sudo reads them. It
// errs on the side of a grant: a rule counts whatever its hosts and
// commands, a netgroup (+ng) or non-Unix group (%:g) item matches, and an
// include that cannot be read is not an error (sudo would skip it too).
func Scan(root string, u User) []Grant {
	g, _ := scanFiles(root, u)
	return g
}

// PolicyPaths returns the host paths of the files and directories the
// sudoers policy under root reads or tries to read for u (Scan's).
func PolicyPaths(root string, u User) []string {
	_, paths := scanFiles(root, u)
	return paths
}

// scanFiles is Scan that also returns the host paths of the files and
// directories it read or tried to read (an include may name one that is
// not there yet): what a watch of the policy must cover.
func scanFiles(root string, u User) ([]Grant, []string) {
	var s scanner
	s.root = root
	s.aliases = map[string][]string{}
	s.read("/etc/sudoers", 0)
	if !s.dirRead["/etc/sudoers.d"] {
		s.readDir("/etc/sudoers.d", 0)
	}
	// Aliases first, from every file: sudo wants an alias defined before
	// use, but erring towards a grant costs nothing here.
	var out []Grant
	for _, r := range s.rules {
		if s.userListMatches(r.users, u, 0) {
			out = append(out, Grant{File: r.file, Line: r.line, Rule: r.text})
		}
	}
	var paths []string
	for p := range s.read1 {
		paths = append(paths, p)
	}
	for p := range s.dirRead {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return out, paths
}

// GrantsText reports whether one sudoers text (its includes not followed)
// has a rule that gives u sudo rights, by Scan's rules.
func GrantsText(text string, u User) bool {
	var s scanner
	s.aliases = map[string][]string{}
	s.parse("", text, 0)
	for _, r := range s.rules {
		if s.userListMatches(r.users, u, 0) {
			return true
		}
	}
	return false
}

type rule struct {
	file  string
	line  int
	text  string
	users []string
}

type scanner struct {
	root    string
	aliases map[string][]string // User_Alias name -> items
	rules   []rule
	read1   map[string]bool // files read (a loop reads each once)
	dirRead map[string]bool
	// aliasVerdict is each User_Alias's verdict for the one user matched.
	aliasVerdict map[string]match
}

// read parses the file at host path p.
func (s *scanner) read(p string, depth int) {
	if depth > maxIncludeDepth || s.read1[p] {
		return
	}
	if s.read1 == nil {
		s.read1 = map[string]bool{}
	}
	s.read1[p] = true
	st, err := os.Stat(filepath.Join(s.root, p))
	if err != nil || !st.Mode().IsRegular() {
		return
	}
	b, err := os.ReadFile(filepath.Join(s.root, p))
	if err != nil {
		return
	}
	s.parse(p, string(b), depth)
}

// readDir reads the files of an @includedir the way sudo does: names
// without a '.' and not ending in '~', in lexical order.
func (s *scanner) readDir(dir string, depth int) {
	if s.dirRead == nil {
		s.dirRead = map[string]bool{}
	}
	s.dirRead[dir] = true
	ents, err := os.ReadDir(filepath.Join(s.root, dir))
	if err != nil {
		return
	}
	for _, e := range ents { // sorted by name
		if IsDropinName(e.Name()) {
			s.read(path.Join(dir, e.Name()), depth+1)
		}
	}
}

// IsDropinName reports whether sudo reads a file of this name from an
// included directory: no '.' in it and no trailing '~'.
func IsDropinName(name string) bool {
	return name != "" && !strings.Contains(name, ".") && !strings.HasSuffix(name, "~")
}

// logicalLines joins lines continued with a backslash (white space may
// follow it, as sudo allows); each comes with the number of its first
// line. Comments are cut line by line first, as sudo's lexer does: a
// comment ends at its line's end, a backslash in it continues nothing.
// An include directive's line is kept whole (its '#').
func logicalLines(text string) (lines []string, nums []int) {
	var cur strings.Builder
	start := 0
	for n, l := range strings.Split(text, "\n") {
		l = strings.TrimSuffix(l, "\r")
		if cur.Len() == 0 {
			start = n + 1
			if _, _, ok := directive(strings.TrimSpace(l)); ok {
				lines, nums = append(lines, l), append(nums, start)
				continue
			}
		}
		l = strings.TrimRight(stripComment(l), " \t")
		if continued(l) {
			cur.WriteString(l[:len(l)-1])
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(l)
		lines, nums = append(lines, cur.String()), append(nums, start)
		cur.Reset()
	}
	if cur.Len() > 0 {
		lines, nums = append(lines, cur.String()), append(nums, start)
	}
	return lines, nums
}

// continued reports whether l ends in a backslash that is not itself
// escaped (an odd number of them).
func continued(l string) bool {
	n := 0
	for n < len(l) && l[len(l)-1-n] == '\\' {
		n++
	}
	return n%2 == 1
}

// stripComment cuts a '#' comment. A '#' that starts a uid (#1001, in a
// user list), or is in double quotes, is not one.
func stripComment(l string) string {
	quoted := false
	for i := 0; i < len(l); i++ {
		switch {
		case l[i] == '\\':
			i++
			continue
		case l[i] == '"':
			quoted = !quoted
			continue
		case l[i] != '#' || quoted:
			continue
		}
		if i+1 < len(l) && isDigit(l[i+1]) && (i == 0 || strings.ContainsRune(" \t,!=:(%", rune(l[i-1]))) {
			continue // #uid, %#gid
		}
		return l[:i]
	}
	return l
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parse reads one file's text; p is its host path ("" for GrantsText).
func (s *scanner) parse(p, text string, depth int) {
	lines, nums := logicalLines(text)
	for i, raw := range lines {
		l := strings.TrimSpace(raw)
		// Include directives, old (#include) and new (@include) style.
		if d, arg, ok := directive(l); ok {
			if p == "" || arg == "" {
				continue
			}
			if !path.IsAbs(arg) {
				arg = path.Join(path.Dir(p), arg)
			}
			for _, arg := range s.expandHost(path.Clean(arg)) {
				if d == "includedir" {
					s.readDir(arg, depth)
				} else {
					s.read(arg, depth+1)
				}
			}
			continue
		}
		if l == "" {
			continue
		}
		word := l
		if j := strings.IndexAny(l, " \t"); j >= 0 {
			word = l[:j]
		}
		switch {
		case word == "Defaults" || strings.HasPrefix(word, "Defaults:") || strings.HasPrefix(word, "Defaults@") ||
			strings.HasPrefix(word, "Defaults>") || strings.HasPrefix(word, "Defaults!"):
			continue
		case word == "User_Alias":
			s.defineAliases(l[len(word):])
			continue
		case word == "Runas_Alias" || word == "Host_Alias" || word == "Cmnd_Alias" || word == "Cmd_Alias":
			continue
		}
		users := userList(l)
		if len(users) == 0 {
			continue
		}
		s.rules = append(s.rules, rule{file: p, line: nums[i], text: strings.Join(strings.Fields(l), " "), users: users})
	}
}

// directive recognizes "@include x", "@includedir x", "#include x" and
// "#includedir x".
func directive(l string) (name, arg string, ok bool) {
	if len(l) < 2 || (l[0] != '@' && l[0] != '#') {
		return "", "", false
	}
	for _, d := range []string{"includedir", "include"} {
		if rest, found := strings.CutPrefix(l[1:], d); found && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return d, includePath(strings.TrimSpace(rest)), true
		}
	}
	return "", "", false
}

// includePath is the path of a directive's argument: in double quotes,
// or up to the first blank that is not escaped; what follows (a comment)
// is not part of it.
func includePath(arg string) string {
	var b strings.Builder
	quoted := strings.HasPrefix(arg, `"`)
	if quoted {
		arg = arg[1:]
	}
	for i := 0; i < len(arg); i++ {
		c := arg[i]
		switch {
		case c == '\\' && i+1 < len(arg):
			i++
			c = arg[i]
		case quoted && c == '"', !quoted && (c == ' ' || c == '\t'):
			return b.String()
		}
		b.WriteByte(c)
	}
	return b.String()
}

// expandHost is p with sudo's %h (the host name) expanded: every name
// under root that it can stand for, since the host's name is not known
// here.
func (s *scanner) expandHost(p string) []string {
	if !strings.Contains(p, "%h") {
		return []string{p}
	}
	pat := strings.ReplaceAll(path.Clean(p), "%h", "\x00")
	pat = strings.ReplaceAll(pat, "*", `\*`)
	pat = strings.ReplaceAll(pat, "?", `\?`)
	pat = strings.ReplaceAll(pat, "[", `\[`)
	pat = strings.ReplaceAll(pat, "\x00", "*")
	matches, _ := filepath.Glob(filepath.Join(s.root, pat))
	var out []string
	for _, m := range matches {
		if rel, err := filepath.Rel(s.root, m); err == nil {
			out = append(out, "/"+filepath.ToSlash(rel))
		}
	}
	return out
}

// defineAliases parses "NAME = item, item : NAME2 = item".
func (s *scanner) defineAliases(def string) {
	for _, part := range splitUnescaped(def, ':') {
		name, list, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		s.aliases[name] = append(s.aliases[name], items(list)...)
	}
}

// userList returns the user list of a user specification: the items
// before the first white space that is not next to a comma.
func userList(l string) []string {
	if !strings.Contains(l, "=") {
		return nil
	}
	left := l
	end := len(left)
	quoted := false
	for i := 0; i < len(left); i++ {
		switch {
		case left[i] == '\\':
			i++
			continue
		case left[i] == '"':
			quoted = !quoted
			continue
		case quoted || (left[i] != ' ' && left[i] != '\t'):
			continue
		}
		// White space: the list goes on only if a comma or a '!' is
		// next to it.
		j := i
		for j < len(left) && (left[j] == ' ' || left[j] == '\t') {
			j++
		}
		prev := strings.TrimRight(left[:i], " \t")
		if strings.HasSuffix(prev, ",") || strings.HasSuffix(prev, "!") || (j < len(left) && left[j] == ',') {
			i = j - 1
			continue
		}
		end = i
		break
	}
	return items(left[:end])
}

// items splits a list on unescaped commas and trims each item.
func items(list string) []string {
	var out []string
	for _, it := range splitUnescaped(list, ',') {
		if it = strings.TrimSpace(it); it != "" {
			out = append(out, it)
		}
	}
	return out
}

func splitUnescaped(s string, sep byte) []string {
	var out []string
	start := 0
	quoted := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			quoted = !quoted
		case sep:
			if quoted {
				continue
			}
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// match is one item's verdict for a user: no opinion, allow or deny.
type match int

const (
	unspec match = iota
	allow
	deny
)

// userListMatches is sudo's rule for a user list: the last item that
// matches decides, a '!' before it turns allow into deny.
func (s *scanner) userListMatches(list []string, u User, depth int) bool {
	return s.listVerdict(list, u, depth) == allow
}

func (s *scanner) listVerdict(list []string, u User, depth int) match {
	for i := len(list) - 1; i >= 0; i-- {
		if m := s.itemVerdict(list[i], u, depth); m != unspec {
			return m
		}
	}
	return unspec
}

func (s *scanner) itemVerdict(it string, u User, depth int) match {
	neg := false
	for strings.HasPrefix(it, "!") {
		neg = !neg
		it = strings.TrimSpace(it[1:])
	}
	m := s.itemMatches(it, u, depth)
	if m != unspec && neg {
		if m == allow {
			return deny
		}
		return allow
	}
	return m
}

func (s *scanner) itemMatches(it string, u User, depth int) match {
	it = unquote(it)
	yes := func(b bool) match {
		if b {
			return allow
		}
		return unspec
	}
	switch {
	case it == "ALL":
		return allow
	case strings.HasPrefix(it, "%:"), strings.HasPrefix(it, "+"):
		return allow // non-Unix group, netgroup: cannot tell, so yes
	case strings.HasPrefix(it, "%#"):
		return yes(slices.ContainsFunc(u.GIDs, func(g string) bool { return sameID(g, it[2:]) }))
	case strings.HasPrefix(it, "%"):
		// sudo's case_insensitive_group is on by default.
		return yes(slices.ContainsFunc(u.Groups, func(g string) bool { return strings.EqualFold(g, it[1:]) }))
	case strings.HasPrefix(it, "#"):
		return yes(sameID(u.UID, it[1:]))
	}
	if list, ok := s.aliases[it]; ok {
		// Each alias once per user (Scan has one): a loop is no match,
		// and aliases of aliases cost no more than their number.
		if m, done := s.aliasVerdict[it]; done {
			return m
		}
		if s.aliasVerdict == nil {
			s.aliasVerdict = map[string]match{}
		}
		s.aliasVerdict[it] = unspec // while it is being decided
		m := s.listVerdict(list, u, depth+1)
		s.aliasVerdict[it] = m
		return m
	}
	return yes(it == u.Name)
}

// sameID compares a uid or gid from the databases with one from sudoers
// as sudo does (a number: 065534 is 65534, -2 is 4294967294).
func sameID(db, sudoers string) bool {
	a, err1 := strconv.ParseUint(db, 10, 32)
	b, err2 := strconv.ParseInt(sudoers, 10, 64)
	if err1 != nil || err2 != nil || b < -(1<<31) || b >= 1<<32 {
		return false
	}
	if b < 0 {
		b += 1 << 32
	}
	return uint64(b) == a
}

// unquote drops the double quotes and backslash escapes of a name.
func unquote(it string) string {
	if len(it) >= 2 && it[0] == '"' && it[len(it)-1] == '"' {
		it = it[1 : len(it)-1]
	}
	if !strings.Contains(it, `\`) {
		return it
	}
	var b strings.Builder
	for i := 0; i < len(it); i++ {
		if it[i] == '\\' && i+1 < len(it) {
			i++
		}
		b.WriteByte(it[i])
	}
	return b.String()
}
