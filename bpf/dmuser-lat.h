/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Shared by dmuser_lat.bpf.c, dmuser-lat.c and dmuser-exporter. */
#ifndef __DMUSER_LAT_H
#define __DMUSER_LAT_H

#include "dmuser.h"

/*
 * Ops that have a slot of the op_recs PERCPU_ARRAY, used without per-device
 * splitting: the DM_USER_REQ_MAP_* values (0..12) and a few spare.  Other
 * ops (only rejected requests can carry one) go to the dev_recs PERCPU_HASH.
 */
#define DMU_LAT_NR_OPS		16

/* (dev, op) records of the dev_recs PERCPU_HASH: devices x ops */
#define DMU_LAT_MAX_RECS	1024

/* histogram entries userspace may make of them: records x stages */
#define DMU_LAT_MAX_HISTS	(DMU_LAT_MAX_RECS * DMU_NR_STAGES)

/*
 * Everything dmuser-lat keeps about one op (of one device, with -D): a
 * single map value, so that a request costs one lookup.  The key op is the
 * request's own even without -O; userspace then sums the histograms over
 * the ops.  The maps are per-CPU: userspace also sums the CPUs' copies.
 *
 * The histograms come first and the counters are updated first (a
 * compiler barrier keeps them so), so a copy of one CPU's value, which the
 * kernel makes in order, never has a histogram ahead of the counters where
 * stores are seen in program order (x86); nor then has the sum of the
 * copies.
 */
struct dmu_lat_rec {
	struct dmu_hist lat[DMU_NR_STAGES];	/* by enum dmu_stage, in usecs or msecs */
	struct dmu_hist qd[DMU_NR_QD];		/* by enum dmu_qd_kind, with -Q only */
	struct dmu_op_stats st;
};

/*
 * The daemon stages (-p PID / --binary PATH): the kernel's tracepoints
 * joined, per request, with libdmuser's USDT probes (provider dmuser,
 * arguments (devt, seq, ...), devt the kernel's dev_t).  A request's stages
 * tile its total, from dm_user_map to dm_user_complete:
 *
 *   queue   dm_user_map -> first dm_user_read (map + the module's queue_ns)
 *   handoff dm_user_read -> USDT request_received (the rest of the read(),
 *           the daemon parsing the header)
 *   pickup  request_received -> backend_submitted
 *   backend backend_submitted -> backend_done
 *   reply   backend_done -> dm_user_complete (the reply's write(), in which
 *           the kernel completes the bio; USDT reply_sent fires after that
 *           write() returns, so it ends no stage: it is counted)
 *   total   dm_user_map -> dm_user_complete
 *
 * so queue + handoff + pickup + backend + reply == total for every request
 * recorded, in ns.
 */
enum dmu_pstage {
	DMU_PS_QUEUE = 0,
	DMU_PS_HANDOFF = 1,
	DMU_PS_PICKUP = 2,
	DMU_PS_BACKEND = 3,
	DMU_PS_REPLY = 4,
	DMU_PS_TOTAL = 5,
	DMU_NR_PSTAGES = 6,
};

/*
 * How each completion seen in daemon-stage mode was counted: exactly one of
 * these per completion of a traced device and op, so they add up to the
 * completions (dmu_lat_rec's st.ios).
 */
enum dmu_pcount {
	DMU_PC_OBSERVED = 0,	/* every event seen, in order: in every stage histogram */
	DMU_PC_UNTIMED = 1,	/* dm_user_map not seen: mapped before the tool attached */
	DMU_PC_UNANSWERED = 2,	/* ended without a reply: timeout, channel closed, teardown */
	DMU_PC_NO_DAEMON = 3,	/* no request_received: read before the probes were attached,
				 * or served by a process without the probes */
	DMU_PC_PARTIAL = 4,	/* request_received seen, backend_submitted or backend_done
				 * not (by completion): a streamed READ, or a refused op */
	DMU_PC_MISORDERED = 5,	/* events seen out of order: not recorded */
	DMU_NR_PCOUNTS = 6,
};

/* The requests the daemon has read and the kernel not completed yet. */
#define DMU_LAT_MAX_REQS	16384

struct dmu_req_key {
	__u32 dev;
	__u32 pad;
	__u64 seq;
};

/* bpf_ktime_get_ns() at dm_user_map and each USDT probe; 0: not seen */
struct dmu_req_ts {
	__u64 map_ns;
	__u64 recv_ns;
	__u64 sub_ns;
	__u64 done_ns;
};

/* One op's (device's and op's, with -D) daemon-stage record. */
struct dmu_pipe_rec {
	struct dmu_hist st[DMU_NR_PSTAGES];	/* by enum dmu_pstage, usecs or msecs */
	__u64 sum_ns[DMU_NR_PSTAGES];		/* exact sums, in ns */
	__u64 counts[DMU_NR_PCOUNTS];		/* by enum dmu_pcount */
};

#endif /* __DMUSER_LAT_H */
