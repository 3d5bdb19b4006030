/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * BPF side helpers shared by dmuser_lat.bpf.c and dmuser_top.bpf.c:
 * the per-request start map, log2 histograms, and the programs that attach
 * the four dm-user tracepoints in each of the three ways we support.
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
 * Requests seen at dm_user_map and not yet completed: a table of slots
 * indexed by a hash of (dev, seq).  An array, so a lookup is inlined by the
 * JIT, takes no lock and allocates nothing: the hash map this replaces cost
 * every request an allocation, an RCU-deferred free and two bucket locks
 * taken with interrupts off, in each tool attached, and its LRU variant lost
 * about one request in 50000 on 6.1.
 *
 * A slot holds one request.  Consecutive seqs of a device take consecutive
 * slots, so one device needs DMU_MAX_REQS requests in flight to collide with
 * itself; two devices collide when their seqs happen to meet.  The request
 * mapped later then takes the slot and the earlier one is not timed:
 * dmu_req_overwritten counts those, and the tools report it at exit.  The
 * four events of a request are ordered by the locks it passes through in the
 * kernel, so its own slot is never written concurrently.
 */
#define DMU_MAX_REQS 65536	/* a power of 2 */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DMU_MAX_REQS);
	__type(key, __u32);
	__type(value, struct dmu_req);
} start SEC(".maps");

__u64 dmu_req_overwritten;

static __always_inline __u32 dmu_req_idx(__u32 dev, __u64 seq)
{
	/* Fibonacci hashing spreads the devices' starting points. */
	return ((__u32)seq + dev * 2654435761U) & (DMU_MAX_REQS - 1);
}

/* The slot of a request being mapped, now this request's; NULL never. */
static __always_inline struct dmu_req *dmu_req_new(__u32 dev, __u64 seq)
{
	__u32 idx = dmu_req_idx(dev, seq);
	struct dmu_req *r = bpf_map_lookup_elem(&start, &idx);

	if (!r)
		return NULL;
	if (r->dev)
		__sync_fetch_and_add(&dmu_req_overwritten, 1);
	r->seq = seq;
	r->dev = dev;
	r->read_ns = 0;
	return r;
}

/* The slot of a request mapped earlier, or NULL if it is not there. */
static __always_inline struct dmu_req *dmu_req_find(__u32 dev, __u64 seq)
{
	__u32 idx = dmu_req_idx(dev, seq);
	struct dmu_req *r = bpf_map_lookup_elem(&start, &idx);

	if (!r || r->dev != dev || r->seq != seq)
		return NULL;
	return r;
}

/* A zeroed histogram, the initial value of new histogram entries. */
static struct dmu_hist dmu_zero_hist;

/*
 * Diagnostics, read by the tools at exit.  On Debian's 6.1 kernel under QEMU
 * TCG, about one run in 50 saw a lookup miss an element that existed and the
 * insert that followed fail with an error other than EEXIST; a second try
 * then works.  dmu_init_retried counts those rescues, dmu_init_failed the
 * values lost after three tries, dmu_init_err the last error seen.
 */
__u64 dmu_init_retried;
__u64 dmu_init_failed;
__s64 dmu_init_err;

static __always_inline void *
dmu_lookup_or_try_init(void *map, const void *key, const void *init)
{
	void *val;
	long err;
	int i;

	for (i = 0; i < 3; i++) {
		val = bpf_map_lookup_elem(map, key);
		if (val)
			break;
		err = bpf_map_update_elem(map, key, init, BPF_NOEXIST);
		if (err && err != -EEXIST) {
			dmu_init_err = err;
			continue;
		}
		val = bpf_map_lookup_elem(map, key);
		if (val)
			break;
		dmu_init_err = -ENOENT;
	}
	if (!val)
		__sync_fetch_and_add(&dmu_init_failed, 1);
	else if (i)
		__sync_fetch_and_add(&dmu_init_retried, 1);
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

/* Adds one value to the log2 histogram of map[key]. */
static __always_inline void dmu_hist_add(void *map, struct dmu_hist_key *key, __u64 val)
{
	struct dmu_hist *h;
	__u64 slot;

	h = dmu_lookup_or_try_init(map, key, &dmu_zero_hist);
	if (!h)
		return;
	slot = dmu_log2l(val);
	if (slot >= DMU_MAX_SLOTS)
		slot = DMU_MAX_SLOTS - 1;
	__sync_fetch_and_add(&h->slots[slot], 1);
	__sync_fetch_and_add(&h->sum, val);
}

/*
 * The attach programs.  A tool defines
 *
 *   static __always_inline int on_map(__u32 dev, __u64 seq, __u32 op, __u64 flags,
 *                                     __u64 sector, __u32 bytes, __u32 queued,
 *                                     __u32 in_flight);
 *   static __always_inline int on_read(__u32 dev, __u64 seq, __u32 op, __u32 channel);
 *   static __always_inline int on_write(__u32 dev, __u64 seq, __u32 status);
 *   static __always_inline int on_complete(__u32 dev, __u64 seq, __u32 op, __u32 bytes,
 *                                          int error, __u32 how);
 *
 * and then expands DMU_ATTACH_PROGRAMS().  That defines every event three
 * times: tp_btf (typed, needs the module's BTF), raw_tp (untyped arguments,
 * same order), and the tracefs tracepoint (the record layouts of dmuser.h).
 * Userspace keeps exactly one family with bpf_program__set_autoload(), chosen
 * by the section prefix (see dmu_attach_select() in trace_helpers.c).
 */
#define DMU_ATTACH_PROGRAMS()							\
SEC("tp_btf/dm_user_map")							\
int BPF_PROG(dmu_map_btf, dev_t dev, __u64 seq, __u32 op, __u64 flags,		\
	     __u64 sector, __u32 bytes, __u32 queued, __u32 in_flight)		\
{										\
	return on_map(dev, seq, op, flags, sector, bytes, queued, in_flight);	\
}										\
SEC("tp_btf/dm_user_read")							\
int BPF_PROG(dmu_read_btf, dev_t dev, __u64 seq, __u32 op, __u32 channel)	\
{										\
	return on_read(dev, seq, op, channel);					\
}										\
SEC("tp_btf/dm_user_write")							\
int BPF_PROG(dmu_write_btf, dev_t dev, __u64 seq, __u32 status)		\
{										\
	return on_write(dev, seq, status);					\
}										\
SEC("tp_btf/dm_user_complete")							\
int BPF_PROG(dmu_complete_btf, dev_t dev, __u64 seq, __u32 op, __u32 bytes,	\
	     int error, __u32 how)						\
{										\
	return on_complete(dev, seq, op, bytes, error, how);			\
}										\
SEC("raw_tp/dm_user_map")							\
int BPF_PROG(dmu_map_raw, dev_t dev, __u64 seq, __u32 op, __u64 flags,		\
	     __u64 sector, __u32 bytes, __u32 queued, __u32 in_flight)		\
{										\
	return on_map(dev, seq, op, flags, sector, bytes, queued, in_flight);	\
}										\
SEC("raw_tp/dm_user_read")							\
int BPF_PROG(dmu_read_raw, dev_t dev, __u64 seq, __u32 op, __u32 channel)	\
{										\
	return on_read(dev, seq, op, channel);					\
}										\
SEC("raw_tp/dm_user_write")							\
int BPF_PROG(dmu_write_raw, dev_t dev, __u64 seq, __u32 status)		\
{										\
	return on_write(dev, seq, status);					\
}										\
SEC("raw_tp/dm_user_complete")							\
int BPF_PROG(dmu_complete_raw, dev_t dev, __u64 seq, __u32 op, __u32 bytes,	\
	     int error, __u32 how)						\
{										\
	return on_complete(dev, seq, op, bytes, error, how);			\
}										\
SEC("tracepoint/dm_user/dm_user_map")						\
int dmu_map_tp(struct dmu_tp_map *ctx)						\
{										\
	return on_map(ctx->dev, ctx->seq, ctx->op, ctx->flags, ctx->sector,	\
		      ctx->bytes, ctx->queued, ctx->in_flight);			\
}										\
SEC("tracepoint/dm_user/dm_user_read")						\
int dmu_read_tp(struct dmu_tp_read *ctx)					\
{										\
	return on_read(ctx->dev, ctx->seq, ctx->op, ctx->channel);		\
}										\
SEC("tracepoint/dm_user/dm_user_write")						\
int dmu_write_tp(struct dmu_tp_write *ctx)					\
{										\
	return on_write(ctx->dev, ctx->seq, ctx->status);			\
}										\
SEC("tracepoint/dm_user/dm_user_complete")					\
int dmu_complete_tp(struct dmu_tp_complete *ctx)				\
{										\
	return on_complete(ctx->dev, ctx->seq, ctx->op, ctx->bytes,		\
			   ctx->error, ctx->how);				\
}

#endif /* __DMUSER_BPF_H */
