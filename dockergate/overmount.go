package dockergate

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// overmount bind-mounts the file src (our socket, in our mount namespace)
// over dest in the mount namespace of process pid (a container's), so
// that dest there reaches src from now on. It is how a socket bind-mounted
// into a container before the gate started is put behind the gate where
// BPF LSM cannot close it: the mount that was there holds dockerd's
// socket itself, ours covers it. A process in the container needs
// CAP_SYS_ADMIN to unmount it again (docker grants it only to
// --privileged or --cap-add SYS_ADMIN containers).
//
// dest is resolved in that namespace, under its root; its last component
// is not followed if it is a symlink.
func overmount(src string, pid int, dest string) error {
	ns, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("mount namespace of pid %d: %w", pid, err)
	}
	defer unix.Close(ns)
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends in the container's namespace
		// with this goroutine (the runtime parks it if it is the main
		// thread; new threads come from its template thread).
		runtime.LockOSThread()
		errc <- func() error {
			// setns to a mount namespace needs a thread that shares
			// no filesystem state (root, cwd) with the others.
			if err := unix.Unshare(unix.CLONE_FS); err != nil {
				return fmt.Errorf("unshare CLONE_FS: %w", err)
			}
			// A detached copy of src's mount, which may be attached in
			// another namespace. It must be taken in the namespace the
			// mount belongs to: ours, or PID 1's when we run chrooted
			// into its root (the agent started without systemd).
			tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
			first := err
			if errors.Is(err, unix.EINVAL) {
				host, herr := unix.Open("/proc/1/ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if herr != nil {
					return fmt.Errorf("mount namespace of pid 1: %w", herr)
				}
				herr = unix.Setns(host, unix.CLONE_NEWNS)
				unix.Close(host)
				if herr != nil {
					return fmt.Errorf("enter the mount namespace of pid 1: %w", herr)
				}
				if tree, err = unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC); err != nil {
					return fmt.Errorf("open_tree %s in pid 1's mount namespace: %w (in ours: %v)", src, err, first)
				}
			}
			if err != nil {
				return fmt.Errorf("open_tree %s: %w", src, err)
			}
			defer unix.Close(tree)
			if err := unix.Setns(ns, unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("enter the mount namespace of pid %d: %w", pid, err)
			}
			if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dest, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				return fmt.Errorf("mount over %s in pid %d's namespace: %w", dest, pid, err)
			}
			return nil
		}()
	}()
	return <-errc
}
