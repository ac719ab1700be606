/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The record killwatch.c keeps for Go (bpf2go generates the Go type from
 * it, -type kw_kill). Version 1.
 */
#ifndef KILLWATCH_H
#define KILLWATCH_H

#define KW_COMM 16

/* kw_proc is a process as its own (innermost) pid namespace names it:
 * the agent may run in a pid namespace of its own (a container, a VM's
 * init), where getpid is not the kernel's global tgid. */
struct kw_proc {
	__u32 ns;  /* inode number of the pid namespace */
	__u32 pid; /* its tgid there */
};

/* kw_key names one signal sent to one watched process. */
struct kw_key {
	struct kw_proc target;
	__u32 sig;
};

/* kw_kill is who sent it, last time it was sent. */
struct kw_kill {
	/* The sender as the target's pid namespace names it; 0 when it is
	 * outside that namespace (then only global is known). */
	__u32 sender;
	__u32 global; /* the sender's tgid in the initial pid namespace */
	__u32 sender_tid;
	__u32 uid;
	__u32 ppid;   /* the sender's parent, named as sender is (0: outside) */
	__u64 ktime;  /* CLOCK_MONOTONIC ns */
	__s32 result; /* enum trace_signal_generate result (1: ignored, 3: overflow) */
	__u32 count;  /* how many times it was sent */
	__u32 kernel; /* 1: raised by the kernel itself (OOM killer, ...) */
	__u32 pad;
	char comm[KW_COMM];
	char pcomm[KW_COMM]; /* the parent's */
};

#endif
