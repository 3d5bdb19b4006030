// SPDX-License-Identifier: GPL-2.0
/*
 * The NBD backend.  One libnbd handle per worker (a handle serialises its
 * calls), each connected at start-up with nbd_connect_uri(), which parses
 * the URI.  Requests go out with libnbd's asynchronous calls, up to
 * DEPTH per worker at once, and are answered as the server replies, in
 * any order, with dmu_req_complete().  Request -> NBD command:
 *   read          NBD_CMD_READ
 *   write         NBD_CMD_WRITE
 *   flush         NBD_CMD_FLUSH; nothing if the server has no flush (no
 *                 cache: every write is durable when answered)
 *   PREFLUSH      NBD_CMD_FLUSH first, and the request once it is answered
 *   FUA           the command's FUA flag if the server takes it, else
 *                 NBD_CMD_FLUSH once the command is answered
 *   discard       NBD_CMD_TRIM; else as write_zeroes without NOUNMAP
 *   write_zeroes  NBD_CMD_WRITE_ZEROES, NO_HOLE with NOUNMAP; else zeroes
 *                 written with NBD_CMD_WRITE
 *   secure_erase  zeroes written with NBD_CMD_WRITE, then NBD_CMD_FLUSH
 * The fallbacks are the file backend's (backend_file.c).  A request is a
 * small state machine in its slot (one per channel slot, by the request's
 * tag): PREFLUSH, DATA (ranges go out in commands of at most RANGE_CHUNK,
 * WAVE of them at once), POSTFLUSH, done.
 *
 * libnbd runs the callbacks inside its own calls with its lock held: they
 * only count and queue the slot; the slot moves on after that call
 * returns (drain()).  A completion's free function runs exactly once per
 * command, also for one that could not be issued, so it is what counts
 * commands out.
 *
 * The server going away (EOF, a reset) kills the handle: libnbd fails
 * every command in flight, later ones fail to be issued, and every
 * request is answered ERROR at once; it is logged once per connection.
 */
#include "backend_nbd.h"

#include <errno.h>
#include <libnbd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <dmuser.h>

#include "log.h"

#define DEPTH 32		/* requests in flight per worker */
#define WAVE 8			/* commands of one request in flight at once */
#define RANGE_CHUNK (1u << 30)	/* NBD_CMD_TRIM, _WRITE_ZEROES: 32-bit lengths */
#define FILL_CHUNK (256u * 1024)	/* zeroes written with NBD_CMD_WRITE */

/* Never written: the source of every explicit zero fill. */
static const unsigned char zeroes[FILL_CHUNK];

enum stage { ST_START, ST_PREFLUSH, ST_DATA, ST_POSTFLUSH, ST_DONE };
enum how { H_NONE, H_READ, H_WRITE, H_TRIM, H_ZERO, H_FILL, H_FLUSH };

struct nbd_conn;

struct nbd_slot {
	struct nbd_conn *c;
	struct dmu_req *req;	/* NULL: free */
	enum stage stage;
	enum how how;
	uint32_t flags;		/* LIBNBD_CMD_FLAG_* of the DATA commands */
	bool preflush, postflush;
	uint64_t start, next, end;	/* DATA: [start, end), issued up to next */
	unsigned pending;	/* commands issued and not freed by libnbd */
	int err;		/* the first error, negative */
	bool queued;		/* in c->ready */
};

struct dmu_nbd_backend;

struct nbd_conn {
	struct dmu_backend base;	/* first: what a worker is given */
	struct dmu_nbd_backend *nb;
	struct nbd_handle *h;
	unsigned index;
	bool lost_reported;
	unsigned nready;
	struct nbd_slot *ready[DEPTH];
	struct nbd_slot slots[DEPTH];
};

struct dmu_nbd_backend {
	const char *uri;
	unsigned n;
	bool can_flush, can_fua, can_trim, can_zero;
	struct nbd_conn *conns;
};

static struct nbd_conn *to_conn(struct dmu_backend *b)
{
	return (struct nbd_conn *)b;	/* base is the first member */
}

/* Say once per connection why its requests fail. */
static void report_lost(struct nbd_conn *c)
{
	if (c->lost_reported || !(nbd_aio_is_dead(c->h) > 0 || nbd_aio_is_closed(c->h) > 0))
		return;
	c->lost_reported = true;
	dmu_error("nbd: connection %u to %s lost (%s): requests on it fail with EIO",
		  c->index, c->nb->uri, nbd_get_error() ? nbd_get_error() : "the server went away");
}

/* ---- commands ---------------------------------------------------------- */

static void queue(struct nbd_slot *s)
{
	if (!s->queued) {
		s->queued = true;
		s->c->ready[s->c->nready++] = s;
	}
}

static int on_reply(void *user_data, int *error)
{
	struct nbd_slot *s = user_data;

	if (*error && !s->err)
		s->err = -*error;
	return 1;	/* retire the command */
}

static void on_free(void *user_data)
{
	struct nbd_slot *s = user_data;

	s->pending--;
	queue(s);
}

static int64_t start(struct nbd_slot *s, enum how how, uint64_t off, uint64_t len)
{
	nbd_completion_callback cb = { .callback = on_reply, .user_data = s, .free = on_free };
	struct nbd_handle *h = s->c->h;
	unsigned char *buf = dmu_req_buf(s->req);

	switch (how) {
	case H_READ:
		return nbd_aio_pread(h, buf + (off - s->start), (size_t)len, off, cb, 0);
	case H_WRITE:
		return nbd_aio_pwrite(h, buf + (off - s->start), (size_t)len, off, cb, s->flags);
	case H_TRIM:
		return nbd_aio_trim(h, len, off, cb, s->flags);
	case H_ZERO:
		return nbd_aio_zero(h, len, off, cb, s->flags);
	case H_FILL:
		return nbd_aio_pwrite(h, zeroes, (size_t)len, off, cb, s->flags);
	case H_FLUSH:
		return nbd_aio_flush(h, cb, 0);
	case H_NONE:
		break;
	}
	return 0;
}

static void issue(struct nbd_slot *s, enum how how, uint64_t off, uint64_t len)
{
	s->pending++;
	if (start(s, how, off, len) == -1) {
		/* on_free has run (pending is back); the handle says why */
		int e = nbd_get_errno();

		if (!s->err)
			s->err = e && e != ENOTCONN && e != EINVAL ? -e : -EIO;
		report_lost(s->c);
	}
}

static uint64_t chunk(enum how how)
{
	return how == H_TRIM || how == H_ZERO ? RANGE_CHUNK :
	       how == H_FILL ? FILL_CHUNK : UINT64_MAX;
}

static void issue_data(struct nbd_slot *s)
{
	while (!s->err && s->pending < WAVE && s->next < s->end) {
		uint64_t len = s->end - s->next;

		if (len > chunk(s->how))
			len = chunk(s->how);
		issue(s, s->how, s->next, len);
		s->next += len;
	}
}

/* Move the request on as far as it goes without waiting for the server. */
static void advance(struct nbd_slot *s)
{
	while (s->req) {
		if (s->stage == ST_DATA)
			issue_data(s);
		if (s->pending)
			return;
		if (s->stage == ST_DATA && !s->err && s->next < s->end)
			continue;
		if (s->err || s->stage == ST_POSTFLUSH) {
			struct dmu_req *req = s->req;

			s->req = NULL;
			dmu_req_complete(req, s->err);
			return;
		}
		s->stage++;
		if (s->stage == ST_PREFLUSH && s->preflush)
			issue(s, H_FLUSH, 0, 0);
		else if (s->stage == ST_POSTFLUSH && s->postflush)
			issue(s, H_FLUSH, 0, 0);
	}
}

/* Move on every slot the callbacks queued. */
static void drain(struct nbd_conn *c)
{
	while (c->nready) {
		struct nbd_slot *s = c->ready[--c->nready];

		s->queued = false;
		advance(s);
	}
}

/* ---- the asynchronous ops ---------------------------------------------- */

static int nbd_submit(struct dmu_backend *b, struct dmu_req *req)
{
	struct nbd_conn *c = to_conn(b);
	const struct dmu_nbd_backend *nb = c->nb;
	unsigned tag = dmu_req_tag(req), type = dmu_req_type(req);
	uint64_t flags = dmu_req_flags(req);
	struct nbd_slot *s;

	if (tag >= DEPTH)
		return -EIO;
	s = &c->slots[tag];
	*s = (struct nbd_slot){
		.c = c, .req = req, .stage = ST_START,
		.start = dmu_req_offset(req), .next = dmu_req_offset(req),
		.end = dmu_req_offset(req) + dmu_req_len(req),
		.preflush = (flags & DMU_REQ_FLAG_PREFLUSH) && nb->can_flush,
	};
	switch (type) {
	case DMU_REQ_READ:
		s->how = H_READ;
		break;
	case DMU_REQ_WRITE:
		s->how = H_WRITE;
		break;
	case DMU_REQ_FLUSH:
		/* the kernel's flushes carry PREFLUSH too: one NBD_CMD_FLUSH */
		s->how = H_NONE;
		s->end = s->next;
		s->preflush = false;
		s->postflush = nb->can_flush;
		break;
	case DMU_REQ_DISCARD:
		s->how = nb->can_trim ? H_TRIM : nb->can_zero ? H_ZERO : H_FILL;
		break;
	case DMU_REQ_WRITE_ZEROES:
		s->how = nb->can_zero ? H_ZERO : H_FILL;
		if (s->how == H_ZERO && (flags & DMU_REQ_FLAG_NOUNMAP))
			s->flags |= LIBNBD_CMD_FLAG_NO_HOLE;
		break;
	case DMU_REQ_SECURE_ERASE:
		s->how = H_FILL;
		s->postflush = nb->can_flush;
		break;
	default:
		s->req = NULL;
		return -EOPNOTSUPP;
	}
	if ((flags & DMU_REQ_FLAG_FUA) && s->how != H_READ && s->how != H_NONE) {
		if (nb->can_fua)
			s->flags |= LIBNBD_CMD_FLAG_FUA;
		else
			s->postflush = nb->can_flush;
	}
	advance(s);
	drain(c);
	return 0;
}

static int nbd_poll_fd(struct dmu_backend *b, short *events)
{
	struct nbd_conn *c = to_conn(b);
	int dir;

	if (nbd_aio_is_dead(c->h) > 0 || nbd_aio_is_closed(c->h) > 0)
		return -1;
	dir = nbd_aio_get_direction(c->h);
	*events = (short)(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
			  ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
	return nbd_aio_get_fd(c->h);
}

static void nbd_notify(struct dmu_backend *b, short revents)
{
	struct nbd_conn *c = to_conn(b);
	int err = 0;

	if (revents & (POLLIN | POLLHUP | POLLERR))
		err = nbd_aio_notify_read(c->h);
	if (!err && (revents & POLLOUT))
		err = nbd_aio_notify_write(c->h);
	if (err)
		report_lost(c);
	drain(c);
}

static struct dmu_backend *nbd_worker(struct dmu_backend *b, unsigned index)
{
	struct dmu_nbd_backend *nb = to_conn(b)->nb;

	return index < nb->n ? &nb->conns[index].base : NULL;
}

static const struct dmu_backend_async_ops nbd_async = {
	.depth = DEPTH,
	.submit = nbd_submit,
	.poll_fd = nbd_poll_fd,
	.notify = nbd_notify,
};

static const struct dmu_backend_ops nbd_ops = {
	.worker = nbd_worker,
	.async = &nbd_async,
};

/* ---- open and close ---------------------------------------------------- */

static int connect_one(struct dmu_nbd_backend *nb, unsigned i)
{
	struct nbd_conn *c = &nb->conns[i];

	c->nb = nb;
	c->index = i;
	c->h = nbd_create();
	if (!c->h) {
		dmu_error("nbd: cannot create a handle: %s", nbd_get_error());
		return -1;
	}
	if (nbd_connect_uri(c->h, nb->uri) == -1) {
		bool bad_uri = nbd_get_errno() == EINVAL;

		if (bad_uri)
			dmu_error("invalid --backend '%s': %s", nb->uri, nbd_get_error());
		else
			dmu_error("cannot connect to --backend %s: %s", nb->uri, nbd_get_error());
		return bad_uri ? -2 : -1;
	}
	return 0;
}

/* The device's size from the export's and --size, as the file backend decides it. */
static int settle_size(struct dmu_nbd_backend *nb, const struct dmu_backend_args *args,
		       uint64_t *size)
{
	int64_t have = nbd_get_size(nb->conns[0].h);

	if (have < 0) {
		dmu_error("nbd: cannot get the size of %s: %s", nb->uri, nbd_get_error());
		return -1;
	}
	if (!args->size) {
		if (have == 0 || have % 512) {
			dmu_error("the export %s is %lld bytes, not a positive multiple of 512; pass --size",
				  nb->uri, (long long)have);
			return -1;
		}
		*size = (uint64_t)have;
		return 0;
	}
	if (args->size > (uint64_t)have) {
		dmu_error("--size %llu is larger than the export %s (%lld bytes), which cannot grow",
			  (unsigned long long)args->size, nb->uri, (long long)have);
		return -1;
	}
	*size = args->size;
	return 0;
}

int dmu_nbd_backend_open(const struct dmu_backend_args *args, struct dmu_backend **b)
{
	struct dmu_nbd_backend *nb = calloc(1, sizeof(*nb));
	unsigned n = args->workers ? args->workers : 1;
	uint64_t size;
	int ret = -1;

	if (args->direct) {
		dmu_error("--direct is for the file backend; the NBD server decides its own caching");
		free(nb);
		return -2;
	}
	if (nb)
		nb->conns = calloc(n, sizeof(*nb->conns));
	if (!nb || !nb->conns) {
		dmu_error("out of memory");
		free(nb);
		return -1;
	}
	nb->uri = args->uri;
	for (unsigned i = 0; i < n; i++) {
		nb->n = i + 1;
		ret = connect_one(nb, i);
		if (ret)
			goto fail;
	}
	ret = -1;
	struct nbd_handle *h = nb->conns[0].h;
	if (settle_size(nb, args, &size))
		goto fail;
	if (nbd_is_read_only(h) > 0 && !args->read_only) {
		dmu_error("the export %s is read-only; pass --read-only", nb->uri);
		goto fail;
	}
	nb->can_flush = nbd_can_flush(h) > 0;
	nb->can_fua = nbd_can_fua(h) > 0;
	nb->can_trim = nbd_can_trim(h) > 0;
	nb->can_zero = nbd_can_zero(h) > 0;
	for (unsigned i = 0; i < n; i++) {
		nb->conns[i].base.ops = &nbd_ops;
		nb->conns[i].base.size = size;
	}
	dmu_info("nbd: %s: %lld bytes, %u connection%s; flush %s, fua %s, trim %s, zero %s",
		 nb->uri, (long long)nbd_get_size(h), n, n == 1 ? "" : "s",
		 nb->can_flush ? "yes" : "no", nb->can_fua ? "yes" : "no",
		 nb->can_trim ? "yes" : "no", nb->can_zero ? "yes" : "no");
	*b = &nb->conns[0].base;
	return 0;

fail:
	dmu_nbd_backend_close(&nb->conns[0].base);
	return ret;
}

void dmu_nbd_backend_close(struct dmu_backend *b)
{
	struct dmu_nbd_backend *nb;

	if (!b)
		return;
	nb = to_conn(b)->nb;
	for (unsigned i = 0; i < nb->n; i++)
		if (nb->conns[i].h) {
			/* a clean NBD_CMD_DISC where the connection is up; no wait */
			nbd_shutdown(nb->conns[i].h, LIBNBD_SHUTDOWN_ABANDON_PENDING);
			nbd_close(nb->conns[i].h);
		}
	free(nb->conns);
	free(nb);
}
