/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The records lineage.c hands to Go: ring-buffer events about processes
 * and flows, and the socket-owner map. bpf2go generates the Go types from these
 * (-type), so this header is their one definition. Version 1.
 */
#ifndef LINEAGE_H
#define LINEAGE_H

#define LIN_FILENAME_MAX 256
#define LIN_ARGS_MAX 512 /* a power of two: sizes are masked with it */

enum lin_count {
	LIN_PRODUCED = 0,
	LIN_LOST = 1,
	LIN_FLOWS_LOST = 2, /* flow records that found the flow ring full */
	LIN_ACCEPTS_LOST = 3, /* accepted packets not recorded: ring full, unreadable headers */
	LIN_ACCEPTS_SEEN = 4, /* packets that carried accept_mark, recorded or not */
};

enum lin_kind {
	LIN_EXEC = 1,
	LIN_FORK = 2,
	LIN_EXIT = 3,
};

/* lin_task is every process event; exec events carry a lin_exec. */
struct lin_task {
	__u32 kind;   /* enum lin_kind */
	__u32 tgid;   /* global (initial pid namespace) */
	__u32 ppid;   /* real parent's tgid; for LIN_FORK the creator's (CLONE_PARENT) */
	__u32 uid;
	__u64 ktime;  /* CLOCK_MONOTONIC ns of the event */
	__u64 start;  /* task start_time (monotonic ns): pid + start name one process */
	__u64 cgroup; /* cgroup v2 id */
};

struct lin_exec {
	struct lin_task task;
	__u32 filename_len;
	__u32 args_len;
	char filename[LIN_FILENAME_MAX];
	char args[LIN_ARGS_MAX]; /* NUL-separated, cut at LIN_ARGS_MAX */
};

/* lin_owner is who made a socket or last connected/sent on it. */
struct lin_owner {
	__u32 tgid;
	__u32 pid; /* thread */
	__u32 uid;
	__u32 pad;
	__u64 cgroup;
	__u64 ktime; /* when this owner was recorded */
};

/* lin_flow is a flow: the remote address (16 bytes, IPv4 as IPv4-mapped
 * IPv6), the local and remote port in host order, the IP protocol. ICMP
 * and ICMPv6 have ports 0. */
struct lin_flow {
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* lin_flowrec is a flow ring record: the flow and who sent it. */
struct lin_flowrec {
	struct lin_flow flow;
	struct lin_owner owner;
};

/* lin_accept is a packet the firewall accepted as the first of a new flow
 * to an allowed destination (it set accept_mark on it): its addresses
 * (IPv4 as IPv4-mapped IPv6), ports in host order, IP protocol, a TCP
 * SYN's sequence number (a retransmitted SYN has the same; 0 for TCP
 * without SYN, which conntrack took as new mid-stream), the socket's
 * uid and when it left. */
struct lin_accept {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 pad[3];
	__u32 isn;
	__u32 uid; /* the socket's owner (bpf_get_socket_uid) */
	__u64 ktime;
};

/* lin_sysctl names a sysctl written in a network namespace: the
 * namespace's inode number and the name as /proc/sys spells it
 * ("net/ipv4/conf/all/route_localnet"), cut at 63 bytes. */
#define LIN_SYSCTL_NAME 64
struct lin_sysctl {
	__u32 netns;
	char name[LIN_SYSCTL_NAME];
};

/* lin_local is a socket's local port, for lookups that know no remote. */
struct lin_local {
	__u16 sport;
	__u8 proto;
	__u8 pad;
};

#endif
