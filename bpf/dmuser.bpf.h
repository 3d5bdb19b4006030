/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * BPF side helpers shared by dmuser_lat.bpf.c and dmuser_top.bpf.c: map
 * entries created on first use, log2 histograms, and the programs that
 * attach dm_user_map and dm_user_complete in each of the three ways we
 * support.
 *
 * The tools' maps are per-CPU: a program updates this CPU's copy of a value
 * with plain adds, and userspace sums the copies (dmu_percpu_lookup() in
 * trace_helpers.c).
 *
 * The programs keep no state per request: the module measures each stage
 * of a request itself and hands the durations over in dm_user_complete
 * (queue_ns, daemon_ns, total_ns), so one program run per request records
 * them all.  dm_user_map is attached only where its queue depths are used,
 * and for dmuser-lat's daemon stages (-p, --binary), the one exception: they
 * keep each request from dm_user_map to dm_user_complete (dmuser_lat.bpf.c).
 *
 * Include after vmlinux.h and the libbpf headers.
 */
#ifndef __DMUSER_BPF_H
#define __DMUSER_BPF_H

#include "dmuser.h"

#ifndef EEXIST
#define EEXIST 17
#endif
#ifndef ENOENT
#define ENOENT 2
#endif

/*
 * Diagnostics, read by the tools at exit: records that could not be made
 * (dmu_init_failed, with the last error in dmu_init_err).  The maps that
 * take inserts are preallocated per-CPU hashes with an entry per device (and
 * op), made once: an insert fails only when the map is full (-E2BIG), or
 * when the bucket is locked on this CPU by a program it interrupted
 * (-EBUSY, an NMI).  Another CPU inserting the same key first is -EEXIST,
 * not a failure.  A failed insert loses its completion, and the tools say
 * so; no retry hides it.
 */
__u64 dmu_init_failed;
__s64 dmu_init_err;

/*
 * The value of key in map, inserted as init if missing.  On the tools'
 * per-CPU hashes the lookup gives this CPU's copy, and an insert from a
 * program writes init into this CPU's copy and zeroes the others' (for
 * preallocated maps since 5.10, "bpf: Zero-fill re-used per-cpu map
 * element"); init is all zeroes, so every CPU's copy starts at zero.
 * Another CPU may insert the same key first: -EEXIST, then the lookup
 * finds it.
 */
static __always_inline void *
dmu_lookup_or_try_init(void *map, const void *key, const void *init)
{
	void *val;
	/*
	 * int, not long: the error is an int.  The verifier turns the helper
	 * call into a direct call of the map's update function, which returns
	 * int, and 6.1's htab_percpu_map_update_elem returns -EEXIST with
	 * "mov $0xffffffef,%r12d; mov %r12d,%eax": the upper half of R0 is 0,
	 * so as a long it is 4294967279, not -17.  Compared as a long, the
	 * -EEXIST of two CPUs inserting the same key at once looked like a
	 * failure, and that completion was lost (tests/e2e/320 under make soak,
	 * about one tool run in 130 on 6.1 with two vCPUs; 6.12 sign-extends).
	 * As an int the comparison sees -17 on both kernels.
	 */
	int err;

	val = bpf_map_lookup_elem(map, key);
	if (val)
		return val;
	err = bpf_map_update_elem(map, key, init, BPF_NOEXIST);
	if (err && err != -EEXIST) {
		dmu_init_err = err;
		/* rare, and shared by all CPUs: atomic */
		__sync_fetch_and_add(&dmu_init_failed, 1);
		return NULL;
	}
	val = bpf_map_lookup_elem(map, key);
	if (!val) {
		dmu_init_err = -ENOENT;	/* deleted (by userspace) meanwhile */
		__sync_fetch_and_add(&dmu_init_failed, 1);
	}
	return val;
}

/* floor(log2(v)) for v >= 1, 0 for v == 0 (as in libbpf-tools bits.bpf.h) */
static __always_inline __u64 dmu_log2(__u32 v)
{
	__u32 shift, r;

	r = (v > 0xFFFF) << 4; v >>= r;
	shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
	shift = (v > 0xF) << 2; v >>= shift; r |= shift;
	shift = (v > 0x3) << 1; v >>= shift; r |= shift;
	r |= (v >> 1);
	return r;
}

static __always_inline __u64 dmu_log2l(__u64 v)
{
	__u32 hi = v >> 32;

	if (hi)
		return dmu_log2(hi) + 32;
	return dmu_log2(v);
}

/*
 * Adds one value to a log2 histogram in a map value.
 *
 * The tools' maps are per-CPU, so the value is this CPU's copy, and plain
 * adds are enough (the tools sum the copies): the programs run with
 * migration disabled, and none nests with itself on a CPU (tp_btf and
 * raw_tp programs have a per-program, per-CPU recursion counter, tracefs
 * tracepoint programs the per-CPU bpf_prog_active; a run refused that way
 * is lost, not racing).  The dm_user_map program may interrupt the
 * dm_user_complete one or the reverse, but they update different fields.
 */
static __always_inline void dmu_hist_add(struct dmu_hist *h, __u64 val)
{
	__u64 slot = dmu_log2l(val);

	if (slot >= DMU_MAX_SLOTS)
		slot = DMU_MAX_SLOTS - 1;
	h->slots[slot]++;
	h->sum += val;
}

/*
 * The attach programs.  A tool defines
 *
 *   static __always_inline int on_map(__u32 dev, __u64 seq, __u32 op, __u64 flags,
 *                                     __u64 sector, __u32 bytes, __u32 queued,
 *                                     __u32 in_flight);
 *   static __always_inline int on_complete(__u32 dev, __u64 seq, __u32 op, __u32 bytes,
 *                                          int error, __u32 how, __u64 queue_ns,
 *                                          __u64 daemon_ns, __u64 total_ns);
 *
 * and then expands DMU_ATTACH_PROGRAMS().  That defines every event three
 * times: tp_btf (typed, needs the module's BTF), raw_tp (untyped arguments,
 * same order), and the tracefs tracepoint (the record layouts of dmuser.h).
 * Userspace keeps exactly one family with bpf_program__set_autoload(), chosen
 * by the section prefix (see dmu_attach_select() in trace_helpers.c), and
 * drops the dm_user_map programs where it needs no queue depth
 * (dmu_attach_skip_event()).
 */
#define DMU_ATTACH_PROGRAMS()							\
SEC("tp_btf/dm_user_map")							\
int BPF_PROG(dmu_map_btf, dev_t dev, __u64 seq, __u32 op, __u64 flags,		\
	     __u64 sector, __u32 bytes, __u32 queued, __u32 in_flight)		\
{										\
	return on_map(dev, seq, op, flags, sector, bytes, queued, in_flight);	\
}										\
SEC("tp_btf/dm_user_complete")							\
int BPF_PROG(dmu_complete_btf, dev_t dev, __u64 seq, __u32 op, __u32 bytes,	\
	     int error, __u32 how, __u64 queue_ns, __u64 daemon_ns,		\
	     __u64 total_ns)							\
{										\
	return on_complete(dev, seq, op, bytes, error, how, queue_ns,		\
			   daemon_ns, total_ns);				\
}										\
SEC("raw_tp/dm_user_map")							\
int BPF_PROG(dmu_map_raw, dev_t dev, __u64 seq, __u32 op, __u64 flags,		\
	     __u64 sector, __u32 bytes, __u32 queued, __u32 in_flight)		\
{										\
	return on_map(dev, seq, op, flags, sector, bytes, queued, in_flight);	\
}										\
SEC("raw_tp/dm_user_complete")							\
int BPF_PROG(dmu_complete_raw, dev_t dev, __u64 seq, __u32 op, __u32 bytes,	\
	     int error, __u32 how, __u64 queue_ns, __u64 daemon_ns,		\
	     __u64 total_ns)							\
{										\
	return on_complete(dev, seq, op, bytes, error, how, queue_ns,		\
			   daemon_ns, total_ns);				\
}										\
SEC("tracepoint/dm_user/dm_user_map")						\
int dmu_map_tp(struct dmu_tp_map *ctx)						\
{										\
	return on_map(ctx->dev, ctx->seq, ctx->op, ctx->flags, ctx->sector,	\
		      ctx->bytes, ctx->queued, ctx->in_flight);			\
}										\
SEC("tracepoint/dm_user/dm_user_complete")					\
int dmu_complete_tp(struct dmu_tp_complete *ctx)				\
{										\
	return on_complete(ctx->dev, ctx->seq, ctx->op, ctx->bytes,		\
			   ctx->error, ctx->how, ctx->queue_ns,			\
			   ctx->daemon_ns, ctx->total_ns);			\
}

#endif /* __DMUSER_BPF_H */
