package proc

import "testing"

func TestParseContainerID(t *testing.T) {
	const id = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"
	for _, tc := range []struct{ cgroup, want string }{
		{"0::/system.slice/docker-" + id + ".scope\n", "3f4e5d6c7b8a"},                      // cgroup v2, systemd driver
		{"12:pids:/docker/" + id + "\n1:name=systemd:/docker/" + id + "\n", "3f4e5d6c7b8a"}, // v1, cgroupfs driver
		{"0::/machine.slice/libpod-" + id + ".scope/container\n", "3f4e5d6c7b8a"},           // podman
		{"0::/user.slice/user-1001.slice/session-1.scope\n", ""},
		{"0::/docker-" + id[:40] + ".scope\n", ""}, // not a full ID
		{"0::/system.slice/docker.service\n", ""},
	} {
		if got := parseContainerID([]byte(tc.cgroup)); got != tc.want {
			t.Errorf("parseContainerID(%q) = %q, want %q", tc.cgroup, got, tc.want)
		}
	}
}
