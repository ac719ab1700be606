// SPDX-License-Identifier: GPL-2.0
/*
 * Who signals the agent. The signal_generate tracepoint runs in the
 * sender, as the signal is queued: for each signal sent to a watched
 * process (the agent's pid, in `watched`) by another process, the
 * sender's tgid, uid, parent and names go to `kills`, keyed by target and
 * signal. The maps and the link are pinned, so the record outlives the
 * agent a SIGKILL ends, and its restarted successor reads who did it.
 * The program only observes.
 */
#include <linux/bpf.h>
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "killwatch.h"

char LICENSE[] SEC("license") = "GPL";

#define SIGKILL 9
#define SIGCHLD 17
#define SIGURG 23
#define SIGWINCH 28

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct kw_proc);
	__type(value, __u8);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct kw_key);
	__type(value, struct kw_kill);
} kills SEC(".maps");

#define MAX_LEVEL 32 /* MAX_PID_NS_LEVEL */

/* level_of reads the pid level of task's thread group and the upid there. */
static __always_inline unsigned int level_of(struct task_struct *task, struct pid **pidp)
{
	struct pid *pid = BPF_CORE_READ(task, group_leader, thread_pid);
	*pidp = pid;
	if (!pid)
		return 0;
	return BPF_CORE_READ(pid, level);
}

/* upid_at reads pid's number at level. */
static __always_inline struct kw_proc upid_at(struct pid *pid, unsigned int level)
{
	struct kw_proc p = {};
	struct upid u = {};
	if (!pid || level >= MAX_LEVEL)
		return p;
	if (bpf_core_read(&u, sizeof(u), &pid->numbers[level]) == 0) {
		p.pid = u.nr;
		p.ns = BPF_CORE_READ(u.ns, ns.inum);
	}
	return p;
}

/* Force the generated Go types. */
const struct kw_key *unused_key __attribute__((unused));

SEC("tp_btf/signal_generate")
int BPF_PROG(on_signal, int sig, struct kernel_siginfo *info, struct task_struct *task, int group, int result)
{
	struct pid *tpid;
	unsigned int tlevel = level_of(task, &tpid);
	struct kw_key k = {.sig = sig};
	k.target = upid_at(tpid, tlevel);
	if (!k.target.pid || !bpf_map_lookup_elem(&watched, &k.target))
		return 0;
	/* Not what a process gets in its normal life: a child's end, Go's
	 * own preemption signal, a terminal resize. */
	if (sig == SIGCHLD || sig == SIGURG || sig == SIGWINCH)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	__u32 global = id >> 32;
	if (global == (__u32)BPF_CORE_READ(task, tgid))
		return 0; /* its own (a fault, its runtime) */
	/* Raised by the kernel itself (the OOM killer, a timer, a hangup):
	 * whatever process runs then did not send it. SEND_SIG_PRIV is
	 * info == 1; else si_code, the third int of every siginfo (the
	 * layout is ABI), is positive for the kernel's own (SI_KERNEL) and
	 * SI_USER (0) or negative for kill(2), tgkill and sigqueue. */
	__u32 kernel = 0;
	if ((unsigned long)info <= 1) {
		kernel = (unsigned long)info == 1;
	} else {
		int code = 0;
		bpf_probe_read_kernel(&code, sizeof(code), (char *)info + 8);
		kernel = code > 0;
	}
	bool delivered = result != 1 && result != 3; /* not IGNORED, not OVERFLOW_FAIL */
	struct kw_kill v = {};
	struct kw_kill *old = bpf_map_lookup_elem(&kills, &k);
	if (old) {
		if (old->result != 1 && old->result != 3 && !delivered) {
			/* Keep who did it: a signal sent after the deed (a SIGKILL
			 * to the dead agent) only counts. */
			__sync_fetch_and_add(&old->count, 1);
			return 0;
		}
		v.count = old->count;
	}
	v.count++;
	v.kernel = kernel;
	v.global = global;
	v.sender_tid = (__u32)id;
	v.uid = (__u32)bpf_get_current_uid_gid();
	v.ktime = bpf_ktime_get_ns();
	v.result = result;
	bpf_get_current_comm(v.comm, sizeof(v.comm));
	struct task_struct *cur = (struct task_struct *)bpf_get_current_task_btf();
	BPF_CORE_READ_STR_INTO(&v.pcomm, cur, real_parent, comm);
	/* The sender and its parent as the target's namespace names them. */
	struct pid *spid;
	unsigned int slevel = level_of(cur, &spid);
	if (slevel >= tlevel) {
		struct kw_proc s = upid_at(spid, tlevel);
		if (s.ns == k.target.ns) {
			v.sender = s.pid;
			struct pid *ppid;
			unsigned int plevel = level_of(BPF_CORE_READ(cur, real_parent), &ppid);
			if (plevel >= tlevel) {
				struct kw_proc p = upid_at(ppid, tlevel);
				if (p.ns == k.target.ns)
					v.ppid = p.pid;
			}
		}
	}
	bpf_map_update_elem(&kills, &k, &v, BPF_ANY);
	/* The agent is dead once a SIGKILL reaches it: what is sent to its
	 * pid later (reused by another process) is not about it. */
	if (sig == SIGKILL && delivered)
		bpf_map_delete_elem(&watched, &k.target);
	return 0;
}
