// SPDX-License-Identifier: GPL-2.0
/*
 * dmuser-top: per-device cumulative counters that userspace turns into
 * rates and interval percentiles: I/Os and bytes by op class, errors and
 * timeouts, and log2 latency histograms (ns) per stage.
 *
 * One program run per request, on dm_user_complete, with one lookup of the
 * device's record: the counters and the stage latencies the module measured
 * (queue_ns, daemon_ns, total_ns; a stage it did not measure is 0 and not
 * recorded).  The average queue depths need no program on dm_user_map:
 * userspace divides the growth of the queue and daemon histograms' sums by
 * the interval (Little's law, as iostat's aqu-sz).
 *
 * devs is a PERCPU_HASH: each CPU updates its own copy of a device's record
 * with plain adds (see dmu_hist_add()), and userspace sums the copies.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "dmuser.bpf.h"
#include "dmuser-top.h"

const volatile bool filter_dev = false;
const volatile __u32 targ_dev = 0;	/* kernel dev_t */

/* per-CPU values are at most PCPU_MIN_UNIT_SIZE */
_Static_assert(sizeof(struct dmu_top_dev) <= 32768, "dmu_top_dev too large for a per-CPU map");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, DMU_TOP_MAX_DEVS);
	__type(key, __u32);
	__type(value, struct dmu_top_dev);
} devs SEC(".maps");

static struct dmu_top_dev zero_dev;

static __always_inline struct dmu_top_dev *get_dev(__u32 dev)
{
	if (filter_dev && dev != targ_dev)
		return NULL;
	return dmu_lookup_or_try_init(&devs, &dev, &zero_dev);
}

/* never loaded: dmuser-top drops its dm_user_map programs */
static __always_inline int on_map(__u32 dev, __u64 seq, __u32 op, __u64 flags,
				  __u64 sector, __u32 bytes, __u32 queued,
				  __u32 in_flight)
{
	return 0;
}

static __always_inline int on_complete(__u32 dev, __u64 seq, __u32 op, __u32 bytes,
				       int error, __u32 how, __u64 queue_ns,
				       __u64 daemon_ns, __u64 total_ns)
{
	struct dmu_top_dev *d = get_dev(dev);
	__u32 cls;

	if (!d)
		return 0;
	/* DM_USER_REQ_MAP_READ and _WRITE are 0 and 1 */
	cls = op == 0 ? DMU_TOP_READ : op == 1 ? DMU_TOP_WRITE : DMU_TOP_OTHER;
	d->ios[cls]++;
	d->bytes[cls] += bytes;
	if (error)
		d->errors++;
	if (how == DMU_END_TIMEOUT)
		d->timeouts++;
	if (queue_ns)
		dmu_hist_add(&d->hist[DMU_STAGE_QUEUE], queue_ns);
	if (daemon_ns)
		dmu_hist_add(&d->hist[DMU_STAGE_DAEMON], daemon_ns);
	if (total_ns)
		dmu_hist_add(&d->hist[DMU_STAGE_TOTAL], total_ns);
	return 0;
}

DMU_ATTACH_PROGRAMS()

char LICENSE[] SEC("license") = "GPL";
