package sudowatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrNoSudo is SudoList's error when there is no sudo to ask.
var ErrNoSudo = errors.New("sudowatch: no sudo binary")

// SudoList asks sudo itself whether user may run anything (`sudo -n -l
// -U user`, as root, in the C locale): the authority over aliases, groups
// and includes that Scan only reads. granted is false when sudo says the
// user "is not allowed to run sudo"; an answer it cannot read is an error.
func SudoList(ctx context.Context, user string) (granted bool, err error) {
	return SudoListIn(ctx, nil, user)
}

// SudoListIn is SudoList with sudo run under wrap: ["chroot", root] asks
// the sudo of another root (the VM's, from the Action's container); tests
// use a mount namespace of their own. sudo is looked up in that root.
func SudoListIn(ctx context.Context, wrap []string, user string) (bool, error) {
	bin := "/usr/bin/sudo"
	if len(wrap) == 2 && wrap[0] == "chroot" {
		if _, err := os.Stat(filepath.Join(wrap[1], bin)); err != nil {
			return false, ErrNoSudo
		}
	} else if p, err := exec.LookPath("sudo"); err != nil {
		return false, ErrNoSudo
	} else {
		bin = p
	}
	argv := append(append(wrap[:len(wrap):len(wrap)], bin), "-n", "-l", "-U", user)
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Env = []string{"LC_ALL=C", "LANG=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	out, runErr := c.CombinedOutput()
	text := string(out)
	switch {
	case strings.Contains(text, "is not allowed to run sudo"):
		return false, nil
	case strings.Contains(text, "may run the following commands"):
		return true, nil
	}
	return false, fmt.Errorf("sudowatch: sudo -l -U %s: %v: %q", user, runErr, strings.TrimSpace(text))
}
