// SPDX-License-Identifier: GPL-2.0
/*
 * dmuser-top: per-device cumulative counters that userspace turns into
 * rates and interval percentiles: I/Os and bytes by op, errors and
 * timeouts, log2 latency histograms (ns) per stage, and queue-depth sums.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "dmuser.bpf.h"
#include "dmuser-top.h"

const volatile bool filter_dev = false;
const volatile __u32 targ_dev = 0;	/* kernel dev_t */

/* key: { dev, 0, stage }, values in ns */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DMU_TOP_MAX_DEVS * DMU_NR_STAGES);
	__type(key, struct dmu_hist_key);
	__type(value, struct dmu_hist);
} hists SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DMU_TOP_MAX_DEVS * 16);
	__type(key, struct dmu_op_key);
	__type(value, struct dmu_op_stats);
} opstats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, DMU_TOP_MAX_DEVS);
	__type(key, __u32);
	__type(value, struct dmu_dev_gauge);
} gauges SEC(".maps");

static struct dmu_op_stats zero_stats;
static struct dmu_dev_gauge zero_gauge;

static __always_inline void record(__u32 dev, __u32 stage, __u64 delta_ns)
{
	struct dmu_hist_key key = { .dev = dev, .kind = stage };

	dmu_hist_add(&hists, &key, delta_ns);
}

static __always_inline int on_map(__u32 dev, __u64 seq, __u32 op, __u64 flags,
				  __u64 sector, __u32 bytes, __u32 queued,
				  __u32 in_flight)
{
	struct dmu_req *req;
	struct dmu_dev_gauge *g;

	if (filter_dev && dev != targ_dev)
		return 0;
	req = dmu_req_new(dev, seq);
	if (req) {
		req->map_ns = bpf_ktime_get_ns();
		req->op = op;
		req->bytes = bytes;
	}

	g = dmu_lookup_or_try_init(&gauges, &dev, &zero_gauge);
	if (g) {
		__sync_fetch_and_add(&g->samples, 1);
		__sync_fetch_and_add(&g->queued_sum, queued);
		__sync_fetch_and_add(&g->in_flight_sum, in_flight);
	}
	return 0;
}

static __always_inline int on_read(__u32 dev, __u64 seq, __u32 op, __u32 channel)
{
	struct dmu_req *req;
	__u64 now;

	if (filter_dev && dev != targ_dev)
		return 0;
	req = dmu_req_find(dev, seq);
	if (!req)
		return 0;
	now = bpf_ktime_get_ns();
	if (!req->read_ns)
		record(dev, DMU_STAGE_QUEUE, now - req->map_ns);
	req->read_ns = now;
	return 0;
}

static __always_inline int on_write(__u32 dev, __u64 seq, __u32 status)
{
	struct dmu_req *req;

	if (filter_dev && dev != targ_dev)
		return 0;
	req = dmu_req_find(dev, seq);
	if (!req || !req->read_ns)
		return 0;
	record(dev, DMU_STAGE_DAEMON, bpf_ktime_get_ns() - req->read_ns);
	return 0;
}

static __always_inline int on_complete(__u32 dev, __u64 seq, __u32 op, __u32 bytes,
				       int error, __u32 how)
{
	struct dmu_op_key okey = { .dev = dev, .op = op };
	struct dmu_op_stats *st;
	struct dmu_req *req;

	if (filter_dev && dev != targ_dev)
		return 0;
	if (how != DMU_END_REJECTED) {
		req = dmu_req_find(dev, seq);
		if (req) {
			record(dev, DMU_STAGE_TOTAL, bpf_ktime_get_ns() - req->map_ns);
			req->dev = 0;	/* the slot is free */
		}
	}
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
