package host

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/harden-runner/harden-runner/sudowatch"
)

// disable-sudo: the runner user's sudo rights moved aside.

// userName resolves "#UID" through the VM's /etc/passwd; a name is returned as is.
func userName(root, user string) (string, error) {
	uid, ok := strings.CutPrefix(user, "#")
	if !ok {
		return user, nil
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil {
		return "", fmt.Errorf("host: disable sudo: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) > 2 && f[2] == uid {
			return f[0], nil
		}
	}
	return "", fmt.Errorf("host: disable sudo: no user with uid %s in /etc/passwd", uid)
}

// disableSudo moves every /etc/sudoers.d file with a rule for user (by
// name, uid, group or alias: sudowatch.Scan) into
// hostDir/sudoers.d.disabled, and returns the moved files. A rule it
// cannot move (in /etc/sudoers, or a file that includes) is an error
// naming it: disable-sudo then does not hold, and the step must say so
// rather than pass. Where the VM has a sudo binary, sudo itself is asked
// last (sudo -l -U, chrooted into root by the kernel); if it still lists rules for the
// user, that is an error too. warn says what could not be asked.
func disableSudo(root, hostDir, user string) (moved, warn []string, err error) {
	u := sudowatch.LookupUser(root, user)
	dst := filepath.Join(hostDir, "sudoers.d.disabled")
	for _, g := range sudowatch.Scan(root, u) {
		dir, name := path.Split(g.File)
		if dir != "/etc/sudoers.d/" || slices.Contains(moved, g.File) {
			continue
		}
		if err := os.MkdirAll(dst, 0o700); err != nil {
			return moved, warn, fmt.Errorf("host: disable sudo: %w", err)
		}
		if err := os.Rename(filepath.Join(root, "etc/sudoers.d", name), filepath.Join(dst, name)); err != nil {
			return moved, warn, fmt.Errorf("host: disable sudo: %w", err)
		}
		moved = append(moved, g.File)
	}
	var left []string
	for _, g := range sudowatch.Scan(root, u) {
		left = append(left, fmt.Sprintf("%s line %d (%s)", g.File, g.Line, g.Rule))
	}
	if len(left) > 0 {
		return moved, warn, fmt.Errorf("host: disable sudo: %s keeps sudo rights from rules that are not in /etc/sudoers.d: %s; remove them (or the user from the group they name) before this step",
			user, strings.Join(left, "; "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch granted, err := sudowatch.SudoListIn(ctx, root, user); {
	case errors.Is(err, sudowatch.ErrNoSudo):
	case err != nil:
		warn = append(warn, "disable-sudo: could not ask sudo whether rules are left: "+err.Error())
	case granted:
		return moved, warn, fmt.Errorf("host: disable sudo: sudo -l -U %s still lists rules for the user after /etc/sudoers.d's were moved aside (from a source the files do not show, such as sssd or LDAP)", user)
	}
	return moved, warn, nil
}
