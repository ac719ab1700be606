package host

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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

// disableSudo moves every /etc/sudoers.d file with a rule for user into
// hostDir/sudoers.d.disabled. It returns the moved files, and warnings for
// rules it leaves (group rules in /etc/sudoers).
func disableSudo(root, hostDir, user string) (moved, warn []string, err error) {
	dir := filepath.Join(root, "etc/sudoers.d")
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("host: disable sudo: %w", err)
	}
	dst := filepath.Join(hostDir, "sudoers.d.disabled")
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(p)
		if err != nil {
			return moved, warn, fmt.Errorf("host: disable sudo: %w", err)
		}
		if !grantsUser(string(b), user) {
			continue
		}
		if err := os.MkdirAll(dst, 0o700); err != nil {
			return moved, warn, fmt.Errorf("host: disable sudo: %w", err)
		}
		if err := os.Rename(p, filepath.Join(dst, e.Name())); err != nil {
			return moved, warn, fmt.Errorf("host: disable sudo: %w", err)
		}
		moved = append(moved, "/etc/sudoers.d/"+e.Name())
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/sudoers")); err == nil && grantsUser(string(b), user) {
		warn = append(warn, fmt.Sprintf("/etc/sudoers itself has a rule for %s; left in place", user))
	}
	return moved, warn, nil
}

// grantsUser is sudowatch's: the rules taken and the rules watched for are one.
var grantsUser = sudowatch.GrantsUser
