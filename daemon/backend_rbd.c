// SPDX-License-Identifier: GPL-2.0
/*
 * The RBD backend: an image of a Ceph cluster, through librbd's C API.
 *
 * One cluster handle (rados_t), one pool context and ONE image handle for
 * the whole backend, shared by every worker.  librbd images are
 * thread-safe; one handle is one Objecter (one set of OSD sessions) and,
 * above all, one holder of the image's exclusive lock: an image handle per
 * worker would make the handles of one dmuserd pass the lock back and
 * forth (exclusive-lock is on by default), each pass a round trip to the
 * cluster.  What is per worker (ops->worker) is only the bookkeeping: its
 * request slots, its eventfd and its list of finished commands.
 *
 * Requests go out with librbd's asynchronous calls, up to DEPTH per
 * worker, and are answered in the order the cluster finishes them.
 * Request -> librbd call:
 *   read          rbd_aio_read
 *   write         rbd_aio_write
 *   flush         rbd_aio_flush (librbd's cache is off, below: it waits
 *                 for the writes in flight)
 *   PREFLUSH      rbd_aio_flush first, the request once it has finished
 *   FUA           RBD has no FUA: the command, then rbd_aio_flush
 *   discard       rbd_aio_discard (librbd's rbd_discard_granularity_bytes,
 *                 64 KiB by default: parts of a range not aligned to it
 *                 may keep their data, as a disk's discard may)
 *   write_zeroes  rbd_aio_write_zeroes; with NOUNMAP, the flag
 *                 RBD_WRITE_ZEROES_FLAG_THICK_PROVISION (zeroes written,
 *                 the objects stay allocated)
 *   secure_erase  rbd_aio_write_zeroes THICK_PROVISION, then rbd_aio_flush
 * Ranges go out in calls of at most RANGE_CHUNK, WAVE of them at once.
 *
 * librbd runs completions on its own threads.  The callback only stores
 * the result, puts the command on its worker's list (a mutex) and writes
 * the worker's eventfd; poll_fd hands that descriptor to the worker's
 * loop, notify takes the whole list and moves each request on (the next
 * command, or dmu_req_complete()) on the worker's thread, and releases the
 * completions.
 *
 * A cluster that goes away: librbd waits for it without end unless told
 * otherwise.  Before connecting, rados_osd_op_timeout and
 * rados_mon_op_timeout are set to OP_TIMEOUT_S and client_mount_timeout
 * (start-up) to MOUNT_TIMEOUT_S, each only where ceph.conf or CEPH_ARGS
 * leave it at Ceph's default (0: forever; 300 s): then a call the cluster
 * does not answer fails (ETIMEDOUT) after at most the timeout, and the
 * first failure is logged until a request succeeds again.  librados
 * reconnects by itself to whichever mon and OSDs are up.
 *
 * The reconnect window (set_reconnect_ms: --reconnect-ms, or the table's
 * recovery_ms, as for NBD; librbd reads its timeouts only when it
 * connects, before dmuserd knows the window, so the window cannot be the
 * timeout): a request whose call timed out is started again from its
 * first call, as long as the window, counted from its submission, has not
 * passed; past it, or with a window of 0, it is answered ERROR (EIO).
 * Block requests may be done twice (a write of the same bytes, a flush);
 * a call that timed out is not sent again by librados, and later calls of
 * this client reach each object in the order sent.  Counted:
 * requests_replayed (started again) and requests_failed (timed out past
 * the window); librados keeps no count of its reconnections.
 *
 * Closing: rbd_close releases the image's exclusive lock and its watch,
 * rados_shutdown ends the sessions; with the cluster gone each of those
 * calls waits out the op timeout (a close took 15 s with a timeout of 5 s,
 * tests/unit's rbd_osd_killed test), and a daemon asked to stop must stop.
 * So the close runs on a thread of its own, which then frees the backend,
 * and close() waits for it at most one op timeout: past that it logs that
 * the lock is left to the image's next user (librbd breaks the lock of a
 * client that no longer answers) and returns; the thread goes on until the
 * process exits.
 */
#include "backend_rbd.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <rados/librados.h>
#include <rbd/librbd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <dmuser.h>

#include "log.h"

#define DEPTH 32		/* requests in flight per worker */
#define WAVE 8			/* calls of one request in flight at once */
#define RANGE_CHUNK (1ull << 30)	/* discard, write_zeroes: at most this per call */
#define CLOSE_WAIT_DEFAULT_S 30	/* close()'s wait when the op timeout is unknown */
#define OP_TIMEOUT_S "30"	/* rados_osd_op_timeout, rados_mon_op_timeout */
#define MOUNT_TIMEOUT_S "10"	/* client_mount_timeout: connecting */

enum stage { ST_START, ST_PREFLUSH, ST_DATA, ST_POSTFLUSH };
enum how { H_NONE, H_READ, H_WRITE, H_DISCARD, H_ZERO, H_FLUSH };

struct rbd_slot;

/* One librbd call in flight. */
struct rbd_cmd {
	struct rbd_cmd *next;	/* on the worker's done list */
	struct rbd_slot *s;
	rbd_completion_t c;
	ssize_t ret;
};

struct rbd_worker;

struct rbd_slot {
	struct rbd_worker *w;
	struct dmu_req *req;	/* NULL: free */
	enum stage stage;
	enum how how;
	int zero_flags;		/* RBD_WRITE_ZEROES_FLAG_* */
	bool preflush, postflush;
	bool preflush0;		/* preflush as submitted: a retry starts over */
	uint64_t since_ms;	/* submitted (CLOCK_MONOTONIC), for the window */
	uint64_t start, next, end;	/* DATA: [start, end), issued up to next */
	unsigned pending;	/* calls issued and not yet taken from the done list */
	int err;		/* the first error, negative */
};

struct dmu_rbd_backend;

struct rbd_worker {
	struct dmu_backend base;	/* first: what a worker is given */
	struct dmu_rbd_backend *rb;
	unsigned index;
	int efd;		/* written by the completions, -1: not made */
	pthread_mutex_t lock;	/* guards done */
	struct rbd_cmd *done;	/* finished calls, not yet seen by the worker */
	struct rbd_slot slots[DEPTH];
};

struct dmu_rbd_backend {
	char spec[512];		/* "POOL/[NS/]IMAGE", for messages */
	char *pool, *ns, *image, *conf, *id;	/* parsed from the URI (one buffer: pool) */
	rados_t cluster;
	rados_ioctx_t io;
	rbd_image_t img;
	bool connected, have_io, have_img;
	unsigned n;
	struct rbd_worker *workers;
	_Atomic bool failing;	/* a failure was logged, no success since */
	_Atomic uint32_t window_ms;	/* the reconnect window; 0: none */
	_Atomic uint64_t replayed, failed;	/* requests_replayed, requests_failed */
	char op_timeout[32];	/* rados_osd_op_timeout as used, for messages */
};

static struct rbd_worker *to_worker(struct dmu_backend *b)
{
	return (struct rbd_worker *)b;	/* base is the first member */
}

/* ---- completions: librbd's threads -> the worker ----------------------- */

static void on_complete(rbd_completion_t c, void *arg)
{
	struct rbd_cmd *cmd = arg;
	struct rbd_worker *w = cmd->s->w;
	uint64_t one = 1;
	ssize_t ignored;

	cmd->ret = rbd_aio_get_return_value(c);
	pthread_mutex_lock(&w->lock);
	cmd->next = w->done;
	w->done = cmd;
	pthread_mutex_unlock(&w->lock);
	ignored = write(w->efd, &one, sizeof(one));	/* cannot overflow: one per call */
	(void)ignored;
}

/* ---- commands ---------------------------------------------------------- */

static void fail(struct rbd_slot *s, int err)
{
	if (!s->err)
		s->err = err;
}

static int start(struct rbd_slot *s, enum how how, uint64_t off, uint64_t len,
		 rbd_completion_t c)
{
	rbd_image_t img = s->w->rb->img;
	char *buf = (char *)dmu_req_buf(s->req) + (off - s->start);

	switch (how) {
	case H_READ:
		return rbd_aio_read(img, off, (size_t)len, buf, c);
	case H_WRITE:
		return rbd_aio_write(img, off, (size_t)len, buf, c);
	case H_DISCARD:
		return rbd_aio_discard(img, off, len, c);
	case H_ZERO:
		return rbd_aio_write_zeroes(img, off, (size_t)len, c, s->zero_flags, 0);
	case H_FLUSH:
		return rbd_aio_flush(img, c);
	case H_NONE:
		break;
	}
	return -EINVAL;
}

static void issue(struct rbd_slot *s, enum how how, uint64_t off, uint64_t len)
{
	struct rbd_cmd *cmd = malloc(sizeof(*cmd));
	int r;

	if (!cmd) {
		fail(s, -ENOMEM);
		return;
	}
	cmd->s = s;
	r = rbd_aio_create_completion(cmd, on_complete, &cmd->c);
	if (r < 0) {
		free(cmd);
		fail(s, r);
		return;
	}
	s->pending++;
	r = start(s, how, off, len, cmd->c);
	if (r < 0) {
		/* refused before it started: librbd calls no callback */
		s->pending--;
		rbd_aio_release(cmd->c);
		free(cmd);
		fail(s, r);
	}
}

static void issue_data(struct rbd_slot *s)
{
	uint64_t chunk = s->how == H_DISCARD || s->how == H_ZERO ? RANGE_CHUNK : UINT64_MAX;

	while (!s->err && s->pending < WAVE && s->next < s->end) {
		uint64_t len = s->end - s->next;

		if (len > chunk)
			len = chunk;
		issue(s, s->how, s->next, len);
		s->next += len;
	}
}

/* Log the first failure, and the first after a success. */
static void note_result(struct dmu_rbd_backend *rb, int err)
{
	if (!err) {
		if (atomic_load_explicit(&rb->failing, memory_order_relaxed))
			atomic_store(&rb->failing, false);
		return;
	}
	if (atomic_exchange(&rb->failing, true))
		return;
	if (err == -ETIMEDOUT && atomic_load(&rb->window_ms))
		dmu_error("rbd: %s: the cluster did not answer within rados_osd_op_timeout (%s s): "
			  "requests are started again until it answers, for up to %u ms each "
			  "(the reconnect window), then fail with EIO", rb->spec, rb->op_timeout,
			  atomic_load(&rb->window_ms));
	else if (err == -ETIMEDOUT)
		dmu_error("rbd: %s: the cluster did not answer within rados_osd_op_timeout (%s s): "
			  "requests fail with EIO until it answers again", rb->spec, rb->op_timeout);
	else
		dmu_error("rbd: %s: a request failed: %s; requests that fail are answered ERROR",
			  rb->spec, strerror(-err));
}

static uint64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/*
 * A request whose call timed out: started again from its first call while
 * the reconnect window, from its submission, lasts; true if so.
 */
static bool retry(struct rbd_slot *s)
{
	struct dmu_rbd_backend *rb = s->w->rb;
	uint32_t window = atomic_load(&rb->window_ms);

	if (s->err != -ETIMEDOUT)
		return false;
	if (!window || mono_ms() - s->since_ms >= window) {
		atomic_fetch_add(&rb->failed, 1);
		return false;
	}
	note_result(rb, s->err);
	atomic_fetch_add(&rb->replayed, 1);
	s->stage = ST_START;
	s->next = s->start;
	s->err = 0;
	s->preflush = s->preflush0;
	return true;
}

/* Move the request on as far as it goes without waiting for the cluster. */
static void advance(struct rbd_slot *s)
{
	while (s->req) {
		if (s->stage == ST_DATA)
			issue_data(s);
		if (s->pending)
			return;
		if (s->stage == ST_DATA && !s->err && s->next < s->end)
			continue;
		if (s->err && retry(s))
			continue;
		if (s->err || s->stage == ST_POSTFLUSH) {
			struct dmu_req *req = s->req;
			int err = s->err;

			note_result(s->w->rb, err);
			s->req = NULL;
			/* a timeout, a lost cluster...: the kernel hears EIO */
			dmu_req_complete(req, err && err != -EOPNOTSUPP ? -EIO : err);
			return;
		}
		s->stage++;
		if (s->stage == ST_PREFLUSH && s->preflush)
			issue(s, H_FLUSH, 0, 0);
		else if (s->stage == ST_POSTFLUSH && s->postflush)
			issue(s, H_FLUSH, 0, 0);
	}
}

/* ---- the asynchronous ops ---------------------------------------------- */

static int rbd_submit(struct dmu_backend *b, struct dmu_req *req)
{
	struct rbd_worker *w = to_worker(b);
	unsigned tag = dmu_req_tag(req), type = dmu_req_type(req);
	uint64_t flags = dmu_req_flags(req);
	struct rbd_slot *s;

	if (tag >= DEPTH)
		return -EIO;
	s = &w->slots[tag];
	*s = (struct rbd_slot){
		.w = w, .req = req, .stage = ST_START,
		.start = dmu_req_offset(req), .next = dmu_req_offset(req),
		.end = dmu_req_offset(req) + dmu_req_len(req),
		.preflush = flags & DMU_REQ_FLAG_PREFLUSH,
	};
	switch (type) {
	case DMU_REQ_READ:
		s->how = H_READ;
		break;
	case DMU_REQ_WRITE:
		s->how = H_WRITE;
		break;
	case DMU_REQ_FLUSH:
		/* the kernel's flushes carry PREFLUSH too: one rbd_aio_flush */
		s->how = H_NONE;
		s->end = s->next;
		s->preflush = false;
		s->postflush = true;
		break;
	case DMU_REQ_DISCARD:
		s->how = H_DISCARD;
		break;
	case DMU_REQ_WRITE_ZEROES:
		s->how = H_ZERO;
		if (flags & DMU_REQ_FLAG_NOUNMAP)
			s->zero_flags = RBD_WRITE_ZEROES_FLAG_THICK_PROVISION;
		break;
	case DMU_REQ_SECURE_ERASE:
		s->how = H_ZERO;
		s->zero_flags = RBD_WRITE_ZEROES_FLAG_THICK_PROVISION;
		s->postflush = true;
		break;
	default:
		s->req = NULL;
		return -EOPNOTSUPP;
	}
	if ((flags & DMU_REQ_FLAG_FUA) && s->how != H_READ && s->how != H_NONE)
		s->postflush = true;	/* RBD has no FUA */
	s->preflush0 = s->preflush;
	s->since_ms = mono_ms();
	advance(s);
	return 0;
}

static int rbd_poll_fd(struct dmu_backend *b, short *events)
{
	*events = POLLIN;
	return to_worker(b)->efd;
}

static void rbd_notify(struct dmu_backend *b, short revents)
{
	struct rbd_worker *w = to_worker(b);
	struct rbd_cmd *list;
	uint64_t v;
	ssize_t ignored;

	(void)revents;
	/* first the counter, then the list: a later completion writes it again */
	ignored = read(w->efd, &v, sizeof(v));
	(void)ignored;
	pthread_mutex_lock(&w->lock);
	list = w->done;
	w->done = NULL;
	pthread_mutex_unlock(&w->lock);
	while (list) {
		struct rbd_cmd *cmd = list;
		struct rbd_slot *s = cmd->s;

		list = cmd->next;
		if (cmd->ret < 0)
			fail(s, (int)cmd->ret);
		rbd_aio_release(cmd->c);
		free(cmd);
		s->pending--;
		advance(s);
	}
}

static int rbd_probe_size(struct dmu_backend *b, uint64_t *size)
{
	return rbd_get_size(to_worker(b)->rb->img, size);
}

static struct dmu_backend *rbd_worker_of(struct dmu_backend *b, unsigned index)
{
	struct dmu_rbd_backend *rb = to_worker(b)->rb;

	return index < rb->n ? &rb->workers[index].base : NULL;
}

static const struct dmu_backend_async_ops rbd_async = {
	.depth = DEPTH,
	.submit = rbd_submit,
	.poll_fd = rbd_poll_fd,
	.notify = rbd_notify,
};

static void rbd_set_reconnect_ms(struct dmu_backend *b, uint32_t ms)
{
	atomic_store(&to_worker(b)->rb->window_ms, ms);
}

static void rbd_counters(struct dmu_backend *b, struct dmu_backend_counters *c)
{
	struct dmu_rbd_backend *rb = to_worker(b)->rb;

	*c = (struct dmu_backend_counters){
		.requests_replayed = atomic_load_explicit(&rb->replayed, memory_order_relaxed),
		.requests_failed = atomic_load_explicit(&rb->failed, memory_order_relaxed),
	};
}

static const struct dmu_backend_ops rbd_ops = {
	.probe_size = rbd_probe_size,
	.worker = rbd_worker_of,
	.async = &rbd_async,
	.set_reconnect_ms = rbd_set_reconnect_ms,
	.counters = rbd_counters,
};

/* ---- the URI ------------------------------------------------------------ */

/*
 * rbd:POOL/IMAGE or rbd:POOL/NAMESPACE/IMAGE, then ?conf=PATH&id=USER
 * (either, both, in any order).  Splits a copy in rb->pool; 0 or -1.
 */
static int parse_uri(struct dmu_rbd_backend *rb, const char *uri)
{
	char *q, *part[4];
	unsigned n = 0;

	if (strncmp(uri, "rbd:", 4))
		return -1;
	rb->pool = strdup(uri + 4);
	if (!rb->pool)
		return -1;
	q = strchr(rb->pool, '?');
	if (q) {
		*q++ = '\0';
		if (!*q)
			return -1;
		for (char *kv = strtok(q, "&"); kv; kv = strtok(NULL, "&")) {
			if (!strncmp(kv, "conf=", 5) && kv[5])
				rb->conf = kv + 5;
			else if (!strncmp(kv, "id=", 3) && kv[3])
				rb->id = kv + 3;
			else
				return -1;
		}
	}
	for (char *p = rb->pool; n < 4; n++) {
		part[n] = p;
		p = strchr(p, '/');
		if (!p) {
			n++;
			break;
		}
		*p++ = '\0';
	}
	if (n < 2 || n > 3)
		return -1;
	for (unsigned i = 0; i < n; i++)
		if (!*part[i])
			return -1;
	rb->image = part[n - 1];
	rb->ns = n == 3 ? part[1] : NULL;
	snprintf(rb->spec, sizeof(rb->spec), "%s/%s%s%s", rb->pool, rb->ns ? rb->ns : "",
		 rb->ns ? "/" : "", rb->image);
	return 0;
}

/* ---- open and close ---------------------------------------------------- */

/* Set option to value unless ceph.conf or CEPH_ARGS changed it from Ceph's default. */
static int set_default(rados_t cluster, const char *option, double ceph_default,
		       const char *value)
{
	char have[64];

	if (rados_conf_get(cluster, option, have, sizeof(have)) == 0 &&
	    strtod(have, NULL) != ceph_default)
		return 0;
	return rados_conf_set(cluster, option, value);
}

/* The device's size from the image's and --size, as the NBD backend decides it. */
static int settle_size(struct dmu_rbd_backend *rb, const struct dmu_backend_args *args,
		       uint64_t *size)
{
	uint64_t have;
	int r = rbd_get_size(rb->img, &have);

	if (r < 0) {
		dmu_error("rbd: cannot get the size of %s: %s", rb->spec, strerror(-r));
		return -1;
	}
	if (!args->size) {
		if (have == 0 || have % 512) {
			dmu_error("the image %s is %" PRIu64 " bytes, not a positive multiple of 512; pass --size",
				  rb->spec, have);
			return -1;
		}
		*size = have;
		return 0;
	}
	if (args->size > have) {
		dmu_error("--size %" PRIu64 " is larger than the image %s (%" PRIu64 " bytes); grow it with rbd resize",
			  args->size, rb->spec, have);
		return -1;
	}
	*size = args->size;
	return 0;
}

static int connect_cluster(struct dmu_rbd_backend *rb, const struct dmu_backend_args *args)
{
	int r = rados_create(&rb->cluster, rb->id);	/* NULL: client.admin */

	if (r < 0) {
		dmu_error("rbd: cannot create a cluster handle: %s", strerror(-r));
		return -1;
	}
	rb->connected = true;	/* rados_shutdown() from here on */
	r = rados_conf_read_file(rb->cluster, rb->conf);	/* NULL: Ceph's search path */
	if (r < 0) {
		dmu_error("rbd: cannot read the Ceph configuration %s: %s",
			  rb->conf ? rb->conf : "(/etc/ceph/ceph.conf, ~/.ceph/config, ./ceph.conf)",
			  strerror(-r));
		return -1;
	}
	rados_conf_parse_env(rb->cluster, NULL);	/* CEPH_ARGS */
	/*
	 * No librbd cache: its write-around mode (librbd 16's default)
	 * answers a write before the OSDs have it, and when the OSDs then
	 * fail it (a lost cluster) a later flush still succeeds (seen in
	 * tests/unit's rbd_osd_killed test): a block device must not call
	 * that durable.  The kernel's page cache is the cache; every write
	 * is answered once the OSDs have it.
	 */
	if (rados_conf_set(rb->cluster, "rbd_cache", "false") ||
	    set_default(rb->cluster, "rados_osd_op_timeout", 0, OP_TIMEOUT_S) ||
	    set_default(rb->cluster, "rados_mon_op_timeout", 0, OP_TIMEOUT_S) ||
	    set_default(rb->cluster, "client_mount_timeout", 300, MOUNT_TIMEOUT_S)) {
		dmu_error("rbd: cannot set the timeouts");
		return -1;
	}
	if (rados_conf_get(rb->cluster, "rados_osd_op_timeout", rb->op_timeout,
			   sizeof(rb->op_timeout)))
		snprintf(rb->op_timeout, sizeof(rb->op_timeout), "?");
	r = rados_connect(rb->cluster);
	if (r < 0) {
		dmu_error("cannot connect to --backend %s: the Ceph cluster%s%s: %s%s", args->uri,
			  rb->conf ? " of " : "", rb->conf ? rb->conf : "", strerror(-r),
			  r == -ETIMEDOUT ? " (no mon answered within client_mount_timeout)" : "");
		return -1;
	}
	r = rados_ioctx_create(rb->cluster, rb->pool, &rb->io);
	if (r < 0) {
		dmu_error("rbd: %s: cannot open pool %s: %s", args->uri, rb->pool, strerror(-r));
		return -1;
	}
	rb->have_io = true;
	if (rb->ns)
		rados_ioctx_set_namespace(rb->io, rb->ns);
	r = args->read_only ? rbd_open_read_only(rb->io, rb->image, &rb->img, NULL) :
			      rbd_open(rb->io, rb->image, &rb->img, NULL);
	if (r < 0) {
		dmu_error("rbd: %s: cannot open image %s: %s", args->uri, rb->spec, strerror(-r));
		return -1;
	}
	rb->have_img = true;
	return 0;
}

int dmu_rbd_backend_open(const struct dmu_backend_args *args, struct dmu_backend **b)
{
	struct dmu_rbd_backend *rb = calloc(1, sizeof(*rb));
	unsigned n = args->workers ? args->workers : 1;
	uint64_t size;

	if (!rb || !(rb->workers = calloc(n, sizeof(*rb->workers)))) {
		dmu_error("out of memory");
		free(rb);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		rb->workers[i].efd = -1;
		rb->workers[i].rb = rb;
	}
	*b = NULL;
	if (args->direct) {
		dmu_error("--direct is for the file backend; librbd decides its own caching (rbd_cache)");
		dmu_rbd_backend_close(&rb->workers[0].base);
		return -2;
	}
	if (parse_uri(rb, args->uri)) {
		dmu_error("invalid --backend '%s': expected rbd:POOL/IMAGE or rbd:POOL/NAMESPACE/IMAGE, "
			  "optionally ?conf=PATH&id=USER", args->uri);
		dmu_rbd_backend_close(&rb->workers[0].base);
		return -2;
	}
	if (connect_cluster(rb, args) || settle_size(rb, args, &size))
		goto fail;
	for (unsigned i = 0; i < n; i++) {
		struct rbd_worker *w = &rb->workers[i];

		w->base.ops = &rbd_ops;
		w->base.size = size;
		w->index = i;
		pthread_mutex_init(&w->lock, NULL);
		w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		rb->n = i + 1;
		if (w->efd < 0) {
			dmu_error("rbd: eventfd: %s", strerror(errno));
			goto fail;
		}
	}
	dmu_info("rbd: %s: %" PRIu64 " bytes served, %u worker%s; requests time out after %s s (rados_osd_op_timeout)",
		 rb->spec, size, n, n == 1 ? "" : "s", rb->op_timeout);
	*b = &rb->workers[0].base;
	return 0;

fail:
	dmu_rbd_backend_close(&rb->workers[0].base);
	return -1;
}

/* What the close thread and close() share; the last of the two frees it. */
struct rbd_closing {
	pthread_mutex_t lock;
	pthread_cond_t cond;	/* CLOCK_MONOTONIC */
	bool done;
	atomic_int refs;
	struct dmu_rbd_backend *rb;
};

static void closing_put(struct rbd_closing *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* Close the image and the cluster handle, then free the backend. */
static void rbd_close_all(struct dmu_rbd_backend *rb)
{
	/* rbd_close waits for the calls in flight: their callbacks run first */
	if (rb->have_img)
		rbd_close(rb->img);
	if (rb->have_io)
		rados_ioctx_destroy(rb->io);
	if (rb->connected)
		rados_shutdown(rb->cluster);
	for (unsigned i = 0; i < rb->n; i++) {
		struct rbd_worker *w = &rb->workers[i];

		while (w->done) {
			struct rbd_cmd *cmd = w->done;

			w->done = cmd->next;
			rbd_aio_release(cmd->c);
			free(cmd);
		}
		if (w->efd >= 0)
			close(w->efd);
		pthread_mutex_destroy(&w->lock);
	}
	free(rb->workers);
	free(rb->pool);
	free(rb);
}

static void *close_thread(void *arg)
{
	struct rbd_closing *c = arg;

	rbd_close_all(c->rb);
	pthread_mutex_lock(&c->lock);
	c->done = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	closing_put(c);
	return NULL;
}

void dmu_rbd_backend_close(struct dmu_backend *b)
{
	struct dmu_rbd_backend *rb;
	struct rbd_closing *c;
	pthread_condattr_t attr;
	struct timespec until;
	char *end;
	double wait_s;
	pthread_t t;
	bool done;

	if (!b)
		return;
	rb = to_worker(b)->rb;
	if (!rb->connected) {
		rbd_close_all(rb);	/* nothing to ask the cluster */
		return;
	}
	wait_s = strtod(rb->op_timeout, &end);
	if (end == rb->op_timeout || wait_s <= 0)
		wait_s = CLOSE_WAIT_DEFAULT_S;
	c = calloc(1, sizeof(*c));
	if (!c) {
		rbd_close_all(rb);
		return;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &attr);
	pthread_condattr_destroy(&attr);
	c->rb = rb;
	atomic_init(&c->refs, 2);
	if (pthread_create(&t, NULL, close_thread, c)) {
		free(c);
		rbd_close_all(rb);
		return;
	}
	pthread_detach(t);
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)wait_s;
	until.tv_nsec += (long)((wait_s - (double)(time_t)wait_s) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->lock);
	while (!c->done)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &until) == ETIMEDOUT)
			break;
	done = c->done;
	pthread_mutex_unlock(&c->lock);
	if (!done)
		dmu_error("rbd: closing the image did not finish within %.0f s (the cluster does not answer): "
			  "its exclusive lock is left for the image's next user to break", wait_s);
	closing_put(c);
}
