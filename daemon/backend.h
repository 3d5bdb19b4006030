/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A backend stores the device's bytes.  Two kinds:
 *   blocking      libdmuser's blocking loop turns each request into
 *                 callbacks, and ops.c into calls on the ops table below
 *                 (the file backend);
 *   asynchronous  ops->async is set: the worker opens its channel with
 *                 async->depth slots and runs libdmuser's asynchronous API
 *                 (worker.c); submit starts a request, which the backend
 *                 completes later, in any order, with dmu_req_complete()
 *                 (the NBD backend).  Its blocking ops may be NULL.
 * A backend is chosen by the scheme of its URI (backend.c, the table of
 * schemes); a new one is a file that fills these in and a line there.
 *
 * Every op returns 0 or a negative errno; -EOPNOTSUPP becomes the
 * UNSUPPORTED reply.  Offsets and lengths are in bytes and already checked
 * against the device size.  All ops may be called concurrently from every
 * worker thread, on the instance that ops->worker gives each thread:
 * implementations keep no mutable shared state on these paths.
 */
#ifndef DMUSERD_BACKEND_H
#define DMUSERD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dmu_backend;
struct dmu_req;

/*
 * An asynchronous backend, driven by its worker's loop (worker.c): the
 * loop waits on the channel's pollfd and on the descriptor poll_fd names,
 * calls notify when that one is ready, and dmu_channel_process() when the
 * channel is.  All on the worker's thread, on the worker's instance.
 */
struct dmu_backend_async_ops {
	unsigned depth;		/* requests in flight per worker (channel slots) */
	/*
	 * Start req (dmu_req_type(): READ, WRITE, FLUSH, DISCARD,
	 * WRITE_ZEROES, SECURE_ERASE), honouring PREFLUSH, FUA and NOUNMAP
	 * in dmu_req_flags().  0: dmu_req_complete() follows (from notify or
	 * from submit itself); a negative errno: the request is answered so
	 * at once and never completed.
	 */
	int (*submit)(struct dmu_backend *b, struct dmu_req *req);
	/* The descriptor to wait on now and its poll events; -1: none. */
	int (*poll_fd)(struct dmu_backend *b, short *events);
	/* The descriptor is ready (revents from poll): make progress. */
	void (*notify)(struct dmu_backend *b, short revents);
	/*
	 * Optional (NULL: -1): how long the loop may wait, in ms, before
	 * calling notify with revents 0 (a timer: the NBD backend's
	 * reconnect backoff and window); -1: no limit.  Asked after poll_fd.
	 */
	int (*timeout_ms)(struct dmu_backend *b);
};

/* A backend's own counters (the metrics' "backend" object); all 0 for a file. */
struct dmu_backend_counters {
	uint64_t reconnects;		/* connections re-established */
	uint64_t reconnect_attempts;	/* attempts to (re-)establish one, successful or not */
	uint64_t requests_replayed;	/* held requests started again on a new connection */
	uint64_t requests_failed;	/* held requests failed with EIO: no connection in the window */
	uint64_t disconnected;		/* connections down now (a gauge) */
};

struct dmu_backend_ops {
	/* Fill buf with len bytes from off. */
	int (*read)(struct dmu_backend *b, void *buf, size_t len, uint64_t off);
	/* Store len bytes of buf at off (not necessarily durable yet). */
	int (*write)(struct dmu_backend *b, const void *buf, size_t len, uint64_t off);
	/* Make every completed write durable. */
	int (*flush)(struct dmu_backend *b);
	/* Forget a range; reads of it must return zeroes afterwards. */
	int (*discard)(struct dmu_backend *b, uint64_t off, uint64_t len);
	/*
	 * Make a range read as zeroes.  may_unmap: storage may be
	 * deallocated (the request did not carry NOUNMAP).
	 */
	int (*write_zeroes)(struct dmu_backend *b, uint64_t off, uint64_t len,
			    bool may_unmap);
	/* Overwrite a range with zeroes, durably. */
	int (*secure_erase)(struct dmu_backend *b, uint64_t off, uint64_t len);
	/*
	 * Optional (NULL: the size never changes): the bytes the storage
	 * holds now, in *size.  libdmuser asks when a request lies beyond
	 * the size it knows: the device may have grown since start-up
	 * (dmuserd --resize grows the backing file before the table).
	 */
	int (*probe_size)(struct dmu_backend *b, uint64_t *size);
	/*
	 * Optional (NULL: read and write only): the descriptor holding
	 * [off, off + len) and the offset there, which libdmuser splices a
	 * WRITE's payload to (write) or a READ's data from (dmu_ops.locate):
	 * one copy of the data instead of two.  -EOPNOTSUPP: read or write
	 * this one.
	 */
	int (*locate)(struct dmu_backend *b, bool write, uint64_t off, uint64_t len,
		      int *fd, uint64_t *fd_off);
	/*
	 * Optional (NULL: every worker shares b): the instance worker
	 * `index` (0 .. threads - 1, as opened) serves with, for a backend
	 * whose connection serialises its commands (a libnbd handle).
	 */
	struct dmu_backend *(*worker)(struct dmu_backend *b, unsigned index);
	/* Optional: the asynchronous interface (above). */
	const struct dmu_backend_async_ops *async;
	/*
	 * Optional: how long requests wait for a lost server to come back
	 * (ms; 0: they fail at once).  Any thread, at any time.
	 */
	void (*set_reconnect_ms)(struct dmu_backend *b, uint32_t ms);
	/* Optional (NULL: all 0): the counters, summed over workers.  Any thread. */
	void (*counters)(struct dmu_backend *b, struct dmu_backend_counters *c);
};

struct dmu_backend {
	const struct dmu_backend_ops *ops;
	/*
	 * Bytes exposed as the device at start-up.  libdmuser keeps the size
	 * served from then on, and raises it after probe_size when a request
	 * lies beyond it.
	 */
	uint64_t size;
	/*
	 * Alignment the buffers given to read and write should have, in
	 * bytes (O_DIRECT); 0 or 1 for none.  Callers that cannot meet it
	 * cheaply may still pass other buffers: they must work, if slower.
	 */
	size_t mem_align;
};

/* What dmuserd asked for: the backend's URI, taken apart by its scheme. */
struct dmu_backend_args {
	const char *uri;	/* as given: "file:PATH", "nbd://...", ... */
	const char *path;	/* file: the path after "file:" */
	uint64_t size;		/* --size; 0: the storage's own size */
	unsigned workers;	/* --threads: instances to open (ops->worker) */
	bool direct;
	bool read_only;
};

/*
 * One line of the table of schemes (backend.c).  open is NULL for a
 * backend this dmuserd was built without: its URIs are refused by name.
 */
struct dmu_backend_type {
	const char *name;	/* the metrics' backend label: "file", "nbd" */
	/* URI schemes (before the ':'), NULL-terminated */
	const char *const *schemes;
	/* Prints the reason and returns -1 on failure; -2: the URI itself is bad (a usage error). */
	int (*open)(const struct dmu_backend_args *args, struct dmu_backend **b);
	void (*close)(struct dmu_backend *b);
};

/*
 * The type whose scheme the URI has, or NULL (message printed, naming the
 * URI: an unknown scheme, or a backend not built in).
 */
const struct dmu_backend_type *dmu_backend_find(const char *uri);
/* The instance worker index serves with. */
struct dmu_backend *dmu_backend_for_worker(struct dmu_backend *b, unsigned index);

#endif
