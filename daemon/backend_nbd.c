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
 * every command in flight and later ones fail to be issued.  Then:
 *   reconnect window 0 (set_reconnect_ms; dmuserd: --reconnect-ms, by
 *   default the table's recovery_ms): every request is answered ERROR at
 *   once; it is logged once per connection.
 *   window W > 0: the dead handle is closed and the requests it carried
 *   are held, each reset to its start (ST_START), with the ones submitted
 *   meanwhile.  A fresh handle connects to the same URI
 *   (nbd_aio_connect_uri: never blocking the worker), at once, then with
 *   a backoff doubling from BACKOFF_MIN_MS to BACKOFF_MAX_MS, each attempt
 *   given ATTEMPT_MS.  Connected within W (same size or larger, same
 *   read-only state and flush/FUA/trim/zero): every held request runs
 *   again from its start, every command of it, also those the old server
 *   had answered.  That is safe because each is idempotent at block
 *   level: a read reads again, a write writes the same bytes at the same
 *   offset again, trim/zero/flush again; and the kernel has no two
 *   overlapping writes in flight that it expects ordered (it waits for
 *   the first's completion before issuing the second).  A FLUSH run again
 *   vouches for what the new connection's server holds: writes an old
 *   server acknowledged and then lost in a crash of its own cache cannot
 *   be seen from here (as for any NBD client).  Not back within W: every
 *   held request is answered EIO, once logged, and later requests fail
 *   at once while attempts go on at BACKOFF_MAX_MS; once one succeeds,
 *   requests are served again.  A failed request is never sent later.
 *   Attempts are logged at most once per second.
 */
#include "backend_nbd.h"

#include <errno.h>
#include <inttypes.h>
#include <libnbd.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dmuser.h>

#include "log.h"

#define DEPTH 32		/* requests in flight per worker */
#define WAVE 8			/* commands of one request in flight at once */
#define RANGE_CHUNK (1u << 30)	/* NBD_CMD_TRIM, _WRITE_ZEROES: 32-bit lengths */
#define FILL_CHUNK (256u * 1024)	/* zeroes written with NBD_CMD_WRITE */
#define BACKOFF_MIN_MS 10	/* between reconnect attempts: doubling, */
#define BACKOFF_MAX_MS 1000	/* up to this */
#define ATTEMPT_MS 5000		/* one attempt (connect + handshake) at most */
#define LOG_EVERY_NS 1000000000ull	/* reconnect attempts logged at most this often */

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

enum conn_state {
	C_UP,		/* h is connected (or dead, not yet noticed) */
	C_DOWN,		/* no handle: the next attempt at next_try */
	C_CONNECTING,	/* h is connecting, until attempt_end */
};

/* Written by the worker only, read by the metrics' thread. */
typedef _Atomic uint64_t counter;

struct nbd_conn {
	struct dmu_backend base;	/* first: what a worker is given */
	struct dmu_nbd_backend *nb;
	struct nbd_handle *h;		/* NULL while C_DOWN */
	unsigned index;
	bool lost_reported;
	enum conn_state state;
	bool failed;		/* past the window: requests fail at once */
	uint64_t lost_at, deadline, next_try, attempt_end, last_log;	/* CLOCK_MONOTONIC ns */
	unsigned backoff_ms, attempts, attempts_unlogged;
	char why[256];		/* why the last attempt (or the connection) failed */
	counter reconnects, reconnect_attempts, replayed, failed_held;
	_Atomic bool down;	/* state != C_UP, for the metrics */
	unsigned nready;
	struct nbd_slot *ready[DEPTH];
	struct nbd_slot slots[DEPTH];
};

struct dmu_nbd_backend {
	const char *uri;
	unsigned n;
	bool can_flush, can_fua, can_trim, can_zero;
	bool read_only;
	_Atomic uint32_t reconnect_ms;	/* 0: no reconnect, requests fail at once */
	struct nbd_conn *conns;
};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void bump(counter *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
			      memory_order_relaxed);
}

static bool is_dead(struct nbd_handle *h)
{
	return nbd_aio_is_dead(h) > 0 || nbd_aio_is_closed(h) > 0;
}

static uint32_t window_ms(const struct nbd_conn *c)
{
	return atomic_load_explicit(&c->nb->reconnect_ms, memory_order_relaxed);
}

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

static void lose(struct nbd_conn *c);

static void issue(struct nbd_slot *s, enum how how, uint64_t off, uint64_t len)
{
	s->pending++;
	if (start(s, how, off, len) == -1) {
		/* on_free has run (pending is back); the handle says why */
		int e = nbd_get_errno();

		if (window_ms(s->c) && is_dead(s->c->h)) {
			lose(s->c);	/* held, this request too */
			return;
		}
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
	while (s->c->state == C_UP && !s->err && s->pending < WAVE && s->next < s->end) {
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
		if (s->c->state != C_UP)
			return;		/* held: replayed or failed later */
		if (s->stage == ST_DATA)
			issue_data(s);
		if (s->pending || s->c->state != C_UP)
			return;
		if (s->stage == ST_DATA && !s->err && s->next < s->end)
			continue;
		if (s->err || s->stage == ST_POSTFLUSH) {
			struct dmu_req *req = s->req;

			if (s->err && window_ms(s->c) && is_dead(s->c->h)) {
				/* the handle died inside a call that issued fine */
				lose(s->c);
				return;
			}

			if (s->err)
				report_lost(s->c);	/* if that is why */
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
	while (c->nready && c->state == C_UP) {
		struct nbd_slot *s = c->ready[--c->nready];

		s->queued = false;
		advance(s);
	}
}

/* ---- losing the server, and reconnecting ------------------------------- */

/* Back to its start, to run again on a new connection; the request stays. */
static void rewind_slot(struct nbd_slot *s)
{
	s->stage = ST_START;
	s->next = s->start;
	s->pending = 0;
	s->err = 0;
	s->queued = false;
}

static unsigned held(const struct nbd_conn *c)
{
	unsigned n = 0;

	for (unsigned i = 0; i < DEPTH; i++)
		n += c->slots[i].req != NULL;
	return n;
}

/*
 * The connection is dead and the window is not 0: close the handle
 * (libnbd frees every command's callbacks: none is left to run later)
 * and hold its requests until a new one connects or the window ends.
 */
static void lose(struct nbd_conn *c)
{
	uint64_t now = now_ns();
	const char *e = nbd_get_error();

	snprintf(c->why, sizeof(c->why), "%s", e ? e : "the server went away");
	nbd_close(c->h);
	c->h = NULL;
	c->nready = 0;
	for (unsigned i = 0; i < DEPTH; i++)
		if (c->slots[i].req)
			rewind_slot(&c->slots[i]);
	c->state = C_DOWN;
	atomic_store_explicit(&c->down, true, memory_order_relaxed);
	c->failed = false;
	c->lost_at = now;
	c->deadline = now + (uint64_t)window_ms(c) * 1000000ull;
	c->next_try = now;
	c->backoff_ms = BACKOFF_MIN_MS;
	c->attempts = c->attempts_unlogged = 0;
	c->last_log = now;
	dmu_warn("nbd: connection %u to %s lost (%s): holding %u requests, reconnecting for up to %u ms",
		 c->index, c->nb->uri, c->why, held(c), window_ms(c));
}

/* Past the window: every held request fails, and later ones at once. */
static void fail_held(struct nbd_conn *c)
{
	unsigned n = 0;

	c->failed = true;
	for (unsigned i = 0; i < DEPTH; i++) {
		struct nbd_slot *s = &c->slots[i];
		struct dmu_req *req = s->req;

		if (!req)
			continue;
		s->req = NULL;
		n++;
		bump(&c->failed_held);
		dmu_req_complete(req, -EIO);
	}
	dmu_error("nbd: connection %u to %s not back within %u ms (%u attempts, last: %s): "
		  "%u held requests fail with EIO, and new ones at once until it is back",
		  c->index, c->nb->uri, window_ms(c), c->attempts, c->why, n);
}

/* One attempt failed (c->why says why): close its handle, plan the next. */
static void attempt_failed(struct nbd_conn *c, uint64_t now)
{
	if (c->h) {
		nbd_close(c->h);
		c->h = NULL;
	}
	c->state = C_DOWN;
	c->next_try = now + (uint64_t)c->backoff_ms * 1000000ull;
	c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
	c->attempts_unlogged++;
	if (now - c->last_log >= LOG_EVERY_NS) {
		dmu_warn("nbd: connection %u to %s: %u reconnect attempt%s failed in the last %" PRIu64
			 " ms, the last: %s",
			 c->index, c->nb->uri, c->attempts_unlogged, c->attempts_unlogged == 1 ? "" : "s",
			 (now - c->last_log) / 1000000, c->why);
		c->last_log = now;
		c->attempts_unlogged = 0;
	}
}

static void note_error(struct nbd_conn *c, const char *fallback)
{
	const char *e = nbd_get_error();

	snprintf(c->why, sizeof(c->why), "%s", e && *e ? e : fallback);
}

static void start_attempt(struct nbd_conn *c, uint64_t now)
{
	c->attempts++;
	bump(&c->reconnect_attempts);
	c->h = nbd_create();
	if (!c->h) {
		note_error(c, "cannot create a handle");
		attempt_failed(c, now);
		return;
	}
	if (nbd_aio_connect_uri(c->h, c->nb->uri) == -1) {
		note_error(c, "cannot connect");
		attempt_failed(c, now);
		return;
	}
	c->state = C_CONNECTING;
	c->attempt_end = now + ATTEMPT_MS * 1000000ull;
}

/* The new handle is ready: the same export?  Then run every held request again. */
static void connected(struct nbd_conn *c, uint64_t now)
{
	const struct dmu_nbd_backend *nb = c->nb;
	int64_t size = nbd_get_size(c->h);
	unsigned n = 0;

	if (size < 0 || (uint64_t)size < c->base.size) {
		snprintf(c->why, sizeof(c->why), "the export is now %" PRId64
			 " bytes, less than the %" PRIu64 " served", size, c->base.size);
		attempt_failed(c, now);
		return;
	}
	if ((nbd_is_read_only(c->h) > 0 && !nb->read_only) ||
	    (nbd_can_flush(c->h) > 0) != nb->can_flush || (nbd_can_fua(c->h) > 0) != nb->can_fua ||
	    (nbd_can_trim(c->h) > 0) != nb->can_trim || (nbd_can_zero(c->h) > 0) != nb->can_zero) {
		snprintf(c->why, sizeof(c->why),
			 "the export now offers other read-only/flush/fua/trim/zero flags");
		attempt_failed(c, now);
		return;
	}
	c->state = C_UP;
	atomic_store_explicit(&c->down, false, memory_order_relaxed);
	c->lost_reported = false;
	bump(&c->reconnects);
	for (unsigned i = 0; i < DEPTH; i++)
		n += c->slots[i].req != NULL;
	dmu_warn("nbd: connection %u to %s back after %u attempt%s (%" PRIu64 " ms)%s: replaying %u requests",
		 c->index, nb->uri, c->attempts, c->attempts == 1 ? "" : "s",
		 (now - c->lost_at) / 1000000, c->failed ? ", after the window" : "", n);
	c->failed = false;
	for (unsigned i = 0; i < DEPTH && c->state == C_UP; i++)
		if (c->slots[i].req) {
			bump(&c->replayed);
			advance(&c->slots[i]);
		}
	drain(c);
}

/* Progress while the connection is not up: the handle's events, the timers. */
static void tick(struct nbd_conn *c, short revents)
{
	uint64_t now;
	int err = 0;

	if (c->state == C_CONNECTING) {
		if (revents & (POLLIN | POLLHUP | POLLERR))
			err = nbd_aio_notify_read(c->h);
		if (!err && (revents & POLLOUT))
			err = nbd_aio_notify_write(c->h);
	}
	now = now_ns();
	if (c->state == C_CONNECTING) {
		if (nbd_aio_is_ready(c->h) > 0) {
			connected(c, now);
			if (c->state == C_UP)
				return;
		} else if (err || is_dead(c->h)) {
			note_error(c, "the connection failed");
			attempt_failed(c, now);
		} else if (now >= c->attempt_end) {
			snprintf(c->why, sizeof(c->why), "no handshake within %u ms", ATTEMPT_MS);
			attempt_failed(c, now);
		}
	}
	if (!c->failed && now >= c->deadline)
		fail_held(c);
	if (c->state == C_DOWN && now >= c->next_try)
		start_attempt(c, now);
}

static int nbd_timeout_ms(struct dmu_backend *b)
{
	const struct nbd_conn *c = to_conn(b);
	uint64_t now, t = UINT64_MAX;

	if (c->state == C_UP)
		return -1;
	if (!c->failed)
		t = c->deadline;
	if (c->state == C_DOWN && c->next_try < t)
		t = c->next_try;
	if (c->state == C_CONNECTING && c->attempt_end < t)
		t = c->attempt_end;
	now = now_ns();
	if (t <= now)
		return 0;
	t = (t - now + 999999) / 1000000;
	return t > INT_MAX ? INT_MAX : (int)t;
}

static void nbd_set_reconnect_ms(struct dmu_backend *b, uint32_t ms)
{
	atomic_store(&to_conn(b)->nb->reconnect_ms, ms);
}

static void nbd_counters(struct dmu_backend *b, struct dmu_backend_counters *out)
{
	const struct dmu_nbd_backend *nb = to_conn(b)->nb;

	*out = (struct dmu_backend_counters){ 0 };
	for (unsigned i = 0; i < nb->n; i++) {
		const struct nbd_conn *c = &nb->conns[i];

		out->reconnects += atomic_load_explicit(&c->reconnects, memory_order_relaxed);
		out->reconnect_attempts += atomic_load_explicit(&c->reconnect_attempts,
								memory_order_relaxed);
		out->requests_replayed += atomic_load_explicit(&c->replayed, memory_order_relaxed);
		out->requests_failed += atomic_load_explicit(&c->failed_held, memory_order_relaxed);
	}
	for (unsigned i = 0; i < nb->n; i++)
		out->disconnected += atomic_load_explicit(&nb->conns[i].down, memory_order_relaxed);
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
	if (c->state != C_UP && c->failed)
		return -EIO;	/* past the window, not back yet */
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
	if (c->state != C_UP)
		return 0;	/* held with the others: advance() once connected */
	advance(s);
	drain(c);
	return 0;
}

static int nbd_poll_fd(struct dmu_backend *b, short *events)
{
	struct nbd_conn *c = to_conn(b);
	int dir;

	if (c->state == C_DOWN)
		return -1;
	if (c->state == C_UP && is_dead(c->h)) {
		/*
		 * Noticed here first: libnbd can find the socket dead while
		 * it sends a new command, which then fails with ENOTCONN
		 * although its call returned a cookie.
		 */
		if (window_ms(c))
			lose(c);	/* hold, and retry at once */
		else
			report_lost(c);
		return -1;
	}
	dir = nbd_aio_get_direction(c->h);
	*events = (short)(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
			  ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
	return nbd_aio_get_fd(c->h);
}

static void nbd_notify(struct dmu_backend *b, short revents)
{
	struct nbd_conn *c = to_conn(b);
	int err = 0;

	if (c->state != C_UP) {
		tick(c, revents);
		return;
	}
	if (revents & (POLLIN | POLLHUP | POLLERR))
		err = nbd_aio_notify_read(c->h);
	if (!err && (revents & POLLOUT))
		err = nbd_aio_notify_write(c->h);
	if (window_ms(c) && is_dead(c->h)) {
		lose(c);	/* before drain() could answer its requests ERROR */
		return;
	}
	report_lost(c);	/* if the handle died, whether or not notify said so */
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
	.timeout_ms = nbd_timeout_ms,
};

static const struct dmu_backend_ops nbd_ops = {
	.worker = nbd_worker,
	.async = &nbd_async,
	.set_reconnect_ms = nbd_set_reconnect_ms,
	.counters = nbd_counters,
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
	nb->read_only = args->read_only;
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
		if (nb->conns[i].h) {	/* NULL: lost, between attempts */
			/* a clean NBD_CMD_DISC where the connection is up; no wait */
			nbd_shutdown(nb->conns[i].h, LIBNBD_SHUTDOWN_ABANDON_PENDING);
			nbd_close(nb->conns[i].h);
		}
	free(nb->conns);
	free(nb);
}
