package proc

// ContainerID returns the short ID of the container pid runs in, read from
// its cgroup (which a process cannot leave for a container's without
// root), or "" for a process in no container.
func ContainerID(pid int) string { return containerID(pid) }
