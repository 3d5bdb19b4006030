/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdmuser's internals, shared by its source files and by nothing else.
 * Internal functions are named dmu__* and marked hidden: the version
 * script's "dmu_*" would match them, but a hidden symbol is never exported
 * (tests/unit/lib checks the exported list against the public header).
 */
#ifndef DMUSER_INTERNAL_H
#define DMUSER_INTERNAL_H

#include <linux/dm-user.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "dmuser.h"

#define HIDDEN __attribute__((visibility("hidden")))
#define PRINTF(f, a) __attribute__((format(printf, f, a)))

#define PAGE 4096u
#define MSG_SIZE sizeof(struct dm_user_message)
#define CONTROL_DIR "/dev/dm-user"
#define MAPPER_DIR "/dev/mapper"
#define DEFAULT_MAX_IO_SECTORS 2048u
#define CONTROL_NAME_MAX 64		/* the target's limit */
#define DEVICE_NAME_MAX 127		/* DM_NAME_LEN - 1 */

/* ---- log.c ---- */
HIDDEN void dmu__log(int level, const char *fmt, ...) PRINTF(2, 3);
#define dmu__err(...) dmu__log(DMU_LOG_ERROR, __VA_ARGS__)
#define dmu__warn(...) dmu__log(DMU_LOG_WARNING, __VA_ARGS__)
#define dmu__info(...) dmu__log(DMU_LOG_INFO, __VA_ARGS__)
HIDDEN bool dmu__log_enabled(int level);

HIDDEN uint64_t dmu__now_ns(void);

/* ---- metrics.c ---- */

/* Operations as the metrics name them; every other request type is "other". */
enum mop {
	MOP_READ,
	MOP_WRITE,
	MOP_FLUSH,
	MOP_DISCARD,
	MOP_SECURE_ERASE,
	MOP_WRITE_ZEROES,
	MOP_OTHER,
	MOP_COUNT
};

#define STATUS_COUNT 4		/* DM_USER_RESP_SUCCESS .. NOSPC */

/*
 * Log2 latency histogram in nanoseconds: bucket i < HIST_BUCKETS - 1
 * counts (2^i, 2^(i+1)] ns (bucket 0 also 0 and 1 ns); the last one
 * everything above 2^(HIST_BUCKETS - 1) ns.
 */
#define HIST_BUCKETS 40

HIDDEN unsigned dmu__hist_bucket(uint64_t ns);
HIDDEN uint64_t dmu__hist_upper_ns(unsigned i);
HIDDEN enum mop dmu__mop(uint64_t type);
HIDDEN const char *dmu__mop_name(enum mop op);
HIDDEN const char *dmu__status_name(unsigned status);

struct op_counters {
	_Atomic uint64_t requests;
	_Atomic uint64_t bytes;		/* of successful requests */
	_Atomic uint64_t errors;	/* ERROR and NOSPC replies */
	_Atomic uint64_t latency_sum_ns;
	_Atomic uint64_t latency[HIST_BUCKETS];
};

/* One channel's counters: its serving thread is the only writer. */
struct chan_metrics {
	struct op_counters op[MOP_COUNT];
	_Atomic uint64_t replies[STATUS_COUNT];
	_Atomic uint64_t in_flight;
	_Atomic uint64_t backend_flushes;
	_Atomic uint64_t channel_reopens;
	_Atomic uint64_t channel_reads;
	_Atomic uint64_t channel_requests_read;
	_Atomic uint64_t channel_writes;
	_Atomic uint64_t batched;
} __attribute__((aligned(64)));

struct op_snapshot {
	uint64_t requests;
	uint64_t bytes;
	uint64_t errors;
	uint64_t latency_sum_ns;
	uint64_t latency_count;
	uint64_t latency[HIST_BUCKETS];
};

struct metrics_snapshot {
	struct op_snapshot op[MOP_COUNT];
	uint64_t replies[STATUS_COUNT];
	uint64_t in_flight;
	uint64_t backend_flushes;
	uint64_t channel_reopens;
	uint64_t channel_reads;
	uint64_t channel_requests_read;
	uint64_t channel_writes;
	uint64_t channels_batched;
	unsigned channels;
};

HIDDEN void dmu__m_read(struct chan_metrics *m);
HIDDEN void dmu__m_received(struct chan_metrics *m, unsigned requests);
HIDDEN void dmu__m_wrote(struct chan_metrics *m);
HIDDEN void dmu__m_end(struct chan_metrics *m, enum mop op, unsigned status,
		       uint64_t bytes, uint64_t latency_ns);
HIDDEN void dmu__m_idle(struct chan_metrics *m);
HIDDEN void dmu__m_flushed(struct chan_metrics *m);
HIDDEN void dmu__m_reopened(struct chan_metrics *m);
HIDDEN void dmu__m_batched(struct chan_metrics *m, bool on);
/* Adds m to s (in_flight and batched only when live). */
HIDDEN void dmu__m_add(struct metrics_snapshot *s, const struct chan_metrics *m,
		       bool live);

/* ---- device.c ---- */

struct dmu_device {
	char name[DEVICE_NAME_MAX + 1];
	char control_name[CONTROL_NAME_MAX + 1];
	char control_path[sizeof(CONTROL_DIR) + CONTROL_NAME_MAX + 1];
	_Atomic uint64_t size;		/* bytes */
	uint64_t dev_start;		/* sectors: what the daemon sees for sector 0 */
	uint32_t queue_depth, timeout_ms, recovery_ms, max_io_len;
	bool read_only;
	bool managed;			/* a dm device is behind it */
	uint32_t devt;			/* major << 20 | minor */
	uint64_t start_ns;

	int stop_fd;			/* eventfd, written once by dmu_device_stop */
	atomic_bool stopping;

	pthread_mutex_t lock;		/* channels, retired */
	struct dmu_channel *channels;
	unsigned nchannels;
	struct metrics_snapshot retired;	/* closed channels' counts */
};

/* The target's status line ("dmsetup status" after the type); 0 or -errno. */
HIDDEN int dmu__status_line(struct dmu_device *dev, char *buf, size_t len);
HIDDEN void dmu__device_add_channel(struct dmu_device *dev, struct dmu_channel *ch);
HIDDEN void dmu__device_del_channel(struct dmu_device *dev, struct dmu_channel *ch);
HIDDEN void dmu__device_snapshot(struct dmu_device *dev, struct metrics_snapshot *s);

/* ---- channel.c ---- */

/*
 * The smallest request worth a splice: below it the syscalls a splice adds
 * (per READ: three, and no reply gathering) cost more than the copy they
 * save (make bench, tests/bench/README.md "Splice").
 */
#define SPLICE_MIN (64 * 1024)
#define MAX_REPLIES 256		/* gathered for one writev(): 2 iovecs each */

struct pending_reply {
	unsigned char *msg;		/* the request's header, status in type */
	const unsigned char *data;	/* a successful READ's data, or NULL */
	size_t data_len;
	uint64_t len;			/* the request's, for the metrics */
	uint64_t seq;
	uint64_t read_ns;
	enum mop op;
	unsigned status;
	int tag;			/* asynchronous: the slot to free once sent */
};

struct dmu_req {
	struct dmu_channel *ch;
	struct dmu_req *next;		/* completion stack */
	unsigned char *msg;		/* header, right before buf */
	unsigned char *buf;		/* cap bytes, page aligned */
	uint64_t seq, type, flags, offset, len;
	uint64_t read_ns;
	int err;
	unsigned tag;
	bool busy;
};

struct dmu_channel {
	struct dmu_device *dev;
	struct dmu_channel *next_in_dev;
	int fd;
	int stop_fd;			/* eventfd: dmu_channel_stop */
	atomic_bool stopping;
	bool want_batch;
	bool batching;
	size_t cap;			/* payload buffer bytes */
	size_t align;			/* the backend's, for writes */
	uint64_t poll_ns;		/* busy polling after a read (poll_us) */
	uint64_t read_ns;
	int last_errno;
	unsigned logged_errors;

	/*
	 * Splicing (dmu_ops.locate, target 1.6.0): requests are spliced into
	 * pin, READ replies go out through pout; -1 when not set up, and
	 * only then (the channel splices while pin[0] >= 0).  hdrs
	 * holds the headers taken out of pin: the pending replies are the
	 * last MAX_REPLIES of them at most, and one more is being served.
	 */
	int pin[2], pout[2];
	size_t pipe_bytes;
	bool splice_in;			/* take the next requests by splice */
	bool in_pipe;			/* this round's requests came by splice */
	bool large_write;		/* this round had a WRITE of SPLICE_MIN or more */
	bool splice_tried;
	unsigned hdr_next;
	struct dm_user_message hdrs[MAX_REPLIES + 1];

	/* Read buffer: [ page: header at its end | cap | batching: cap ] */
	unsigned char *mem;
	size_t mem_size;
	struct dm_user_message *msg;
	unsigned char *data;
	unsigned char *reply_data;
	size_t reply_data_used;

	unsigned npending;
	struct pending_reply pending[MAX_REPLIES];
	struct iovec iov[2 * MAX_REPLIES];

	/* Asynchronous channels. */
	unsigned depth;
	int epfd, done_fd;
	unsigned char *slot_mem;
	size_t slot_mem_size;
	struct dmu_req *reqs;		/* [depth] */
	unsigned *free_tags;		/* a stack */
	unsigned nfree;
	unsigned inflight;		/* read, not yet answered */
	_Atomic(struct dmu_req *) done;	/* completion stack */
	size_t staged_off, staged_got;	/* batched requests not yet in a slot */
	bool gone;			/* the stream ended or broke */
	int gone_err;
	bool ctrl_armed;		/* fd is in the epoll set */
	bool stop_seen;			/* the stop eventfds left the epoll set */

	struct chan_metrics m;
};

enum result { RS_OK, RS_AGAIN, RS_GONE, RS_BROKEN };

HIDDEN unsigned dmu__status_for(int err);
HIDDEN void dmu__set_status(unsigned char *msg, unsigned status);
HIDDEN enum result dmu__fd_failed(struct dmu_channel *ch, int err);
/* Read exactly len bytes of the current request (waiting for them). */
HIDDEN enum result dmu__read_exact(struct dmu_channel *ch, void *buf, size_t len);
/* Write iov[0..n) in full (using the iovecs up), adding to *sent. */
HIDDEN enum result dmu__write_iov(struct dmu_channel *ch, struct iovec *iov,
				  unsigned n, size_t *sent);
/* Whether the request lies within the device, as the kernel numbers sectors. */
HIDDEN bool dmu__in_range(const struct dmu_device *dev, uint64_t sector, uint64_t len);
/* Whether got bytes read divide into requests as the protocol says; counts them. */
HIDDEN bool dmu__frame(const struct dmu_channel *ch, const unsigned char *buf,
		       size_t got, unsigned *count);

/* ---- render.c ---- */

/* Everything a scrape reports besides the counters. */
struct render_info {
	const char *version;
	const char *name;
	const char *backing_file;
	const char *backend;
	const char *control_path;
	uint64_t size_bytes;
	unsigned threads;
	bool read_only;
	bool direct;
	double uptime_seconds;
	const char *target_status;	/* the target's status line, or NULL */
};

/* A snapshot and its info as JSON or Prometheus text. */
HIDDEN int dmu__render_doc(const struct metrics_snapshot *s, const struct render_info *info,
			   enum dmu_metrics_format format, char **buf, size_t *len);

HIDDEN int dmu__render(struct dmu_device *dev, enum dmu_metrics_format format,
		       const struct dmu_metrics_opts *opts, char **buf, size_t *len);

/* ---- prom.c, listen.c: in intree.h, which the tree's programs use too ---- */
#include "intree.h"

/* Copy an options struct of caller size sz into a zeroed one of ours. */
#define OPTS_COPY(dst, src)						\
	do {								\
		memset(&(dst), 0, sizeof(dst));				\
		if (src) {						\
			size_t n_ = (src)->sz < sizeof(dst) ? (src)->sz : sizeof(dst); \
			memcpy(&(dst), (src), n_);			\
		}							\
	} while (0)

#endif
