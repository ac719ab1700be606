// SPDX-License-Identifier: GPL-2.0
/*
 * Who writes a sysctl. A cgroup/sysctl program on the root cgroup runs in
 * the writing process for every sysctl read and write; for writes it
 * records the writer, keyed by the writer's network namespace and the
 * sysctl's name, in an LRU map the agent's sysctl guard asks when it
 * finds a value changed. It only observes (always returns 1: proceed).
 *
 * A separate object from lineage.c: it reads the writer's network
 * namespace through its task (bpf_get_current_task_btf), which older
 * kernels refuse in cgroup programs; then only this is lost.
 */
#include <linux/bpf.h>
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "lineage.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct lin_sysctl);
	__type(value, struct lin_owner);
} sysctl_writers SEC(".maps");

SEC("cgroup/sysctl")
int on_sysctl(struct bpf_sysctl *ctx)
{
	if (!ctx->write)
		return 1;
	struct lin_sysctl k = {};
	/* A name longer than the key is cut (-E2BIG): still recorded. */
	bpf_sysctl_get_name(ctx, k.name, sizeof(k.name), 0);
	struct task_struct *t = bpf_get_current_task_btf();
	k.netns = BPF_CORE_READ(t, nsproxy, net_ns, ns.inum);
	struct lin_owner o = {};
	__u64 id = bpf_get_current_pid_tgid();
	o.tgid = id >> 32;
	o.pid = (__u32)id;
	o.uid = (__u32)bpf_get_current_uid_gid();
	o.cgroup = bpf_get_current_cgroup_id();
	o.ktime = bpf_ktime_get_ns();
	bpf_map_update_elem(&sysctl_writers, &k, &o, BPF_ANY);
	return 1;
}
