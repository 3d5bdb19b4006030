/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Request counters and service-latency histograms.
 *
 * Each worker thread owns one struct dmu_thread_metrics and is its only
 * writer, so the request path updates it with relaxed atomic loads and
 * stores: no lock, no read-modify-write, no cache line shared with another
 * worker.  A scrape sums every thread's counters into a snapshot
 * (dmu_metrics_snapshot()) without stopping anyone; metrics_render.c turns
 * a snapshot into JSON or Prometheus text.
 */
#ifndef DMUSERD_METRICS_H
#define DMUSERD_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Operations as the metrics name them; every other request type is "other". */
enum dmu_op {
	DMU_OP_READ,
	DMU_OP_WRITE,
	DMU_OP_FLUSH,
	DMU_OP_DISCARD,
	DMU_OP_SECURE_ERASE,
	DMU_OP_WRITE_ZEROES,
	DMU_OP_OTHER,
	DMU_OP_COUNT
};

/* Reply statuses, indexed by the DM_USER_RESP_* value. */
#define DMU_STATUS_COUNT 4

/*
 * Log2 latency histogram in nanoseconds.  Bucket i < DMU_HIST_BUCKETS - 1
 * counts latencies in (2^i, 2^(i+1)] ns (bucket 0 also takes 0 and 1 ns),
 * so its upper bound is inclusive, as Prometheus's "le" wants.  The last
 * bucket counts everything above 2^(DMU_HIST_BUCKETS - 1) ns (about 9 min).
 */
#define DMU_HIST_BUCKETS 40

unsigned dmu_hist_bucket(uint64_t ns);
/* Inclusive upper bound of bucket i, for i < DMU_HIST_BUCKETS - 1. */
uint64_t dmu_hist_upper_ns(unsigned i);

enum dmu_op dmu_op_from_type(uint64_t type);
const char *dmu_op_name(enum dmu_op op);
const char *dmu_status_name(unsigned status);

struct dmu_op_counters {
	_Atomic uint64_t requests;
	_Atomic uint64_t bytes;		/* of successful requests */
	_Atomic uint64_t errors;	/* ERROR replies */
	_Atomic uint64_t latency_sum_ns;
	_Atomic uint64_t latency[DMU_HIST_BUCKETS];
};

struct dmu_thread_metrics {
	struct dmu_op_counters op[DMU_OP_COUNT];
	_Atomic uint64_t replies[DMU_STATUS_COUNT];
	_Atomic uint64_t in_flight;		/* read, not yet answered */
	_Atomic uint64_t backend_flushes;	/* fdatasync and the like */
	_Atomic uint64_t channel_reopens;
	_Atomic uint64_t channel_reads;		/* read() calls that returned data */
	_Atomic uint64_t channel_requests_read;
	_Atomic uint64_t channel_writes;	/* write()/writev() calls that sent data */
	_Atomic uint64_t batched;		/* 1 while the channel batches */
} __attribute__((aligned(64)));

struct dmu_metrics {
	unsigned threads;
	struct dmu_thread_metrics *thread;	/* [threads] */
};

int dmu_metrics_init(struct dmu_metrics *m, unsigned threads);
void dmu_metrics_free(struct dmu_metrics *m);

/*
 * Request path: called only by the thread that owns t.
 *
 * A read() that returned data counts once in channel_reads, whether it
 * brought requests or more of a request already counted; received() counts
 * the requests it brought, and they are in flight until end() accounts for
 * each one's reply, or idle() says the channel holds none any more (after
 * a broken stream some are never answered).
 */
void dmu_metrics_read(struct dmu_thread_metrics *t);
void dmu_metrics_received(struct dmu_thread_metrics *t, unsigned requests);
void dmu_metrics_wrote(struct dmu_thread_metrics *t);
void dmu_metrics_end(struct dmu_thread_metrics *t, enum dmu_op op,
		     unsigned status, uint64_t bytes, uint64_t latency_ns);
void dmu_metrics_idle(struct dmu_thread_metrics *t);
void dmu_metrics_flushed(struct dmu_thread_metrics *t);
void dmu_metrics_reopened(struct dmu_thread_metrics *t);
void dmu_metrics_batched(struct dmu_thread_metrics *t, bool batched);

struct dmu_op_snapshot {
	uint64_t requests;
	uint64_t bytes;
	uint64_t errors;
	uint64_t latency_sum_ns;
	uint64_t latency_count;		/* the sum of the buckets */
	uint64_t latency[DMU_HIST_BUCKETS];
};

struct dmu_metrics_snapshot {
	struct dmu_op_snapshot op[DMU_OP_COUNT];
	uint64_t replies[DMU_STATUS_COUNT];
	uint64_t in_flight;
	uint64_t backend_flushes;
	uint64_t channel_reopens;
	uint64_t channel_reads;
	uint64_t channel_requests_read;
	uint64_t channel_writes;
	uint64_t channels_batched;
};

/* Sum every thread's counters; safe while the workers run. */
void dmu_metrics_snapshot(const struct dmu_metrics *m,
			  struct dmu_metrics_snapshot *s);

#endif
