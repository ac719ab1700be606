/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The few kernel types lineage.c reads, cut from
 * `bpftool btf dump file /sys/kernel/btf/vmlinux format c` (kernel 6.18).
 * preserve_access_index makes every field access a CO-RE relocation, so
 * the loader fixes the offsets for the running kernel; only the field
 * names must exist there. A hand-cut header (not the 2.8 MB dump) keeps
 * `go generate` reproducible on any build machine. The BPF UAPI types
 * (struct __sk_buff, bpf_sock_addr, ...) come from <linux/bpf.h>.
 */
#ifndef LINEAGE_VMLINUX_MIN_H
#define LINEAGE_VMLINUX_MIN_H

#include <linux/types.h>

typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef int pid_t;
typedef _Bool bool;

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
};

struct ns_common {
	unsigned int inum;
};

struct net {
	struct ns_common ns;
};

struct nsproxy {
	struct net *net_ns;
};

struct task_struct {
	pid_t pid;
	pid_t tgid;
	u64 start_time;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	struct mm_struct *mm;
	struct nsproxy *nsproxy;
};

struct linux_binprm {
	const char *filename;
};

struct in6_addr {
	union {
		__u8 u6_addr8[16];
		__be32 u6_addr32[4];
	} in6_u;
};

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
};

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
};

struct tcp_sock {
	u8 fastopen_connect : 1;
};

struct flowi_common {
	int flowic_iif;
	__u8 flowic_proto;
};

struct flowi4 {
	struct flowi_common __fl_common;
	__be32 daddr;
};

struct flowi6 {
	struct flowi_common __fl_common;
	struct in6_addr daddr;
};

#pragma clang attribute pop

#endif
