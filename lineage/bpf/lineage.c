// SPDX-License-Identifier: GPL-2.0
/*
 * Process lineage and socket ownership, observed in the kernel.
 *
 * Every program here only observes: the tracepoint and fentry programs
 * cannot change anything, and the cgroup programs always return 1
 * (allow). They are attached machine-wide (the root cgroup), so they must
 * never deny. The one change: on_egress clears the accept_mark bit that
 * our firewall set on the packet.
 *
 * - tp_btf sched_process_exec/fork/exit: a ring buffer of process events,
 *   from which Go keeps its pid -> exe, argv, parent table.
 * - cgroup/sock_create, connect4/6, sendmsg4/6: the process that made a
 *   socket, or last connected or sent on it, in socket-local storage
 *   (not for TCP where sock_ops may ask for the current task: see
 *   tcp_current).
 * - The socket's owner is sent with the flow (protocol, local port,
 *   remote address and port) to a second ring buffer, from which Go keeps
 *   the table the agent's firewall readers look flows up in: for TCP by
 *   sock_ops TCP_CONNECT_CB (ports bound,
 *   before the SYN is sent), for unconnected UDP and UDP-Lite by
 *   cgroup/sendmsg4/6 (before the datagram is built), for connected UDP by
 *   the sock_send_length tracepoint (just after the send), and for ICMP
 *   and ICMPv6 (whose destination the socket does not hold) by the
 *   fib_table_lookup/fib6_table_lookup tracepoints of the send's route
 *   lookup, keyed by protocol and destination.
 *
 * - cgroup_skb/egress: packets of new flows to allowed destinations, which
 *   the firewall marked with accept_mark when its rule accepted them
 *   (this hook runs after netfilter's output and postrouting hooks, so it
 *   sees only packets that passed): the mark bit is cleared and the
 *   packet's flow sent to a third ring buffer. This replaced an NFLOG
 *   message per allowed flow (a packet copy, a netlink message, its
 *   parsing in Go: a tenth of the connection rate, bench/conn.sh).
 *
 * The local address is not part of the key: the hooks that run before
 * the packet exists do not know it yet (the route picks it).
 *
 * fentry/kprobe/LSM programs would see the packet itself, but need BPF
 * trampolines or kprobes, which kernels without them refuse; the hooks
 * used here need only BTF tracepoints and cgroup v2.
 */
#include <linux/bpf.h>
#include "vmlinux_min.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "lineage.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58
#define IPPROTO_UDPLITE 136

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_SCTP 132

/* Size of the local-port table; userspace may resize it before load. Its
 * LRU lists are per CPU (BPF_F_NO_COMMON_LRU): one shared list's lock and
 * free-list refills were an eighth of a connecting process's CPU time at
 * thousands of new connections a second (bench/conn.sh, perf). */
#define LIN_FLOWS 65536

/* events carries process events. An exec record is sent only as long
 * as its arguments (bpf_ringbuf_output from exec_scratch, not a reserve
 * of the whole lin_exec): 320-450 bytes for a compiler's command line
 * instead of 824, so 2 MiB hold ~5,000 execs between two reads of a
 * consumer woken per record. The ring's pages count twice in the agent's
 * RSS (mapped twice for records that wrap): 4 MiB were 8 MB of it. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 2 << 20);
} events SEC(".maps");

/* exec_scratch is where on_exec builds its record (larger than the BPF
 * stack). Per CPU: a tracepoint program is not preempted by another run
 * of itself on the same CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lin_exec);
} exec_scratch SEC(".maps");

/* sk_owner is the socket-local record: the owner and the hash of the
 * last flow copied to the flow maps (so later packets cost no update). */
struct sk_owner {
	struct lin_owner owner;
	__u64 last;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sk_owner);
} sk_owners SEC(".maps");

/* flowring carries lin_flowrec records. Flows were an LRU hash map
 * before: its updates (node allocation, eviction under the per-CPU list
 * lock) were a twentieth of a connecting process's CPU at tens of
 * thousands of connections a second, and each lookup was a system call.
 * Records are submitted without waking the reader: Go drains the ring
 * when it looks a flow up and every 100 ms, so a flow costs no wake-up.
 * 2 MiB holds 32,768 records, a third of a second at 100,000 flows/s
 * (this 2-vCPU VM makes at most 40,000 with no agent). A ring's pages are
 * mapped twice in the agent (for records that wrap), so each MiB here is
 * two of the agent's RSS: 4 MiB rings were a third of it. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 2 << 20);
} flowring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, LIN_FLOWS);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct lin_local);
	__type(value, struct lin_owner);
} locals SEC(".maps");

/* counts: [LIN_PRODUCED] events submitted to the ring buffer, [LIN_LOST]
 * events that found no room, [LIN_FLOWS_LOST] flow records that found no
 * room in flowring, [LIN_ACCEPTS_*] accepted packets (see lineage.h). Go compares the first with what it has read
 * to know that its table is current. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 5);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

/* acceptring carries lin_accept records, submitted without a wake-up
 * (drained with flowring). 1 MiB: 18,700 records, a sixth of a second at
 * 100,000 new flows a second, over the 100 ms drain. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} acceptring SEC(".maps");

/* accept_mark is the bit the firewall sets on the packets it accepted as
 * new allowed flows (set before load; 0: on_egress does nothing). */
volatile const __u32 accept_mark = 0;

/* dns_port is the agent's resolver's port (set before load; 0: none).
 * Only flows to it or to port 53 go to `locals`, the map the resolver
 * asks by local port alone: an update of an LRU map per TCP connection
 * was a twentieth of a connecting process's CPU (bench/conn.sh, perf). */
volatile const __u16 dns_port = 0;

#define DNS 53

/* tcp_current is set (before load) when the kernel lets sock_ops
 * programs ask for the current task (bpf_get_current_pid_tgid, _uid_gid
 * and _cgroup_id: all three from 6.16). TCP_CONNECT_CB runs in the
 * connecting process, so a TCP socket's owner is read there and TCP
 * sockets get no socket-local storage: its allocation, charge and free
 * were most of what these hooks cost a connecting process (bench/conn.sh,
 * perf). One exception: with TCP_FASTOPEN_CONNECT, connect() sends
 * nothing and the SYN leaves with the first write, in whichever process
 * writes first (a child handed the socket, a setuid program): such a
 * socket's connector is kept in storage by connect4/6, as on older
 * kernels for every TCP socket. */
volatile const __u8 tcp_current = 0;

/* Force the generated Go types. */
const struct lin_exec *unused_exec __attribute__((unused));
const struct lin_flowrec *unused_flowrec __attribute__((unused));
const struct lin_accept *unused_accept __attribute__((unused));

static __always_inline void count(__u32 i)
{
	__u64 *n = bpf_map_lookup_elem(&counts, &i);
	/* Atomic: a preempted program on the same CPU would lose a plain
	 * increment, and an undercount makes the table look current early. */
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void uncount(__u32 i)
{
	__u64 *n = bpf_map_lookup_elem(&counts, &i);
	if (n)
		__sync_fetch_and_add(n, -1);
}

static __always_inline void fill_task(struct lin_task *t, __u32 kind, struct task_struct *p)
{
	t->kind = kind;
	t->tgid = BPF_CORE_READ(p, tgid);
	t->ppid = BPF_CORE_READ(p, real_parent, tgid);
	t->uid = (__u32)bpf_get_current_uid_gid();
	t->ktime = bpf_ktime_get_ns();
	t->start = BPF_CORE_READ(p, group_leader, start_time);
	t->cgroup = bpf_get_current_cgroup_id();
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 zero = 0;
	struct lin_exec *e = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!e) {
		count(LIN_LOST);
		return 0;
	}
	fill_task(&e->task, LIN_EXEC, p);
	const char *fn = BPF_CORE_READ(bprm, filename);
	long n = bpf_probe_read_kernel_str(e->filename, sizeof(e->filename), fn);
	e->filename_len = n > 0 ? n - 1 : 0;
	unsigned long start = BPF_CORE_READ(p, mm, arg_start);
	unsigned long end = BPF_CORE_READ(p, mm, arg_end);
	__u64 len = end > start ? end - start : 0;
	if (len >= LIN_ARGS_MAX)
		len = LIN_ARGS_MAX - 1;
	len &= LIN_ARGS_MAX - 1;
	e->args_len = 0;
	if (len > 0 && bpf_probe_read_user(e->args, len, (void *)start) == 0)
		e->args_len = len;
	/* Counted before the record can be read (see counts), taken back if
	 * it found no room. */
	count(LIN_PRODUCED);
	__u64 size = (__u64)__builtin_offsetof(struct lin_exec, args) + (e->args_len & (LIN_ARGS_MAX - 1));
	if (bpf_ringbuf_output(&events, e, size, 0)) {
		uncount(LIN_PRODUCED);
		count(LIN_LOST);
	}
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0; /* a thread, not a process */
	struct lin_task *t = bpf_ringbuf_reserve(&events, sizeof(*t), 0);
	if (!t) {
		count(LIN_LOST);
		return 0;
	}
	fill_task(t, LIN_FORK, child);
	/* The creator, not the real parent: they differ under CLONE_PARENT,
	 * with which a process makes a sibling, a child of its own parent. A
	 * step must not make a process that looks started by the runner. */
	t->ppid = BPF_CORE_READ(parent, tgid);
	count(LIN_PRODUCED);
	bpf_ringbuf_submit(t, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	if (BPF_CORE_READ(p, pid) != BPF_CORE_READ(p, tgid))
		return 0; /* a thread */
	struct lin_task *t = bpf_ringbuf_reserve(&events, sizeof(*t), 0);
	if (!t) {
		count(LIN_LOST);
		return 0;
	}
	fill_task(t, LIN_EXIT, p);
	count(LIN_PRODUCED);
	bpf_ringbuf_submit(t, 0);
	return 0;
}

static __always_inline __u64 flow_hash(const struct lin_flow *f)
{
	const __u32 *w = (const __u32 *)f;
	__u64 h = 14695981039346656037ULL;
#pragma unroll
	for (int i = 0; i < sizeof(*f) / 4; i++) {
		h ^= w[i];
		h *= 1099511628211ULL;
	}
	return h | 1; /* never 0, which means "none yet" */
}

/* emit sends a flow and its owner to flowring. */
static __always_inline void emit(const struct lin_flow *f, const struct lin_owner *o)
{
	struct lin_flowrec *r = bpf_ringbuf_reserve(&flowring, sizeof(*r), 0);
	if (!r) {
		count(LIN_FLOWS_LOST);
		return;
	}
	__builtin_memcpy(&r->flow, f, sizeof(*f));
	__builtin_memcpy(&r->owner, o, sizeof(*o));
	bpf_ringbuf_submit(r, BPF_RB_NO_WAKEUP);
}

/* send_owner sends a flow and its owner to flowring, and a DNS flow's
 * owner to locals too. */
static __always_inline void send_owner(const struct lin_flow *f, const struct lin_owner *o)
{
	emit(f, o);
	if (f->sport && (f->dport == DNS || (dns_port && f->dport == dns_port))) {
		struct lin_local l = {};
		l.sport = f->sport;
		l.proto = f->proto;
		bpf_map_update_elem(&locals, &l, o, BPF_ANY);
	}
}

/* record sends sk's owner with the flow, once per flow. */
static __always_inline void record(struct sk_owner *o, struct lin_flow *f)
{
	__u64 h = flow_hash(f);
	if (o->last == h)
		return;
	o->last = h;
	send_owner(f, &o->owner);
}

/* current_owner fills o with the current task; false when there is none
 * (the idle task: softirq work on an idle CPU). */
static __always_inline int current_owner(struct lin_owner *o)
{
	__u64 id = bpf_get_current_pid_tgid();
	if (!id)
		return 0;
	o->tgid = id >> 32;
	o->pid = (__u32)id;
	o->uid = (__u32)bpf_get_current_uid_gid();
	o->cgroup = bpf_get_current_cgroup_id();
	o->ktime = bpf_ktime_get_ns();
	return 1;
}

static __always_inline void map4(__u8 *dst, __be32 a)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &a, 4);
}

static __always_inline bool is_mapped(const __u32 *a)
{
	return a[0] == 0 && a[1] == 0 && a[2] == bpf_htonl(0xffff);
}

/* own_if records the current process as the owner of sk; flags 0 only
 * where sk has storage already. */
static __always_inline struct sk_owner *own_if(struct bpf_sock *sk, __u64 flags)
{
	if (!sk)
		return 0;
	struct sk_owner *o = bpf_sk_storage_get(&sk_owners, sk, 0, flags);
	if (!o)
		return 0;
	current_owner(&o->owner);
	o->last = 0;
	return o;
}

/* own records the current process as the owner of sk. */
static __always_inline struct sk_owner *own(struct bpf_sock *sk)
{
	return own_if(sk, BPF_SK_STORAGE_GET_F_CREATE);
}

/* tfo_deferred: connect() on sk will leave the SYN to the first write. */
static __always_inline int tfo_deferred(struct bpf_sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
	return tp && BPF_CORE_READ_BITFIELD(tp, fastopen_connect);
}

SEC("cgroup/sock_create")
int on_sock_create(struct bpf_sock *sk)
{
	if (tcp_current && sk->protocol == IPPROTO_TCP)
		return 1; /* named in on_sockops */
	own(sk);
	return 1;
}

/* on_connect records the connecting process: in storage, except a TCP
 * socket named in on_sockops (see tcp_current). */
static __always_inline void on_connect(struct bpf_sock_addr *ctx)
{
	if (tcp_current && ctx->protocol == IPPROTO_TCP && !tfo_deferred(ctx->sk)) {
		/* A socket that was a fast-open one before (then
		 * disconnected) must not keep that connector. */
		own_if(ctx->sk, 0);
		return;
	}
	own(ctx->sk);
}

SEC("cgroup/connect4")
int on_connect4(struct bpf_sock_addr *ctx)
{
	on_connect(ctx);
	return 1;
}

SEC("cgroup/connect6")
int on_connect6(struct bpf_sock_addr *ctx)
{
	on_connect(ctx);
	return 1;
}

/* sendmsg4/6 run for unconnected UDP and UDP-Lite sends, after the
 * socket got its local port and before the datagram is built. */
SEC("cgroup/sendmsg4")
int on_sendmsg4(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct sk_owner *o = own(sk);
	if (!o || !sk)
		return 1;
	struct lin_flow f = {};
	f.proto = sk->protocol;
	f.sport = sk->src_port;
	f.dport = bpf_ntohs((__u16)ctx->user_port);
	map4(f.daddr, ctx->user_ip4);
	record(o, &f);
	return 1;
}

SEC("cgroup/sendmsg6")
int on_sendmsg6(struct bpf_sock_addr *ctx)
{
	struct bpf_sock *sk = ctx->sk;
	struct sk_owner *o = own(sk);
	if (!o || !sk)
		return 1;
	struct lin_flow f = {};
	f.proto = sk->protocol;
	f.sport = sk->src_port;
	f.dport = bpf_ntohs((__u16)ctx->user_port);
	__u32 a[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
	__builtin_memcpy(f.daddr, a, 16);
	record(o, &f);
	return 1;
}

/* TCP_CONNECT_CB runs in tcp_connect: ports bound, SYN not yet sent. */
SEC("sockops")
int on_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	/* Storage first: on older kernels every TCP socket has it, on newer
	 * ones those whose SYN waits for a write (see tcp_current). */
	struct lin_owner cur = {};
	struct sk_owner *o = bpf_sk_storage_get(&sk_owners, sk, 0, 0);
	if (!o && (!tcp_current || !current_owner(&cur)))
		return 1;
	struct lin_flow f = {};
	f.proto = IPPROTO_TCP;
	f.sport = sk->src_port;
	f.dport = bpf_ntohs((__u16)sk->dst_port);
	if (sk->family == AF_INET) {
		__u32 d = sk->dst_ip4;
		/* Keep clang from merging the two branches' loads into
		 * arithmetic on the socket pointer, which the verifier refuses. */
		asm volatile("" : "+r"(d));
		map4(f.daddr, d);
	} else {
		__u32 a[4] = {sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2], sk->dst_ip6[3]};
		__builtin_memcpy(f.daddr, a, 16);
	}
	if (o)
		record(o, &f);
	else
		send_owner(&f, &cur);
	return 1;
}

/* sock_send_length runs after every sendmsg: it names connected UDP and
 * UDP-Lite flows (sendmsg4/6 does not run for them). */
SEC("tp_btf/sock_send_length")
int BPF_PROG(on_send, struct sock *sk, int ret, int flags)
{
	/* Direct loads through the tracepoint's BTF pointers (the verifier
	 * makes them fault-safe), not bpf_probe_read_kernel: this runs after
	 * every send on the machine. */
	__u16 proto = sk->sk_protocol;
	unsigned short family = sk->__sk_common.skc_family;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	struct lin_flow f = {};
	f.proto = proto;
	switch (proto) {
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE: {
		__be16 dport = sk->__sk_common.skc_dport;
		if (!dport)
			return 0; /* unconnected: sendmsg4/6 named it */
		f.sport = sk->__sk_common.skc_num;
		f.dport = bpf_ntohs(dport);
		struct in6_addr d6 = BPF_CORE_READ(sk, __sk_common.skc_v6_daddr);
		if (family == AF_INET || is_mapped(d6.in6_u.u6_addr32))
			map4(f.daddr, sk->__sk_common.skc_daddr);
		else
			__builtin_memcpy(f.daddr, &d6, 16);
		break;
	}
	default:
		return 0;
	}
	struct sk_owner *o = bpf_sk_storage_get(&sk_owners, sk, 0, 0);
	if (!o)
		return 0;
	record(o, &f);
	return 0;
}

#define LOOPBACK_IFINDEX 1

/* icmp_owner records the current process as the sender of ICMP to daddr.
 * The route lookup of a locally sent packet (input interface loopback)
 * runs in the sending process, before the packet exists: for ICMP
 * sockets, whose destination the socket does not hold, it is the one
 * place that knows both. */
static __always_inline void icmp_owner(struct lin_flow *f)
{
	struct lin_owner o = {};
	if (current_owner(&o))
		emit(f, &o);
}

SEC("tp_btf/fib_table_lookup")
int BPF_PROG(on_fib4, __u32 tb_id, const struct flowi4 *flp)
{
	/* Every route lookup on the machine runs this: direct loads (see
	 * on_send), the cheap test first. */
	if (flp->__fl_common.flowic_proto != IPPROTO_ICMP || flp->__fl_common.flowic_iif != LOOPBACK_IFINDEX)
		return 0;
	struct lin_flow f = {};
	f.proto = IPPROTO_ICMP;
	map4(f.daddr, flp->daddr);
	icmp_owner(&f);
	return 0;
}

SEC("tp_btf/fib6_table_lookup")
int BPF_PROG(on_fib6, const void *net, const void *res, void *table, const struct flowi6 *flp)
{
	if (flp->__fl_common.flowic_proto != IPPROTO_ICMPV6 || flp->__fl_common.flowic_iif != LOOPBACK_IFINDEX)
		return 0;
	struct lin_flow f = {};
	f.proto = IPPROTO_ICMPV6;
	struct in6_addr d = BPF_CORE_READ(flp, daddr);
	__builtin_memcpy(f.daddr, &d, 16);
	icmp_owner(&f);
	return 0;
}

/* on_egress: see the header comment. The packet starts at its IP
 * header. Always returns 1 (pass): attached machine-wide. */
SEC("cgroup_skb/egress")
int on_egress(struct __sk_buff *skb)
{
	__u32 bit = accept_mark;
	if (!bit || !(skb->mark & bit))
		return 1;
	skb->mark &= ~bit;
	count(LIN_ACCEPTS_SEEN);
	__u32 l4off;
	__u8 proto;
	struct lin_accept a = {};
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		__u8 h[20];
		if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)))
			goto lost;
		l4off = (h[0] & 0xf) * 4;
		proto = h[9];
		map4(a.saddr, *(__be32 *)&h[12]);
		map4(a.daddr, *(__be32 *)&h[16]);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		__u8 h[40];
		if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)))
			goto lost;
		/* The firewall's rule matched the transport protocol, so an
		 * extension header is one it skipped: not seen here. */
		l4off = 40;
		proto = h[6];
		__builtin_memcpy(a.saddr, &h[8], 16);
		__builtin_memcpy(a.daddr, &h[24], 16);
	} else {
		return 1;
	}
	a.proto = proto;
	switch (proto) {
	case IPPROTO_TCP: {
		__u8 t[8];
		if (bpf_skb_load_bytes(skb, l4off, t, sizeof(t)))
			goto lost;
		__u8 flags;
		if (bpf_skb_load_bytes(skb, l4off + 13, &flags, 1))
			goto lost;
		a.sport = (t[0] << 8) | t[1];
		a.dport = (t[2] << 8) | t[3];
		/* Only a SYN's sequence number names the connection; a socket
		 * that set the bit itself has every segment here, and each
		 * would be a flow of its own. */
		if (flags & 0x02)
			a.isn = ((__u32)t[4] << 24) | ((__u32)t[5] << 16) | ((__u32)t[6] << 8) | t[7];
		break;
	}
	case IPPROTO_UDP:
	case IPPROTO_UDPLITE:
	case IPPROTO_SCTP: {
		__u8 t[4];
		if (bpf_skb_load_bytes(skb, l4off, t, sizeof(t)))
			goto lost;
		a.sport = (t[0] << 8) | t[1];
		a.dport = (t[2] << 8) | t[3];
		break;
	}
	default:
		/* An IPv6 packet with extension headers. */
		goto lost;
	}
	a.uid = bpf_get_socket_uid(skb);
	a.ktime = bpf_ktime_get_ns();
	if (bpf_ringbuf_output(&acceptring, &a, sizeof(a), BPF_RB_NO_WAKEUP))
		goto lost;
	return 1;
lost:
	count(LIN_ACCEPTS_LOST);
	return 1;
}
