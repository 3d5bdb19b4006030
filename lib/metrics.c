// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Request counters and service-latency histograms.
 *
 * Each channel owns one struct chan_metrics and its serving thread is the
 * only writer, so the request path updates it with relaxed atomic loads
 * and stores: no lock, no read-modify-write, no cache line shared with
 * another channel.  A scrape sums every channel's counters, and those of
 * the channels closed before, without stopping anyone.
 */
#include "internal.h"

unsigned dmu__hist_bucket(uint64_t ns)
{
	if (ns <= 2)
		return 0;
	/* ceil(log2(ns)) - 1: (2^i, 2^(i+1)] maps to i */
	unsigned i = 63u - (unsigned)__builtin_clzll(ns - 1);

	return i < HIST_BUCKETS - 1 ? i : HIST_BUCKETS - 1;
}

uint64_t dmu__hist_upper_ns(unsigned i)
{
	return UINT64_C(2) << i;
}

enum mop dmu__mop(uint64_t type)
{
	switch (type) {
	case DM_USER_REQ_MAP_READ:		return MOP_READ;
	case DM_USER_REQ_MAP_WRITE:		return MOP_WRITE;
	case DM_USER_REQ_MAP_FLUSH:		return MOP_FLUSH;
	case DM_USER_REQ_MAP_DISCARD:		return MOP_DISCARD;
	case DM_USER_REQ_MAP_SECURE_ERASE:	return MOP_SECURE_ERASE;
	case DM_USER_REQ_MAP_WRITE_ZEROES:	return MOP_WRITE_ZEROES;
	default:				return MOP_OTHER;
	}
}

const char *dmu__mop_name(enum mop op)
{
	static const char *const names[MOP_COUNT] = {
		[MOP_READ] = "read",
		[MOP_WRITE] = "write",
		[MOP_FLUSH] = "flush",
		[MOP_DISCARD] = "discard",
		[MOP_SECURE_ERASE] = "secure_erase",
		[MOP_WRITE_ZEROES] = "write_zeroes",
		[MOP_OTHER] = "other",
	};

	return op < MOP_COUNT ? names[op] : "other";
}

const char *dmu__status_name(unsigned status)
{
	switch (status) {
	case DM_USER_RESP_SUCCESS:	return "success";
	case DM_USER_RESP_ERROR:	return "error";
	case DM_USER_RESP_NOSPC:	return "nospc";
	default:			return "unsupported";
	}
}

/* The owning thread is the only writer: a plain load and store suffice. */
static inline void bump(_Atomic uint64_t *c, uint64_t by)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
			      memory_order_relaxed);
}

static inline uint64_t peek(const _Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

void dmu__m_read(struct chan_metrics *m)
{
	bump(&m->channel_reads, 1);
}

void dmu__m_received(struct chan_metrics *m, unsigned requests)
{
	bump(&m->channel_requests_read, requests);
	bump(&m->in_flight, requests);
}

void dmu__m_wrote(struct chan_metrics *m)
{
	bump(&m->channel_writes, 1);
}

void dmu__m_idle(struct chan_metrics *m)
{
	atomic_store_explicit(&m->in_flight, 0, memory_order_relaxed);
}

void dmu__m_batched(struct chan_metrics *m, bool on)
{
	atomic_store_explicit(&m->batched, on, memory_order_relaxed);
}

void dmu__m_flushed(struct chan_metrics *m)
{
	bump(&m->backend_flushes, 1);
}

void dmu__m_reopened(struct chan_metrics *m)
{
	bump(&m->channel_reopens, 1);
}

void dmu__m_end(struct chan_metrics *m, enum mop op, unsigned status,
		uint64_t bytes, uint64_t latency_ns)
{
	struct op_counters *c = &m->op[op];
	uint64_t in_flight = peek(&m->in_flight);

	bump(&c->requests, 1);
	if (status == DM_USER_RESP_SUCCESS)
		bump(&c->bytes, bytes);
	else if (status != DM_USER_RESP_UNSUPPORTED)
		bump(&c->errors, 1);
	bump(&c->latency_sum_ns, latency_ns);
	bump(&c->latency[dmu__hist_bucket(latency_ns)], 1);
	bump(&m->replies[status < STATUS_COUNT ? status : DM_USER_RESP_ERROR], 1);
	if (in_flight)
		atomic_store_explicit(&m->in_flight, in_flight - 1, memory_order_relaxed);
}

static void add_op(struct op_snapshot *s, const struct op_counters *c)
{
	s->requests += peek(&c->requests);
	s->bytes += peek(&c->bytes);
	s->errors += peek(&c->errors);
	s->latency_sum_ns += peek(&c->latency_sum_ns);
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		uint64_t n = peek(&c->latency[i]);

		s->latency[i] += n;
		s->latency_count += n;
	}
}

void dmu__m_add(struct metrics_snapshot *s, const struct chan_metrics *m, bool live)
{
	for (unsigned op = 0; op < MOP_COUNT; op++)
		add_op(&s->op[op], &m->op[op]);
	for (unsigned i = 0; i < STATUS_COUNT; i++)
		s->replies[i] += peek(&m->replies[i]);
	s->backend_flushes += peek(&m->backend_flushes);
	s->channel_reopens += peek(&m->channel_reopens);
	s->channel_reads += peek(&m->channel_reads);
	s->channel_requests_read += peek(&m->channel_requests_read);
	s->channel_writes += peek(&m->channel_writes);
	if (live) {
		s->in_flight += peek(&m->in_flight);
		s->channels_batched += peek(&m->batched);
	}
}

