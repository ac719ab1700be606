/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types killwatch.c reads, cut from
 * `bpftool btf dump file /sys/kernel/btf/vmlinux format c` (kernel 6.18);
 * preserve_access_index makes each field access a CO-RE relocation (see
 * lineage/bpf/vmlinux_min.h).
 */
#ifndef KILLWATCH_VMLINUX_MIN_H
#define KILLWATCH_VMLINUX_MIN_H

#include <linux/types.h>

typedef __u32 u32;
typedef __u64 u64;
typedef int pid_t;
typedef _Bool bool;

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct ns_common {
	unsigned int inum;
};

struct pid_namespace {
	struct ns_common ns;
};

struct upid {
	int nr;
	struct pid_namespace *ns;
};

struct pid {
	unsigned int level;
	struct upid numbers[1];
};

struct task_struct {
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct pid *thread_pid;
	char comm[16];
};

struct kernel_siginfo;

#pragma clang attribute pop

#endif
