package sudowatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrNoSudo is SudoList's error when there is no sudo to ask.
var ErrNoSudo = errors.New("sudowatch: no sudo binary")

// SudoList asks sudo itself whether user may run anything (`sudo -n -l
// -U user`, as root, in the C locale): the authority over aliases, groups
// and includes that Scan only reads. granted is false when sudo says the
// user "is not allowed to run sudo"; an answer it cannot read is an error.
func SudoList(ctx context.Context, user string) (granted bool, err error) {
	return sudoList(ctx, "/", nil, user)
}

// SudoListIn is SudoList for the sudo of another root (the VM's, from the
// Action's container). The kernel chroots the process (SysProcAttr), so
// no chroot binary is needed: the Action's image has none.
func SudoListIn(ctx context.Context, root, user string) (bool, error) {
	return sudoList(ctx, root, nil, user)
}

// sudoList runs sudo from root under wrap (tests: a mount namespace of
// their own, with root "/").
func sudoList(ctx context.Context, root string, wrap []string, user string) (bool, error) {
	chroot := root != "" && filepath.Clean(root) != "/"
	bin := "/usr/bin/sudo"
	if chroot {
		if _, err := os.Stat(filepath.Join(root, bin)); err != nil {
			return false, ErrNoSudo
		}
	} else if p, err := exec.LookPath("sudo"); err != nil {
		return false, ErrNoSudo
	} else {
		bin = p
	}
	argv := append(append(wrap[:len(wrap):len(wrap)], bin), "-n", "-l", "-U", user)
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if chroot {
		// bin is root's: exec looked it up here, where it need not be.
		c.Path, c.Err = bin, nil
		c.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		c.Dir = "/"
	}
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
