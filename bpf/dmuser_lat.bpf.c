// SPDX-License-Identifier: GPL-2.0
/*
 * dmuser-lat: log2 histograms of dm-user request latency by stage
 * (queue, daemon, total), optionally per device and per op, plus queue
 * depth sampled at map and error/timeout counts by op.
 *
 * One program run per request: at dm_user_complete, whose queue_ns,
 * daemon_ns and total_ns the module measured (a stage it did not measure is
 * 0 and not recorded), with the request's counters.  dm_user_map is
 * attached only with -Q, for the queue depths.
 *
 * Without -D every value lives in op_recs, a PERCPU_ARRAY indexed by op:
 * its lookup is a bounds check and this CPU's address, with no hashing and
 * no entry to create.  With -D (and for an op beyond the array) they live
 * in dev_recs, a PERCPU_HASH keyed by (dev, op).  Both are per-CPU, updated
 * with plain adds (see dmu_hist_add()) and summed in userspace.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "dmuser.bpf.h"
#include "dmuser-lat.h"

const volatile bool targ_per_dev = false;
const volatile bool targ_ms = false;
const volatile bool targ_qd = false;	/* also record queue-depth histograms */
const volatile bool filter_dev = false;
const volatile __u32 targ_dev = 0;	/* kernel dev_t */
const volatile bool filter_op = false;
const volatile __u32 targ_op = 0;	/* DM_USER_REQ_MAP_* */

/* per-CPU values are at most PCPU_MIN_UNIT_SIZE */
_Static_assert(sizeof(struct dmu_lat_rec) <= 32768, "dmu_lat_rec too large for a per-CPU map");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DMU_LAT_NR_OPS);
	__type(key, __u32);
	__type(value, struct dmu_lat_rec);
} op_recs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, DMU_LAT_MAX_RECS);
	__type(key, struct dmu_op_key);
	__type(value, struct dmu_lat_rec);
} dev_recs SEC(".maps");

static struct dmu_lat_rec zero_rec;

static __always_inline bool wanted(__u32 dev, __u32 op)
{
	return (!filter_dev || dev == targ_dev) && (!filter_op || op == targ_op);
}

/* The record of this request's (dev, op); dev is 0 without -D. */
static __always_inline struct dmu_lat_rec *get_rec(__u32 dev, __u32 op)
{
	struct dmu_op_key key = {};

	if (!targ_per_dev && op < DMU_LAT_NR_OPS)
		return bpf_map_lookup_elem(&op_recs, &op);
	if (targ_per_dev)
		key.dev = dev;
	key.op = op;
	return dmu_lookup_or_try_init(&dev_recs, &key, &zero_rec);
}

static __always_inline void record(struct dmu_hist *h, __u64 ns)
{
	if (!ns)
		return;		/* not measured */
	dmu_hist_add(h, targ_ms ? ns / 1000000U : ns / 1000U);
}

static __always_inline int on_map(__u32 dev, __u64 seq, __u32 op, __u64 flags,
				  __u64 sector, __u32 bytes, __u32 queued,
				  __u32 in_flight)
{
	struct dmu_lat_rec *rec;

	/* not attached without -Q; the test lets the verifier drop the rest */
	if (!targ_qd || !wanted(dev, op))
		return 0;
	rec = get_rec(dev, op);
	if (!rec)
		return 0;
	dmu_hist_add(&rec->qd[DMU_QD_QUEUED], queued);
	dmu_hist_add(&rec->qd[DMU_QD_IN_FLIGHT], in_flight);
	return 0;
}

static __always_inline int on_complete(__u32 dev, __u64 seq, __u32 op, __u32 bytes,
				       int error, __u32 how, __u64 queue_ns,
				       __u64 daemon_ns, __u64 total_ns)
{
	struct dmu_lat_rec *rec;

	if (!wanted(dev, op))
		return 0;
	rec = get_rec(dev, op);
	if (!rec)
		return 0;
	/* the counters first, kept first by barrier(): see struct dmu_lat_rec */
	rec->st.ios++;
	rec->st.bytes += bytes;
	if (error)
		rec->st.errors++;
	if (how < DMU_NR_ENDS)
		rec->st.ends[how]++;
	barrier();
	record(&rec->lat[DMU_STAGE_QUEUE], queue_ns);
	record(&rec->lat[DMU_STAGE_DAEMON], daemon_ns);
	record(&rec->lat[DMU_STAGE_TOTAL], total_ns);
	return 0;
}

DMU_ATTACH_PROGRAMS()

char LICENSE[] SEC("license") = "GPL";
