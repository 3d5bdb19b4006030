/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libdmuser: serve a dm-user device (the "user" device-mapper target) from
 * userspace.  The full reference is libdmuser(3); lib/README.md has a tour.
 *
 * Objects, all opaque:
 *   struct dmu_device   a dm device of target "user" (libdevmapper: create,
 *                       attach, resize, remove), and the home of its
 *                       channels' metrics and of the stop switch they share
 *   struct dmu_channel  one open of /dev/dm-user/<control-name>, served by
 *                       one thread: a blocking loop with callbacks
 *                       (dmu_channel_run) or the asynchronous API
 *                       (dmu_channel_process + dmu_req_complete)
 *   struct dmu_req      a request of the asynchronous API, from its submit
 *                       callback to its dmu_req_complete()
 *   struct dmu_http     an HTTP endpoint serving the metrics
 *
 * Conventions.  Functions that can fail return 0 or a negative errno
 * (dmu_channel_process() also returns DMU_STOPPED).  Option structs start
 * with `size_t sz`, set to sizeof(the struct) by the caller (DMU_OPTS does
 * it): a newer library reads only the fields an older caller knew of, so
 * structs can grow without breaking the ABI.  A NULL options pointer means
 * every default.  Every exported symbol starts with dmu_ and carries the
 * symbol version of the release that added it (DMUSER_1.0, DMUSER_1.1);
 * 1.2 added no function, only members at the end of struct
 * dmu_target_status; 1.3 likewise `backend` at the end of struct
 * dmu_metrics_opts; 1.4 `poll_us` at the end of struct dmu_channel_opts;
 * 1.5 `locate` at the end of struct dmu_ops.  The soname is libdmuser.so.1.
 *
 * Thread safety is stated per function.  In short: device calls may be
 * made from any thread (libdevmapper calls are serialised inside); a
 * channel belongs to the thread that serves it, except dmu_channel_stop(),
 * dmu_channel_pollfd() and dmu_req_complete(), which any thread may call;
 * metrics may be rendered from any thread while channels serve.  No
 * function on the request path allocates memory, and none uses signals.
 */
#ifndef DMUSER_H
#define DMUSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DMU_VERSION_MAJOR 1
#define DMU_VERSION_MINOR 5
#define DMU_VERSION_PATCH 0

#if defined(__GNUC__)
#define DMU_API __attribute__((visibility("default")))
#else
#define DMU_API
#endif

/* Declares and fills an option struct: DMU_OPTS(dmu_device_opts, o, .timeout_ms = 30000); */
#define DMU_OPTS(type, name, ...) \
	struct type name = { .sz = sizeof(struct type), __VA_ARGS__ }

/* The library's version, "MAJOR.MINOR.PATCH".  Any thread. */
DMU_API const char *dmu_version(void);

/* ---- logging ------------------------------------------------------------ */

enum dmu_log_level {
	DMU_LOG_ERROR = 3,
	DMU_LOG_WARNING = 4,
	DMU_LOG_INFO = 6,
	DMU_LOG_DEBUG = 7,
};

/*
 * Receives one message, without a newline and without a level prefix.
 * Called from any thread, also from serving threads (a backend error is
 * logged there), so it must not block for long.
 */
typedef void (*dmu_log_fn)(void *arg, int level, const char *msg);

/*
 * Route the library's messages (and libdevmapper's errors) to fn, for
 * levels up to max_level.  fn NULL: the default, one write(2) per message
 * to stderr, "libdmuser: <msg>" ("libdmuser: warning: <msg>").  The default
 * max_level is DMU_LOG_WARNING.  Call it before starting threads.
 */
DMU_API void dmu_set_log(dmu_log_fn fn, void *arg, int max_level);

/* ---- devices ------------------------------------------------------------ */

struct dmu_device;

/* Table options (module/README.md, "Table line"). */
struct dmu_device_opts {
	size_t sz;
	const char *control_name;	/* /dev/dm-user/<this>; default: the device's name */
	uint32_t queue_depth;		/* requests queued + in flight; 0: unlimited */
	uint32_t timeout_ms;		/* 0: no timeout */
	uint32_t recovery_ms;		/* requeue window when the daemon goes; 0: none */
	uint32_t max_io_len;		/* largest request, in 512-byte sectors; 0: 2048 */
	bool read_only;			/* a read-only dm device; writes are refused */
};

/*
 * Create dm device `name` (1 to 127 characters, no '/') of `size` bytes (a
 * positive multiple of 512) and load its table, one "user" target:
 *   0 <sectors> user 0 <sectors> <control-name> [options]
 * The device is left suspended: its control device exists, so channels
 * can be opened, but no I/O arrives until dmu_device_resume().  On failure
 * nothing is left behind; -EEXIST if the name is taken.  Needs root and
 * dm-user.ko.  Any thread.
 */
DMU_API int dmu_device_create(const char *name, uint64_t size,
			      const struct dmu_device_opts *opts,
			      struct dmu_device **devp);

/*
 * Take over an existing device, typically after the daemon restarted: its
 * table must be a single "user" target; size, control name, options and
 * read-only state are read from it.  -ENODEV if there is no such device,
 * -EINVAL if it is not a "user" device.  dmu_device_free() leaves it in
 * place.  Any thread.
 */
DMU_API int dmu_device_attach(const char *name, struct dmu_device **devp);

/*
 * A handle with no dm device behind it, for channels opened on a
 * descriptor with dmu_channel_open_fd() (a control device opened by
 * another program, or a test's fake kernel).  Lifecycle calls on it fail
 * with -EOPNOTSUPP; channels, stop and metrics work.  Any thread.
 */
DMU_API int dmu_device_new(const char *name, uint64_t size,
			   const struct dmu_device_opts *opts,
			   struct dmu_device **devp);

/*
 * Make the loaded table live; /dev/mapper/<name> exists when it returns
 * (made by udev when udev runs and DM_DISABLE_UDEV is unset, as
 * libdevmapper decides, else by libdevmapper itself).  Any thread.
 */
DMU_API int dmu_device_resume(struct dmu_device *dev);

/*
 * Change the size: reload the live table with the new length and the same
 * options, then resume.  Channels stay open and no request fails (needs
 * target version 1.4.0).  A failed reload changes nothing.  Any thread but
 * a serving one: the resume suspends the device first, which waits for the
 * requests in flight, so channels must keep serving meanwhile.
 */
DMU_API int dmu_device_resize(struct dmu_device *dev, uint64_t size);

/*
 * Read the live table again: size, options, read-only state.  For a device
 * resized or reloaded by another program (dmsetup reload, or another
 * process's dmu_device_resize): until this is called, requests past the
 * size this handle knows fail with EIO, since serving them could take a
 * backend past its end.  Any thread.
 */
DMU_API int dmu_device_refresh(struct dmu_device *dev);

/*
 * The table's parameters as this handle knows them (from create, attach,
 * resize or the last dmu_device_refresh), as `dmsetup table` prints them
 * after the target type: "<start> <sectors> <control-name> [<n> <options>]".
 * Into buf, NUL-terminated; -ENOSPC if len is too small.  Since 1.1.
 * Any thread.
 */
DMU_API int dmu_device_table(const struct dmu_device *dev, char *buf, size_t len);

/* Change timeout_ms / recovery_ms of the live table (a dm message).  Any thread. */
DMU_API int dmu_device_set_timeout_ms(struct dmu_device *dev, uint32_t ms);
DMU_API int dmu_device_set_recovery_ms(struct dmu_device *dev, uint32_t ms);

/*
 * Remove the dm device.  libdevmapper retries for a few seconds while it
 * is open; then -EBUSY and the device stays.  Removal suspends the device
 * first, which waits for the requests in flight: call it from a thread
 * that does not serve, while the channels keep serving.  They then see
 * the target go (dmu_channel_run() returns -ENOTBLK).  Any other thread.
 */
DMU_API int dmu_device_remove(struct dmu_device *dev);

/*
 * Ask every channel of the device to stop: blocking loops return 0 once
 * the requests in hand are answered; dmu_channel_process() stops reading
 * and returns DMU_STOPPED when the backend has completed every request.
 * Async-signal-safe; any thread.  It cannot be undone.
 */
DMU_API void dmu_device_stop(struct dmu_device *dev);

/*
 * Free the handle (not the dm device: see dmu_device_remove).  Every
 * channel must be closed first; otherwise -EBUSY and nothing is freed.
 */
DMU_API int dmu_device_free(struct dmu_device *dev);

/* Getters: any thread.  Strings live as long as the handle. */
DMU_API const char *dmu_device_name(const struct dmu_device *dev);
DMU_API const char *dmu_device_control_path(const struct dmu_device *dev);
DMU_API uint64_t dmu_device_size(const struct dmu_device *dev);
DMU_API bool dmu_device_read_only(const struct dmu_device *dev);
/* The largest request in bytes (max_io_len * 512). */
DMU_API uint64_t dmu_device_max_io(const struct dmu_device *dev);
/*
 * The device number as the kernel's tracepoints print it (major << 20 |
 * minor), to join the library's USDT probes with them; 0 without a dm
 * device.
 */
DMU_API uint32_t dmu_device_devt(const struct dmu_device *dev);

/*
 * The target's counters, as `dmsetup status` prints them (module/README.md
 * "Status and messages").  The first seven are in every target's line.
 * Since 1.2 the library also reads the six saturation and stall fields a
 * target of version 1.5.0 or later appends, and says in `fields` how many
 * numbers the line had: the six are valid when fields >= 13, and 0 on an
 * older target (fields 7).  A count, rather than testing the six for 0:
 * 0 is their ordinary value on an idle device.  On return sz is the number
 * of bytes the library filled, so a caller built against 1.2 that runs on
 * a 1.1 library sees sz <= offsetof(struct dmu_target_status, fields) and
 * knows that neither `fields` nor the six were read.
 */
struct dmu_target_status {
	size_t sz;
	uint64_t channels;
	uint64_t queued;
	uint64_t in_flight;
	uint64_t completed;
	uint64_t errors;
	uint64_t timeouts;
	uint64_t requeues;
	/* since 1.2 */
	uint32_t fields;	/* numbers on the status line: 7 before target 1.5.0, 13 from it */
	uint64_t depth_waits;	/* submitters that waited in map() for queue_depth */
	uint64_t depth_wait_us;	/* their waits, in all, in microseconds */
	uint64_t hwm_queued;	/* most requests queued at once (since creation or reset_hwm) */
	uint64_t hwm_in_flight;	/* most requests held by daemons at once (likewise) */
	uint64_t stalls;	/* requests held past stall_ms (dm_user_stall events) */
	uint64_t oldest_us;	/* age of the oldest request held now, in microseconds; 0: none */
};

/*
 * Read the live table's status into *st (set st->sz first).  -EPROTO if
 * the line does not start with seven numbers.  Any thread.
 */
DMU_API int dmu_device_status(struct dmu_device *dev, struct dmu_target_status *st);

/* ---- channels ----------------------------------------------------------- */

struct dmu_channel;

enum dmu_batch {
	DMU_BATCH_AUTO = 0,	/* several requests per read() where the module can */
	DMU_BATCH_OFF = 1,	/* one request per read(), as the original protocol */
};

struct dmu_channel_opts {
	size_t sz;
	/* enum dmu_batch */
	unsigned batch;
	/*
	 * Payload buffer in bytes, a multiple of 4096; 0: the device's
	 * max_io (1 MiB by default).  A blocking channel serves larger
	 * requests a buffer at a time; an asynchronous one answers them
	 * with an error.
	 */
	size_t buffer_size;
	/*
	 * 0: a blocking channel (dmu_channel_run).  N > 0: an asynchronous
	 * one with N request slots (each a buffer of buffer_size bytes), N
	 * requests at most with the backend at once.
	 */
	unsigned async_depth;
	/*
	 * Alignment the backend wants for data buffers (O_DIRECT), bytes, a
	 * power of two up to 4096; 0: none.  Buffers are page aligned; with
	 * batching a blocking channel copies a write whose payload is not.
	 */
	size_t mem_align;
	/* Do not call prctl(PR_SET_IO_FLUSHER) on the opening thread. */
	bool no_io_flusher;
	/*
	 * Blocking channels (since 1.4): after a read() that brought
	 * requests, keep reading without sleeping for up to poll_us
	 * microseconds before waiting in poll() (busy polling).  The thread
	 * spends that CPU; in return a request that comes within it is taken
	 * without a wake-up, the cost that dominates at queue depth 1.  The
	 * reader stays busy for the module meanwhile, so map() wakes nobody.
	 * 0: off (wait at once); at most 1000000.  An asynchronous channel
	 * ignores it.  64 bits so that it starts past the end of the 1.3
	 * struct: a caller built against 1.3 passes a sz that stops before
	 * it, never its padding after no_io_flusher.
	 */
	uint64_t poll_us;
};

/*
 * Open a channel on the device's control device (waiting up to 5 s for
 * its node to appear), ask for batching unless opts->batch is
 * DMU_BATCH_OFF (a module without it answers ENOTTY; the channel then
 * reads one request at a time), allocate and touch every buffer it will
 * use, and set PR_SET_IO_FLUSHER on the calling thread (a failure is only
 * logged: it needs CAP_SYS_RESOURCE).  Open it on the thread that will
 * serve it.  The device's handle must outlive the channel.
 */
DMU_API int dmu_channel_open(struct dmu_device *dev,
			     const struct dmu_channel_opts *opts,
			     struct dmu_channel **chp);

/*
 * The same on a descriptor that behaves like the control device; the
 * channel owns fd from then on (closes it), also when this fails.
 */
DMU_API int dmu_channel_open_fd(struct dmu_device *dev, int fd,
				const struct dmu_channel_opts *opts,
				struct dmu_channel **chp);

/*
 * Open the control device again after dmu_channel_run() or
 * dmu_channel_process() failed with a broken stream (a negative errno
 * other than -ENOTBLK): same buffers, a new channel for the kernel.  Only
 * with no request in flight.  The serving thread.
 */
DMU_API int dmu_channel_reopen(struct dmu_channel *ch);

/*
 * Close the channel and free it.  -EBUSY, and nothing happens, while the
 * backend still holds requests (asynchronous channels).  Requests the
 * kernel had handed it and that were not answered are requeued or failed
 * by the kernel (recovery_ms).  The serving thread, once it stopped.
 */
DMU_API int dmu_channel_close(struct dmu_channel *ch);

/* Ask this channel to stop, as dmu_device_stop() does for all.  Async-signal-safe; any thread. */
DMU_API void dmu_channel_stop(struct dmu_channel *ch);

/* The control device's descriptor.  Any thread. */
DMU_API int dmu_channel_fd(const struct dmu_channel *ch);
/* True when the module agreed to batch requests on this channel.  Any thread. */
DMU_API bool dmu_channel_batching(const struct dmu_channel *ch);
/* Requests read from the kernel and not yet answered.  The serving thread. */
DMU_API unsigned dmu_channel_inflight(const struct dmu_channel *ch);

/* ---- serving: the blocking loop ----------------------------------------- */

/*
 * Callbacks, on the serving thread, for one request each.  They return 0
 * or a negative errno: -ENOSPC becomes the NOSPC reply (the writer sees
 * ENOSPC), -EOPNOTSUPP the UNSUPPORTED reply, anything else ERROR (EIO).
 * Offsets and lengths are in bytes, already checked against the device
 * size.  A NULL callback: read, write, discard, secure_erase answer
 * UNSUPPORTED; flush succeeds at once (nothing is cached); write_zeroes
 * writes zeroes through write.  The library honours the request flags:
 * PREFLUSH calls flush before the request, FUA after it.
 */
struct dmu_ops {
	size_t sz;
	int (*read)(void *arg, void *buf, size_t len, uint64_t offset);
	int (*write)(void *arg, const void *buf, size_t len, uint64_t offset);
	int (*flush)(void *arg);
	int (*discard)(void *arg, uint64_t offset, uint64_t len);
	/* may_unmap: the request did not say NOUNMAP */
	int (*write_zeroes)(void *arg, uint64_t offset, uint64_t len, bool may_unmap);
	/* overwrite the range with zeroes, durably */
	int (*secure_erase)(void *arg, uint64_t offset, uint64_t len);
	/*
	 * Optional, since 1.1: the bytes the backend holds now, in *size.
	 * Called for a request past the device size the handle knows (the
	 * table may have been reloaded larger by another program since):
	 * if the backend has grown, the handle's size is raised to it
	 * (rounded down to 512 bytes; never lowered here) and the request
	 * is served, otherwise it fails with EIO as before.  Return 0 or a
	 * negative errno (then nothing changes).  NULL: such requests fail.
	 */
	int (*probe_size)(void *arg, uint64_t *size);
	/*
	 * Optional, since 1.5: where the backend keeps the bytes [offset,
	 * offset + len), for a WRITE (write true: it will splice to it) or a
	 * READ (from it): a descriptor the library may splice(2) with (a
	 * regular file or a block device; the backend keeps it open), in
	 * *fd, and the offset there, in *fd_offset.  With it a blocking
	 * channel moves large requests (64 KiB or more) with splice()
	 * (target 1.6.0): a WRITE's payload from the kernel's pages to fd
	 * (once a round of requests had such a WRITE, the next is taken by
	 * splice), a READ's data from fd to the kernel, through pipes: one
	 * copy, where read and write make two (the buffer's).  Smaller ones
	 * go through the buffer, where batching costs fewer calls.  Flushes, FUA and errors are as
	 * with read and write, which stay required: a request this returns
	 * -EOPNOTSUPP for, or whose first splice fails with EINVAL (an
	 * O_DIRECT descriptor and unaligned memory), is served by them, as
	 * is everything on a module without splice.  Another negative errno
	 * fails the request.  Called on the serving thread, once per READ
	 * or WRITE.
	 */
	int (*locate)(void *arg, bool write, uint64_t offset, uint64_t len,
		      int *fd, uint64_t *fd_offset);
};

/*
 * Serve the channel until it is stopped (returns 0), the target goes
 * (-ENOTBLK: the device was removed), or the stream breaks (another
 * negative errno; dmu_channel_reopen() may follow).  Requests of one
 * read() are carried out in order and their replies sent together.  A
 * blocking channel only (async_depth 0).  The serving thread.
 */
DMU_API int dmu_channel_run(struct dmu_channel *ch, const struct dmu_ops *ops,
			    void *arg);

/* ---- serving: the asynchronous API -------------------------------------- */

struct dmu_req;

/* Request types: the wire protocol's numbers (DM_USER_REQ_MAP_*). */
enum dmu_req_type {
	DMU_REQ_READ = 0,
	DMU_REQ_WRITE = 1,
	DMU_REQ_FLUSH = 2,
	DMU_REQ_DISCARD = 3,
	DMU_REQ_SECURE_ERASE = 4,
	DMU_REQ_WRITE_ZEROES = 6,
};

/* Request flags: the wire protocol's bits (DM_USER_REQ_MAP_FLAG_*). */
#define DMU_REQ_FLAG_SYNC	0x00008u
#define DMU_REQ_FLAG_META	0x00010u
#define DMU_REQ_FLAG_FUA	0x00200u	/* durable before the reply */
#define DMU_REQ_FLAG_PREFLUSH	0x00400u	/* earlier writes durable first */
#define DMU_REQ_FLAG_RAHEAD	0x00800u
#define DMU_REQ_FLAG_NOWAIT	0x02000u
#define DMU_REQ_FLAG_NOUNMAP	0x08000u	/* write_zeroes: keep the blocks */

struct dmu_async_ops {
	size_t sz;
	/*
	 * Start one request (types above; others are answered UNSUPPORTED
	 * without a call).  Return 0, and call dmu_req_complete() later
	 * (it may be before submit returns); or a negative errno to answer
	 * it at once without a complete.  The backend must honour FUA and
	 * PREFLUSH itself.  Called from dmu_channel_process().
	 */
	int (*submit)(void *arg, struct dmu_req *req);
	/*
	 * Optional: called once the requests one read() brought have all
	 * been submitted, to start them together (io_uring_submit).
	 */
	void (*commit)(void *arg);
};

/* What dmu_channel_process() returns once a stop completed. */
#define DMU_STOPPED 1

/*
 * Do what can be done without waiting: send the replies of the requests
 * completed since the last call (several per writev()), then read the
 * requests the kernel has queued, as many as there are free slots, and
 * submit each.  Returns 0 (call it again when dmu_channel_pollfd() is
 * readable), DMU_STOPPED (a stop was asked for and no request is with the
 * backend any more), -ENOTBLK (the target went, and no request is with
 * the backend), or another negative errno (the stream broke).  An
 * asynchronous channel only.  The serving thread.
 */
DMU_API int dmu_channel_process(struct dmu_channel *ch,
				const struct dmu_async_ops *ops, void *arg);

/*
 * A descriptor for poll/epoll that is readable when dmu_channel_process()
 * has work: requests queued in the kernel, completions to send, a stop.
 * It is an epoll descriptor; do not read it.  Any thread.
 */
DMU_API int dmu_channel_pollfd(const struct dmu_channel *ch);

/*
 * The ready-made loop: wait on dmu_channel_pollfd(), dmu_channel_process(),
 * until it returns something else than 0: then 0 for DMU_STOPPED, or the
 * error.  For backends that complete from their own threads.  The serving
 * thread.
 */
DMU_API int dmu_channel_run_async(struct dmu_channel *ch,
				  const struct dmu_async_ops *ops, void *arg);

/*
 * Accessors, valid from submit to dmu_req_complete(); any thread that
 * holds the request.  Offsets and lengths are bytes.
 */
DMU_API unsigned dmu_req_type(const struct dmu_req *req);
DMU_API uint64_t dmu_req_flags(const struct dmu_req *req);
DMU_API uint64_t dmu_req_offset(const struct dmu_req *req);
DMU_API uint64_t dmu_req_len(const struct dmu_req *req);
/* The kernel's sequence number (the tracepoints' seq). */
DMU_API uint64_t dmu_req_seq(const struct dmu_req *req);
/* The slot, 0 .. async_depth - 1: index per-request state of your own with it. */
DMU_API unsigned dmu_req_tag(const struct dmu_req *req);
/*
 * READ: where the data go (dmu_req_len() bytes); WRITE: the payload.
 * Page aligned.  NULL for the other types.
 */
DMU_API void *dmu_req_buf(struct dmu_req *req);

/*
 * The backend is done with req: err 0 or a negative errno, mapped to the
 * reply as for dmu_ops.  Any thread, in any order; lock-free; the reply
 * leaves with the next dmu_channel_process() (the channel's pollfd becomes
 * readable).  req must not be touched afterwards.
 */
DMU_API void dmu_req_complete(struct dmu_req *req, int err);

/* ---- threads ------------------------------------------------------------ */

/*
 * prctl(PR_SET_IO_FLUSHER) on the calling thread: its allocations never
 * wait for writeback to the device it serves.  For backend threads the
 * library does not start (a completion thread, say).  0 or -errno.
 */
DMU_API int dmu_thread_set_io_flusher(void);

/* ---- metrics ------------------------------------------------------------ */

/*
 * Each channel counts its requests by type (requests, bytes, errors, a
 * log2 latency histogram from read to reply), replies by status, and its
 * reads and writes on the control device; the device sums its channels
 * (closed ones included).  The documents are dmuserd's (daemon/README.md,
 * daemon/metrics.schema.json).
 */
enum dmu_metrics_format {
	DMU_METRICS_JSON = 0,
	DMU_METRICS_PROMETHEUS = 1,	/* text format 0.0.4 */
};

struct dmu_metrics_opts {
	size_t sz;
	const char *version;		/* "version", dmuser_info{version}; default: the library's */
	const char *backing_file;	/* "device.backing_file": what the backend serves; default "-" */
	bool direct;			/* "device.direct" */
	/*
	 * Since 1.3: "device.backend" and dmuser_info{backend}, the kind of
	 * storage ("file", "nbd"); default "-".
	 */
	const char *backend;
};

/*
 * Render the device's metrics into a malloc'ed, NUL-terminated *buf of
 * *len bytes (len may be NULL); free() it.  Reads the target's status
 * from the kernel for a managed device.  The strings in opts are only
 * read during the call.  Any thread, while channels serve.
 */
DMU_API int dmu_metrics_render(struct dmu_device *dev,
			       enum dmu_metrics_format format,
			       const struct dmu_metrics_opts *opts,
			       char **buf, size_t *len);

/* ---- HTTP --------------------------------------------------------------- */

struct dmu_http;

/* Renders /metrics for a dmu_http started without a device. */
typedef int (*dmu_http_render_fn)(void *arg, enum dmu_metrics_format format,
				  char **buf, size_t *len);

struct dmu_http_opts {
	size_t sz;
	/* passed to dmu_metrics_render(); copied, but its strings must outlive the server */
	const struct dmu_metrics_opts *metrics;
	dmu_http_render_fn render;		/* instead of a device's metrics */
	void *render_arg;
	const char *index_html;			/* served at /; NULL: 404 */
	size_t index_html_len;
};

/*
 * Serve metrics over HTTP on a thread of its own (libmicrohttpd):
 *   GET /metrics                        JSON
 *   GET /metrics?format=prometheus      Prometheus text (also for Accept: text/plain)
 *   GET /                               opts->index_html, if given
 * listen is "PORT" or ":PORT" (127.0.0.1 only), "HOST:PORT" (HOST through
 * getaddrinfo: "localhost:9180" works) or "[IPV6]:PORT"; port 0 picks a
 * free one.  dev may be NULL when opts->render is set.  Any thread.
 */
DMU_API int dmu_http_start(struct dmu_device *dev, const char *listen,
			   const struct dmu_http_opts *opts,
			   struct dmu_http **httpp);
/* "ADDR:PORT" (or "[ADDR]:PORT") as bound, with the real port.  Any thread. */
DMU_API const char *dmu_http_address(const struct dmu_http *http);
DMU_API uint16_t dmu_http_port(const struct dmu_http *http);
/* Stop serving (waits for a scrape in progress) and free.  NULL is fine. */
DMU_API void dmu_http_stop(struct dmu_http *http);

/*
 * USDT probes (provider "dmuser"; `readelf -n libdmuser.so.1`), all with
 * the device's dmu_device_devt() and the request's seq first:
 *   request_received(devt, seq, type, offset, len)   read from the kernel
 *   backend_submitted(devt, seq, type)              handed to the backend
 *   backend_done(devt, seq, err)                    the backend finished it
 *   reply_sent(devt, seq, status)                   its reply was written
 */

#ifdef __cplusplus
}
#endif

#endif /* DMUSER_H */
