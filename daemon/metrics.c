// SPDX-License-Identifier: GPL-2.0
#include "metrics.h"

#include <linux/dm-user.h>
#include <stdlib.h>
#include <string.h>

unsigned dmu_hist_bucket(uint64_t ns)
{
	if (ns <= 2)
		return 0;
	/* ceil(log2(ns)) - 1: (2^i, 2^(i+1)] maps to i */
	unsigned i = 63u - (unsigned)__builtin_clzll(ns - 1);

	return i < DMU_HIST_BUCKETS - 1 ? i : DMU_HIST_BUCKETS - 1;
}

uint64_t dmu_hist_upper_ns(unsigned i)
{
	return UINT64_C(2) << i;
}

enum dmu_op dmu_op_from_type(uint64_t type)
{
	switch (type) {
	case DM_USER_REQ_MAP_READ:		return DMU_OP_READ;
	case DM_USER_REQ_MAP_WRITE:		return DMU_OP_WRITE;
	case DM_USER_REQ_MAP_FLUSH:		return DMU_OP_FLUSH;
	case DM_USER_REQ_MAP_DISCARD:		return DMU_OP_DISCARD;
	case DM_USER_REQ_MAP_SECURE_ERASE:	return DMU_OP_SECURE_ERASE;
	case DM_USER_REQ_MAP_WRITE_ZEROES:	return DMU_OP_WRITE_ZEROES;
	default:				return DMU_OP_OTHER;
	}
}

const char *dmu_op_name(enum dmu_op op)
{
	static const char *const names[DMU_OP_COUNT] = {
		[DMU_OP_READ] = "read",
		[DMU_OP_WRITE] = "write",
		[DMU_OP_FLUSH] = "flush",
		[DMU_OP_DISCARD] = "discard",
		[DMU_OP_SECURE_ERASE] = "secure_erase",
		[DMU_OP_WRITE_ZEROES] = "write_zeroes",
		[DMU_OP_OTHER] = "other",
	};

	return op < DMU_OP_COUNT ? names[op] : "other";
}

const char *dmu_status_name(unsigned status)
{
	switch (status) {
	case DM_USER_RESP_SUCCESS:	return "success";
	case DM_USER_RESP_ERROR:	return "error";
	case DM_USER_RESP_NOSPC:	return "nospc";
	default:			return "unsupported";
	}
}

int dmu_metrics_init(struct dmu_metrics *m, unsigned threads)
{
	m->threads = threads;
	m->thread = aligned_alloc(_Alignof(struct dmu_thread_metrics),
				  threads * sizeof(*m->thread));
	if (!m->thread)
		return -1;
	memset(m->thread, 0, threads * sizeof(*m->thread));
	return 0;
}

void dmu_metrics_free(struct dmu_metrics *m)
{
	free(m->thread);
	m->thread = NULL;
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

void dmu_metrics_read(struct dmu_thread_metrics *t)
{
	bump(&t->channel_reads, 1);
}

void dmu_metrics_received(struct dmu_thread_metrics *t, unsigned requests)
{
	bump(&t->channel_requests_read, requests);
	bump(&t->in_flight, requests);
}

void dmu_metrics_wrote(struct dmu_thread_metrics *t)
{
	bump(&t->channel_writes, 1);
}

void dmu_metrics_idle(struct dmu_thread_metrics *t)
{
	atomic_store_explicit(&t->in_flight, 0, memory_order_relaxed);
}

void dmu_metrics_batched(struct dmu_thread_metrics *t, bool batched)
{
	atomic_store_explicit(&t->batched, batched, memory_order_relaxed);
}

void dmu_metrics_end(struct dmu_thread_metrics *t, enum dmu_op op,
		     unsigned status, uint64_t bytes, uint64_t latency_ns)
{
	struct dmu_op_counters *c = &t->op[op];
	uint64_t in_flight = peek(&t->in_flight);

	bump(&c->requests, 1);
	if (status == DM_USER_RESP_SUCCESS)
		bump(&c->bytes, bytes);
	else if (status != DM_USER_RESP_UNSUPPORTED)
		bump(&c->errors, 1);
	bump(&c->latency_sum_ns, latency_ns);
	bump(&c->latency[dmu_hist_bucket(latency_ns)], 1);
	bump(&t->replies[status < DMU_STATUS_COUNT ? status : DM_USER_RESP_ERROR], 1);
	if (in_flight)
		atomic_store_explicit(&t->in_flight, in_flight - 1, memory_order_relaxed);
}

void dmu_metrics_flushed(struct dmu_thread_metrics *t)
{
	bump(&t->backend_flushes, 1);
}

void dmu_metrics_reopened(struct dmu_thread_metrics *t)
{
	bump(&t->channel_reopens, 1);
}

static void add_op(struct dmu_op_snapshot *s, const struct dmu_op_counters *c)
{
	s->requests += peek(&c->requests);
	s->bytes += peek(&c->bytes);
	s->errors += peek(&c->errors);
	s->latency_sum_ns += peek(&c->latency_sum_ns);
	for (unsigned i = 0; i < DMU_HIST_BUCKETS; i++) {
		uint64_t n = peek(&c->latency[i]);

		s->latency[i] += n;
		s->latency_count += n;
	}
}

void dmu_metrics_snapshot(const struct dmu_metrics *m,
			  struct dmu_metrics_snapshot *s)
{
	memset(s, 0, sizeof(*s));
	for (unsigned t = 0; t < m->threads; t++) {
		const struct dmu_thread_metrics *tm = &m->thread[t];

		for (unsigned op = 0; op < DMU_OP_COUNT; op++)
			add_op(&s->op[op], &tm->op[op]);
		for (unsigned i = 0; i < DMU_STATUS_COUNT; i++)
			s->replies[i] += peek(&tm->replies[i]);
		s->in_flight += peek(&tm->in_flight);
		s->backend_flushes += peek(&tm->backend_flushes);
		s->channel_reopens += peek(&tm->channel_reopens);
		s->channel_reads += peek(&tm->channel_reads);
		s->channel_requests_read += peek(&tm->channel_requests_read);
		s->channel_writes += peek(&tm->channel_writes);
		s->channels_batched += peek(&tm->batched);
	}
}
