//go:build ignore

// The kernel side of package lsm: a BPF LSM hook on unix_stream_connect
// that refuses connections to the guarded listening sockets (dockerd's,
// by sockfs inode) to every process but the allowed ones (the agent, by
// its pid in its own PID namespace), and records each refusal.

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

// Only the fields used, relocated by CO-RE against the kernel's BTF.
struct inode {
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct socket {
	short type;
} __attribute__((preserve_access_index));

// struct socket_alloc { struct socket socket; struct inode vfs_inode; }:
// the socket comes first, so a socket's address is its socket_alloc's.
struct socket_alloc {
	struct socket socket;
	struct inode vfs_inode;
} __attribute__((preserve_access_index));

struct sock {
	struct socket *sk_socket;
} __attribute__((preserve_access_index));

// Config: the PID namespace whose pids "allowed" names.
struct config {
	__u64 ns_dev;
	__u64 ns_ino;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

// Sockfs inode numbers of the guarded listening sockets.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u64);
	__type(value, __u8);
} guarded SEC(".maps");

// Pids (in the config's namespace) that may connect.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} allowed SEC(".maps");

// A refused connect. The pid is the init namespace's; nspid the config
// namespace's, 0 when the process is in another (a container).
struct denial {
	__u64 ino;
	__u64 cgroup;
	__u32 pid;
	__u32 nspid;
	__u32 uid;
	__u8 comm[16];
	__u8 pad[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} denials SEC(".maps");

// Denials the ring buffer had no room for.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lost SEC(".maps");

const struct denial *unused __attribute__((unused));

SEC("lsm/unix_stream_connect")
int BPF_PROG(guard_connect, struct sock *sock, struct sock *other, struct sock *newsk, int ret)
{
	if (ret)
		return ret;
	struct socket *s = BPF_CORE_READ(other, sk_socket);
	if (!s)
		return 0;
	struct socket_alloc *sa = (struct socket_alloc *)s;
	__u64 ino = BPF_CORE_READ(sa, vfs_inode.i_ino);
	if (!bpf_map_lookup_elem(&guarded, &ino))
		return 0;
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return -1;
	struct bpf_pidns_info ns = {};
	__u32 nspid = 0;
	if (bpf_get_ns_current_pid_tgid(cfg->ns_dev, cfg->ns_ino, &ns, sizeof(ns)) == 0) {
		nspid = ns.tgid;
		if (bpf_map_lookup_elem(&allowed, &nspid))
			return 0;
	}
	struct denial *d = bpf_ringbuf_reserve(&denials, sizeof(*d), 0);
	if (!d) {
		__u64 *n = bpf_map_lookup_elem(&lost, &zero);
		if (n)
			__sync_fetch_and_add(n, 1);
		return -1; /* -EPERM */
	}
	d->ino = ino;
	d->cgroup = bpf_get_current_cgroup_id();
	d->pid = bpf_get_current_pid_tgid() >> 32;
	d->nspid = nspid;
	d->uid = (__u32)bpf_get_current_uid_gid();
	bpf_get_current_comm(d->comm, sizeof(d->comm));
	bpf_ringbuf_submit(d, 0);
	return -1; /* -EPERM */
}
