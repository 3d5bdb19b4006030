/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Types shared by the BPF programs and the userspace tools of bpf/.
 *
 * Only __u8.. __u64 are used, so this header compiles both in BPF programs
 * (after vmlinux.h) and in userspace (after <linux/types.h>).
 *
 * The contract with the module is module/dm-user-trace.h: tracepoints whose
 * arguments are all scalars.  The tools attach dm_user_complete, whose
 * queue_ns, daemon_ns and total_ns (target version >= 1.3.0) are the stage
 * latencies the module measured, and dm_user_map where they sample the queue
 * depth.  Nothing here needs a type of the module.
 */
#ifndef __DMUSER_H
#define __DMUSER_H

/*
 * log2 buckets, bcc style: slot 0 holds 0 and 1, slot i >= 1 holds
 * [2^i, 2^(i+1)).  40 slots reach 2^40 ns (18 minutes), far beyond any
 * timeout; larger values land in the last slot.
 */
#define DMU_MAX_SLOTS	40

/*
 * Latency stages, as the module measures them and hands them over in
 * dm_user_complete (0: not measured, and then not recorded).
 */
enum dmu_stage {
	DMU_STAGE_QUEUE = 0,	/* queue_ns:  dm_user_map  -> first dm_user_read */
	DMU_STAGE_DAEMON = 1,	/* daemon_ns: latest dm_user_read -> the dm_user_write
				 *            that answered it */
	DMU_STAGE_TOTAL = 2,	/* total_ns:  dm_user_map  -> dm_user_complete */
	DMU_NR_STAGES = 3,
};

/* Queue-depth samples taken at dm_user_map. */
enum dmu_qd_kind {
	DMU_QD_QUEUED = 0,	/* requests queued for the daemon, this one included */
	DMU_QD_IN_FLIGHT = 1,	/* requests the daemon has taken and not answered */
	DMU_NR_QD = 2,
};

/*
 * The "how" argument of dm_user_complete.  Mirrors DM_USER_END_* of
 * module/dm-user-trace.h, which is a kernel header userspace cannot include.
 */
enum dmu_end {
	DMU_END_REPLY = 0,	/* the daemon answered */
	DMU_END_CLOSED = 1,	/* its channel closed, no recovery */
	DMU_END_TIMEOUT = 2,	/* nobody answered in timeout_ms */
	DMU_END_TEARDOWN = 3,	/* no daemon: suspend, orphaned target */
	DMU_END_REJECTED = 4,	/* refused at map (unsupported op) */
	DMU_NR_ENDS = 5,
};

/* Key of every histogram: fields a tool does not split by are 0. */
struct dmu_hist_key {
	__u32 dev;
	__u32 op;
	__u32 kind;		/* enum dmu_stage or enum dmu_qd_kind */
	__u32 pad;
};

/*
 * 64-bit slots: a per-CPU copy counts far less than 2^32 in practice, but
 * the sum over CPUs, and the exporter's never-cleared totals, need not.
 */
struct dmu_hist {
	__u64 slots[DMU_MAX_SLOTS];
	__u64 sum;		/* sum of the values added, in the slots' unit */
};

/* Per (dev, op) counters, updated at dm_user_complete. */
struct dmu_op_key {
	__u32 dev;
	__u32 op;
};

struct dmu_op_stats {
	__u64 ios;		/* completed requests */
	__u64 bytes;		/* their bytes */
	__u64 errors;		/* completed with error != 0 */
	__u64 ends[DMU_NR_ENDS];	/* by how they ended; ends[DMU_END_TIMEOUT] = timeouts */
};

/*
 * Record layouts of the tracefs tracepoints the tools attach, for the
 * SEC("tracepoint/...") fallback.  They follow the TP_STRUCT__entry order of
 * dm-user-trace.h with natural alignment after the 8-byte common header.  The
 * tools compare every offset and size with
 * /sys/kernel/tracing/events/dm_user/<event>/format before they use this mode.
 */
struct dmu_tp_common {
	unsigned short common_type;
	unsigned char common_flags;
	unsigned char common_preempt_count;
	int common_pid;
};

struct dmu_tp_map {
	struct dmu_tp_common common;
	__u32 dev;
	__u64 seq;
	__u32 op;
	__u64 flags;
	__u64 sector;
	__u32 bytes;
	__u32 queued;
	__u32 in_flight;
};

struct dmu_tp_complete {
	struct dmu_tp_common common;
	__u32 dev;
	__u64 seq;
	__u32 op;
	__u32 bytes;
	int error;
	__u32 how;
	__u64 queue_ns;		/* these three: target version >= 1.3.0 */
	__u64 daemon_ns;
	__u64 total_ns;
};

#endif /* __DMUSER_H */
