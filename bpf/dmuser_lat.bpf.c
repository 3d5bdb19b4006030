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
 *
 * With -p PID / --binary PATH (targ_daemon) the tool also attaches the four
 * USDT probes of libdmuser (SEC("usdt"), attached by userspace with
 * bpf_program__attach_usdt()) and joins them per request, keyed by (devt,
 * seq), with the stage durations dm_user_complete hands over: see enum
 * dmu_pstage in dmuser-lat.h.  dm_user_map makes the request's entry in
 * reqs, the probes stamp it, and dm_user_complete
 * takes it out and records every stage, or counts why it cannot (enum
 * dmu_pcount).  Without targ_daemon these programs are not loaded and the
 * daemon-stage maps keep their one entry.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>
#include "dmuser.bpf.h"
#include "dmuser-lat.h"

const volatile bool targ_per_dev = false;
const volatile bool targ_ms = false;
const volatile bool targ_qd = false;	/* also record queue-depth histograms */
const volatile bool filter_dev = false;
const volatile __u32 targ_dev = 0;	/* kernel dev_t */
const volatile bool filter_op = false;
const volatile __u32 targ_op = 0;	/* DM_USER_REQ_MAP_* */
const volatile bool targ_daemon = false;	/* -p / --binary: the daemon stages */

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

/*
 * The daemon stages.  Their sizes here are those of a tool that does not
 * use them (the exporter, dmuser-lat without -p): dmuser-lat sets
 * DMU_LAT_MAX_REQS and DMU_LAT_MAX_RECS (DMU_LAT_NR_OPS without -D).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, struct dmu_req_key);
	__type(value, struct dmu_req_ts);
} reqs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct dmu_pipe_rec);
} pipe_op_recs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 1);
	__type(key, struct dmu_op_key);
	__type(value, struct dmu_pipe_rec);
} pipe_dev_recs SEC(".maps");

/* USDT reply_sent of the traced devices, any op (the probe has none) */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} replies SEC(".maps");

static struct dmu_pipe_rec zero_pipe;

/*
 * Requests whose first read, as estimated from the module's durations, came
 * after their request_received (see pipeline()); atomic, read at exit.
 */
__u64 dmu_handoff_clamped;

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

/* The daemon-stage record of (dev, op), as get_rec() */
static __always_inline struct dmu_pipe_rec *get_pipe_rec(__u32 dev, __u32 op)
{
	struct dmu_op_key key = {};

	if (!targ_per_dev && op < DMU_LAT_NR_OPS)
		return bpf_map_lookup_elem(&pipe_op_recs, &op);
	if (targ_per_dev)
		key.dev = dev;
	key.op = op;
	return dmu_lookup_or_try_init(&pipe_dev_recs, &key, &zero_pipe);
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

	/* not attached without -Q or -p; the tests let the verifier drop the rest */
	if (!wanted(dev, op))
		return 0;
	if (targ_daemon) {
		struct dmu_req_key key = { .dev = dev, .seq = seq };
		struct dmu_req_ts ts = { .map_ns = bpf_ktime_get_ns() };
		long err = bpf_map_update_elem(&reqs, &key, &ts, BPF_ANY);

		if (err) {
			dmu_init_err = err;
			__sync_fetch_and_add(&dmu_init_failed, 1);
		}
	}
	if (!targ_qd)
		return 0;
	rec = get_rec(dev, op);
	if (!rec)
		return 0;
	dmu_hist_add(&rec->qd[DMU_QD_QUEUED], queued);
	dmu_hist_add(&rec->qd[DMU_QD_IN_FLIGHT], in_flight);
	return 0;
}

/*
 * The daemon stages of a completed request: its entry in reqs (taken out
 * whatever happens), made at dm_user_map and stamped by the probes, and now,
 * the completion.  Every boundary is a bpf_ktime_get_ns() taken in the order
 * of the events (dm_user_map fires under the lock that queues the request,
 * before a reader can take it), except the first read, which no program
 * here sees: it is map + the module's queue_ns.  That is an estimate, late by
 * the time from the module's timestamp at map to the map program (the
 * tracepoint's dispatch, other tools' programs on it, an interrupt), so it
 * may land after request_received, which follows it in fact.  The
 * queue/handoff boundary is then request_received (handoff 0, counted in
 * dmu_handoff_clamped).  The stages add up to now - map exactly.
 *
 * A subprogram (BPF-to-BPF call), not inlined, like count_completion():
 * with its own registers and stack frame it adds no spills to the
 * completion programs, which stay as they were without the daemon stages.
 * Five arguments: the most a BPF call takes.  Without targ_daemon the call
 * is dead code and the verifier drops the subprogram.
 */
static __noinline int pipeline(__u32 dev, __u64 seq, __u32 op, __u32 how,
			       __u64 queue_ns)
{
	struct dmu_req_key key = { .dev = dev, .seq = seq };
	struct dmu_req_ts t = {}, *ts;
	struct dmu_pipe_rec *rec;
	__u64 now = bpf_ktime_get_ns(), read, d[DMU_NR_PSTAGES];
	int i;

	ts = bpf_map_lookup_elem(&reqs, &key);
	if (ts) {
		t = *ts;
		bpf_map_delete_elem(&reqs, &key);
	}
	rec = get_pipe_rec(dev, op);
	if (!rec)
		return 0;
	if (!t.map_ns) {
		rec->counts[DMU_PC_UNTIMED]++;
		return 0;
	}
	if (how != DMU_END_REPLY) {
		rec->counts[DMU_PC_UNANSWERED]++;
		return 0;
	}
	if (!t.recv_ns) {
		rec->counts[DMU_PC_NO_DAEMON]++;
		return 0;
	}
	if (!t.sub_ns || !t.done_ns || !queue_ns) {
		rec->counts[DMU_PC_PARTIAL]++;
		return 0;
	}
	if ((__s64)(t.recv_ns - t.map_ns) < 0 || (__s64)(t.sub_ns - t.recv_ns) < 0 ||
	    (__s64)(t.done_ns - t.sub_ns) < 0 || (__s64)(now - t.done_ns) < 0) {
		rec->counts[DMU_PC_MISORDERED]++;
		return 0;
	}
	read = t.map_ns + queue_ns;
	if ((__s64)(t.recv_ns - read) < 0) {
		read = t.recv_ns;
		__sync_fetch_and_add(&dmu_handoff_clamped, 1);
	}
	d[DMU_PS_QUEUE] = read - t.map_ns;
	d[DMU_PS_HANDOFF] = t.recv_ns - read;
	d[DMU_PS_PICKUP] = t.sub_ns - t.recv_ns;
	d[DMU_PS_BACKEND] = t.done_ns - t.sub_ns;
	d[DMU_PS_REPLY] = now - t.done_ns;
	d[DMU_PS_TOTAL] = now - t.map_ns;
	/* the count first, as in on_complete() */
	rec->counts[DMU_PC_OBSERVED]++;
	barrier();
	/*
	 * Unrolled: 6.1's verifier refuses some loops whose back edge its CFG
	 * walk meets as a fall-through ("back-edge from insn 542 to 543"), as
	 * it did this one with a branch added inside (a test of 325).
	 */
#pragma unroll
	for (i = 0; i < DMU_NR_PSTAGES; i++) {
		rec->sum_ns[i] += d[i];
		/* 0 is a value here (a stage under 1 us): every stage counts once */
		dmu_hist_add(&rec->st[i], targ_ms ? d[i] / 1000000U : d[i] / 1000U);
	}
	return 0;
}

/*
 * A completion's counters.  A subprogram (BPF-to-BPF call), not inlined, so
 * that `how' is bounds-checked and used as an index in one register, with no
 * helper call before it.  Inlined into on_complete(), whose nine values
 * outlive helper calls across which only r6-r9 survive, `how' was spilled,
 * and clang reloaded it once for the check and again for the index.  6.1's
 * verifier carries a bound from one fill of a stack slot to another only
 * when the spilled register had an id (from a register copy); 6.8 and later
 * give every spilled scalar one.  Before the daemon stages `how' stayed in
 * r9; with them inlined, dmu_complete_tp spilled it straight from its ctx
 * load, and 6.1 refused that program with "R2 unbounded memory access"
 * (6.12, and the tp_btf and raw_tp programs, compiled differently, loaded).
 * Here there is no call and no spill.
 */
static __noinline int count_completion(struct dmu_op_stats *st, __u32 bytes, int error,
				       __u32 how)
{
	st->ios++;
	st->bytes += bytes;
	if (error)
		st->errors++;
	if (how < DMU_NR_ENDS)
		st->ends[how]++;
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
	count_completion(&rec->st, bytes, error, how);
	barrier();
	record(&rec->lat[DMU_STAGE_QUEUE], queue_ns);
	record(&rec->lat[DMU_STAGE_DAEMON], daemon_ns);
	record(&rec->lat[DMU_STAGE_TOTAL], total_ns);
	if (targ_daemon)
		pipeline(dev, seq, op, how, queue_ns);
	return 0;
}

/*
 * libdmuser's USDT probes, arguments (devt, seq, ...).  Attached by
 * userspace (bpf_program__attach_usdt()) only with targ_daemon.
 */
SEC("usdt")
int BPF_USDT(dmu_usdt_received, __u64 devt, __u64 seq)
{
	struct dmu_req_key key = { .dev = (__u32)devt, .seq = seq };
	struct dmu_req_ts *ts = bpf_map_lookup_elem(&reqs, &key);

	/* none: mapped before the tool attached, or not traced */
	if (!ts)
		return 0;
	/* a request taken again (its channel died) is served again */
	ts->sub_ns = 0;
	ts->done_ns = 0;
	ts->recv_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("usdt")
int BPF_USDT(dmu_usdt_submitted, __u64 devt, __u64 seq)
{
	struct dmu_req_key key = { .dev = (__u32)devt, .seq = seq };
	struct dmu_req_ts *ts = bpf_map_lookup_elem(&reqs, &key);

	if (ts)
		ts->sub_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("usdt")
int BPF_USDT(dmu_usdt_done, __u64 devt, __u64 seq)
{
	struct dmu_req_key key = { .dev = (__u32)devt, .seq = seq };
	struct dmu_req_ts *ts = bpf_map_lookup_elem(&reqs, &key);

	if (ts)
		ts->done_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("usdt")
int BPF_USDT(dmu_usdt_reply, __u64 devt)
{
	__u32 zero = 0;
	__u64 *n;

	if (filter_dev && (__u32)devt != targ_dev)
		return 0;
	n = bpf_map_lookup_elem(&replies, &zero);
	if (n)
		(*n)++;
	return 0;
}

DMU_ATTACH_PROGRAMS()

char LICENSE[] SEC("license") = "GPL";
