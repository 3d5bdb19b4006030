// SPDX-License-Identifier: GPL-2.0
/*
 * dmuser-lat: log2 histograms of dm-user request latency by stage
 * (queue, daemon, total), optionally per device and per op, plus queue
 * depth sampled at map and error/timeout counts by op.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "dmuser.bpf.h"
#include "dmuser-lat.h"

const volatile bool targ_per_dev = false;
const volatile bool targ_per_op = false;
const volatile bool targ_ms = false;
const volatile bool targ_qd = false;	/* also record queue-depth histograms */
const volatile bool filter_dev = false;
const volatile __u32 targ_dev = 0;	/* kernel dev_t */
const volatile bool filter_op = false;
const volatile __u32 targ_op = 0;	/* DM_USER_REQ_MAP_* */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DMU_LAT_MAX_HISTS);
	__type(key, struct dmu_hist_key);
	__type(value, struct dmu_hist);
} hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DMU_LAT_MAX_HISTS);
	__type(key, struct dmu_hist_key);
	__type(value, struct dmu_hist);
} qdepth SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DMU_LAT_MAX_HISTS);
	__type(key, struct dmu_op_key);
	__type(value, struct dmu_op_stats);
} opstats SEC(".maps");

static struct dmu_op_stats zero_stats;

static __always_inline bool dev_ok(__u32 dev)
{
	return !filter_dev || dev == targ_dev;
}

static __always_inline void record(__u32 dev, __u32 op, __u32 stage, __u64 delta_ns)
{
	struct dmu_hist_key key = {};

	if (targ_per_dev)
		key.dev = dev;
	if (targ_per_op)
		key.op = op;
	key.kind = stage;
	if (targ_ms)
		delta_ns /= 1000000U;
	else
		delta_ns /= 1000U;
	dmu_hist_add(&hists, &key, delta_ns);
}

static __always_inline void record_qd(__u32 dev, __u32 op, __u32 kind, __u32 val)
{
	struct dmu_hist_key key = {};

	if (targ_per_dev)
		key.dev = dev;
	if (targ_per_op)
		key.op = op;
	key.kind = kind;
	dmu_hist_add(&qdepth, &key, val);
}

static __always_inline int on_map(__u32 dev, __u64 seq, __u32 op, __u64 flags,
				  __u64 sector, __u32 bytes, __u32 queued,
				  __u32 in_flight)
{
	struct dmu_req *req;

	if (!dev_ok(dev) || (filter_op && op != targ_op))
		return 0;
	req = dmu_req_new(dev, seq);
	if (req) {
		req->map_ns = bpf_ktime_get_ns();
		req->op = op;
		req->bytes = bytes;
	}
	if (targ_qd) {
		record_qd(dev, op, DMU_QD_QUEUED, queued);
		record_qd(dev, op, DMU_QD_IN_FLIGHT, in_flight);
	}
	return 0;
}

static __always_inline int on_read(__u32 dev, __u64 seq, __u32 op, __u32 channel)
{
	struct dmu_req *req;
	__u64 now;

	if (!dev_ok(dev))
		return 0;
	req = dmu_req_find(dev, seq);
	if (!req)
		return 0;
	now = bpf_ktime_get_ns();
	/* A request taken again after its channel died counts its queue
	 * time once, up to the first read; its daemon time runs from the
	 * latest read. */
	if (!req->read_ns)
		record(dev, req->op, DMU_STAGE_QUEUE, now - req->map_ns);
	req->read_ns = now;
	return 0;
}

static __always_inline int on_write(__u32 dev, __u64 seq, __u32 status)
{
	struct dmu_req *req;

	if (!dev_ok(dev))
		return 0;
	req = dmu_req_find(dev, seq);
	if (!req || !req->read_ns)
		return 0;
	record(dev, req->op, DMU_STAGE_DAEMON, bpf_ktime_get_ns() - req->read_ns);
	return 0;
}

static __always_inline int on_complete(__u32 dev, __u64 seq, __u32 op, __u32 bytes,
				       int error, __u32 how)
{
	struct dmu_op_key okey = {};
	struct dmu_op_stats *st;
	struct dmu_req *req;

	if (!dev_ok(dev) || (filter_op && op != targ_op))
		return 0;

	/* A rejected request was never queued; its seq is not a request's. */
	if (how != DMU_END_REJECTED) {
		req = dmu_req_find(dev, seq);
		if (req) {
			record(dev, op, DMU_STAGE_TOTAL, bpf_ktime_get_ns() - req->map_ns);
			req->dev = 0;	/* the slot is free */
		}
	}

	if (targ_per_dev)
		okey.dev = dev;
	okey.op = op;	/* errors are always reported by op */
	st = dmu_lookup_or_try_init(&opstats, &okey, &zero_stats);
	if (!st)
		return 0;
	__sync_fetch_and_add(&st->ios, 1);
	__sync_fetch_and_add(&st->bytes, bytes);
	if (error)
		__sync_fetch_and_add(&st->errors, 1);
	if (how < DMU_NR_ENDS)
		__sync_fetch_and_add(&st->ends[how], 1);
	return 0;
}

DMU_ATTACH_PROGRAMS()

char LICENSE[] SEC("license") = "GPL";
