package sudowatch

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// sudoersCase is one sudoers policy and what it gives the user nobody
// (uid 65534, in the extra group hrtest, gid 4242).
type sudoersCase struct {
	name    string
	sudoers string
	dropins map[string]string // /etc/sudoers.d
	want    bool
	// conservative: Scan says yes where sudo says no (a rule for
	// another host), the side Scan errs on.
	conservative bool
}

var sudoersCases = []sudoersCase{
	{"by name", "nobody ALL=(ALL) ALL\n", nil, true, false},
	{"another user", "root ALL=(ALL:ALL) ALL\n", nil, false, false},
	{"a longer name", "nobody2 ALL=(ALL) ALL\n", nil, false, false},
	{"commented out", "# nobody ALL=(ALL) ALL\n", nil, false, false},
	{"by uid", "#65534 ALL=(ALL) NOPASSWD: ALL\n", nil, true, false},
	{"by group", "%hrtest ALL=(ALL) ALL\n", nil, true, false},
	{"by gid", "%#4242 ALL=(ALL) ALL\n", nil, true, false},
	{"by primary group", "%nogroup ALL=(ALL) ALL\n", nil, true, false},
	{"a group it is not in", "%sudo ALL=(ALL) ALL\n", nil, false, false},
	{"ALL", "ALL ALL=(ALL) ALL\n", nil, true, false},
	{"ALL but it", "ALL, !nobody ALL=(ALL) ALL\n", nil, false, false},
	{"it, then ALL", "!nobody, ALL ALL=(ALL) ALL\n", nil, true, false},
	{"second in a list", "root,nobody ALL=(ALL) ALL\n", nil, true, false},
	{"list with spaces", "root , nobody ALL=(ALL) ALL\n", nil, true, false},
	{"continued line", "root, \\\n  nobody ALL=(ALL) ALL\n", nil, true, false},
	{"User_Alias", "User_Alias HR = nobody\nHR ALL=(ALL) ALL\n", nil, true, false},
	{"second alias of a line", "User_Alias A = root : B = nobody\nB ALL=(ALL) ALL\n", nil, true, false},
	{"alias of a group", "User_Alias HR = %hrtest\nHR ALL=(ALL) ALL\n", nil, true, false},
	{"alias of an alias", "User_Alias A = nobody\nUser_Alias B = A\nB ALL=(ALL) ALL\n", nil, true, false},
	{"alias excluding it", "User_Alias HR = ALL, !nobody\nHR ALL=(ALL) ALL\n", nil, false, false},
	{"negated alias", "User_Alias HR = nobody\nALL, !HR ALL=(ALL) ALL\n", nil, false, false},
	{"alias never used", "User_Alias HR = nobody\nroot ALL=(ALL) ALL\n", nil, false, false},
	{"Defaults only", "Defaults:nobody !authenticate\nDefaults env_reset\n", nil, false, false},
	{"one command", "nobody ALL=(root) /usr/bin/apt-get\n", nil, true, false},
	{"drop-in", "@includedir /etc/sudoers.d\n", map[string]string{"z": "nobody ALL=(ALL) ALL\n"}, true, false},
	{"old-style includedir", "#includedir /etc/sudoers.d\n", map[string]string{"z": "nobody ALL=(ALL) ALL\n"}, true, false},
	{"drop-in with a dot", "@includedir /etc/sudoers.d\n", map[string]string{"z.bak": "nobody ALL=(ALL) ALL\n"}, false, false},
	{"drop-in ending in ~", "@includedir /etc/sudoers.d\n", map[string]string{"z~": "nobody ALL=(ALL) ALL\n"}, false, false},
	{"named include", "@include /etc/sudoers.d/x.conf\n", map[string]string{"x.conf": "nobody ALL=(ALL) ALL\n"}, true, false},
	{"relative include", "@include sudoers.d/x.conf\n", map[string]string{"x.conf": "nobody ALL=(ALL) ALL\n"}, true, false},
	{"alias from another file", "User_Alias HR = nobody\n@includedir /etc/sudoers.d\n", map[string]string{"z": "HR ALL=(ALL) ALL\n"}, true, false},
	{"another host", "Host_Alias H = hr-no-such-host\nnobody H = (ALL) ALL\n", nil, false, true},
	// Attacks: sudo grants, Scan said no.
	{"blank after a continuing backslash", "nobody, \\ \nroot ALL=(ALL) ALL\n", nil, true, false},
	{"comment ending in a backslash", "# a comment \\\nnobody ALL=(ALL) ALL\n", nil, true, false},
	{"trailing comment ending in a backslash", "root ALL=(ALL) ALL # x\\\nnobody ALL=(ALL) ALL\n", nil, true, false},
	{"Defaults comment ending in a backslash", "Defaults env_reset # x\\\nnobody ALL=(ALL) ALL\n", nil, true, false},
	{"alias comment ending in a backslash", "User_Alias HR = root # x\\\nnobody ALL=(ALL) ALL\n", nil, true, false},
	{"quoted name with a #", "root,\"x#y\",nobody ALL=(ALL) ALL\n", nil, true, false},
	{"quoted name with a =", "root,\"a=b\",nobody ALL=(ALL) ALL\n", nil, true, false},
	{"quoted name with a space", "root,\"x y\",nobody ALL=(ALL) ALL\n", nil, true, false},
	{"blank after !", "! root, nobody ALL=(ALL) ALL\n", nil, true, false},
	{"group in upper case", "%HRTEST ALL=(ALL) ALL\n", nil, true, false},
	{"primary group in mixed case", "%NoGroup ALL=(ALL) ALL\n", nil, true, false},
	{"alias of an upper-case group", "User_Alias HR = %HRTEST\nHR ALL=(ALL) ALL\n", nil, true, false},
	{"uid with a leading zero", "#065534 ALL=(ALL) ALL\n", nil, true, false},
	{"gid with a leading zero", "%#04242 ALL=(ALL) ALL\n", nil, true, false},
	{"include with a trailing comment", "@include /etc/sudoers.d/x.conf # c\n", map[string]string{"x.conf": "nobody ALL=(ALL) ALL\n"}, true, false},
	{"quoted include with a trailing comment", "@include \"/etc/sudoers.d/x.conf\" # c\n", map[string]string{"x.conf": "nobody ALL=(ALL) ALL\n"}, true, false},
	{"include with an escaped blank", "@include /etc/sudoers.d/a\\ b.conf\n", map[string]string{"a b.conf": "nobody ALL=(ALL) ALL\n"}, true, false},
	{"include of %h", "@include /etc/sudoers.d/x.%h\n", map[string]string{"x." + shortHost(): "nobody ALL=(ALL) ALL\n"}, true, false},
	{"includes 12 deep", "@include /etc/sudoers.d/1.c\n", includeChain(12), true, false},
	{"aliases 12 deep", aliasChain(12), nil, true, false},
	{"a line over 1 MiB before the rule", "# " + strings.Repeat("x", 1100000) + "\nnobody ALL=(ALL) ALL\n", nil, true, false},
}

// TestScan checks Scan against the table without sudo.
func TestScan(t *testing.T) {
	for _, c := range sudoersCases {
		t.Run(c.name, func(t *testing.T) {
			root := sudoersRoot(t, c)
			got := len(Scan(root, LookupUser(root, "nobody"))) > 0
			if want := c.want || c.conservative; got != want {
				t.Errorf("Scan: grant %v, want %v; rules %v", got, want, Scan(root, LookupUser(root, "nobody")))
			}
		})
	}
}

// TestScanAgreesWithSudo asks sudo itself (sudo -l -U nobody) about each
// policy, made /etc/sudoers in a mount namespace of its own: the table's
// answers are sudo's, not ours.
func TestScanAgreesWithSudo(t *testing.T) {
	if _, err := exec.LookPath("sudo"); err != nil {
		t.Skip("needs sudo")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, c := range sudoersCases {
		t.Run(c.name, func(t *testing.T) {
			root := sudoersRoot(t, c)
			etc := filepath.Join(root, "etc")
			wrap := []string{"unshare", "--mount", "--propagation", "private", "sh", "-ec",
				`mount --bind "$1" /etc/sudoers; mount --bind "$2" /etc/sudoers.d; mount --bind "$3" /etc/group; shift 3; exec "$@"`,
				"sh", filepath.Join(etc, "sudoers"), filepath.Join(etc, "sudoers.d"), filepath.Join(etc, "group")}
			got, err := sudoList(context.Background(), "/", wrap, "nobody")
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("sudo says %v, the table %v", got, c.want)
			}
		})
	}
}

// sudoersRoot writes c's files, and the machine's passwd and group with
// nobody added to hrtest, under a new root.
func sudoersRoot(t *testing.T, c sudoersCase) string {
	t.Helper()
	root := t.TempDir()
	etc := filepath.Join(root, "etc")
	write := func(p, text string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(etc, "sudoers.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(etc, "sudoers"), c.sudoers, 0o440)
	for name, text := range c.dropins {
		write(filepath.Join(etc, "sudoers.d", name), text, 0o440)
	}
	passwd, _ := os.ReadFile("/etc/passwd")
	group, _ := os.ReadFile("/etc/group")
	write(filepath.Join(etc, "passwd"), string(passwd), 0o644)
	write(filepath.Join(etc, "group"), string(group)+"hrtest:x:4242:nobody\n", 0o644)
	return root
}

// shortHost is the host name as sudo's %h has it: without the domain.
func shortHost() string {
	h, _ := os.Hostname()
	h, _, _ = strings.Cut(h, ".")
	return h
}

// includeChain is n drop-ins with dots (so only an include reads them),
// each including the next, the last with the rule.
func includeChain(n int) map[string]string {
	m := map[string]string{}
	for i := 1; i < n; i++ {
		m[strconv.Itoa(i)+".c"] = "@include /etc/sudoers.d/" + strconv.Itoa(i+1) + ".c\n"
	}
	m[strconv.Itoa(n)+".c"] = "nobody ALL=(ALL) ALL\n"
	return m
}

// aliasChain is n User_Aliases, each of the one before, the first of
// nobody, and a rule for the last.
func aliasChain(n int) string {
	text := "User_Alias A1 = nobody\n"
	for i := 2; i <= n; i++ {
		text += "User_Alias A" + strconv.Itoa(i) + " = A" + strconv.Itoa(i-1) + "\n"
	}
	return text + "A" + strconv.Itoa(n) + " ALL=(ALL) ALL\n"
}

// TestSudoListInChroot asks the machine's sudo through a chroot the kernel
// makes (the Action's image has no chroot binary): root may run
// everything by the stock /etc/sudoers, nobody nothing.
func TestSudoListInChroot(t *testing.T) {
	if _, err := os.Stat("/usr/bin/sudo"); err != nil {
		t.Skip("needs sudo")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	t.Setenv("PATH", "/nonexistent") // nothing of ours is looked up
	for user, want := range map[string]bool{"root": true, "nobody": false} {
		got, err := SudoListIn(context.Background(), "/proc/self/root", user)
		if err != nil || got != want {
			t.Errorf("SudoListIn(%s) = %v, %v; want %v", user, got, err, want)
		}
	}
}
