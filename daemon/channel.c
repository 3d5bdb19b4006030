// SPDX-License-Identifier: GPL-2.0
/*
 * The dm-user wire protocol, daemon side.
 *
 * A request is a struct dm_user_message header, followed for a WRITE by
 * len bytes of payload.  One read() may return the header and some or all
 * of the payload, or just part of either: the kernel never mixes two
 * requests in one read(), so everything up to the end of the payload
 * belongs to the current request.
 *
 * The reply is the request's header with the status in `type`, followed
 * for a successful READ by len bytes of data.  The header sits right in
 * front of the payload buffer, so a READ reply leaves in one write().
 *
 * A backend failure turns into an ERROR reply for that request only; a
 * failure of the descriptor itself ends the channel.
 */
#include "channel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define PAGE 4096u
#define MAX_LOGGED_ERRORS 8

/* A request as parsed from its header. */
struct request {
	uint64_t type;
	uint64_t flags;
	uint64_t offset;	/* bytes */
	uint64_t len;		/* bytes */
	size_t have;		/* payload bytes already in c->data */
	bool in_range;
};

int dmu_channel_init(struct dmu_channel *c, int fd,
		     const struct dmu_channel_config *cfg)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	c->cfg = *cfg;
	if (!c->cfg.capacity)
		c->cfg.capacity = DMU_CHANNEL_DEFAULT_CAPACITY;
	if (c->cfg.capacity % PAGE)
		return -EINVAL;

	/*
	 * [ page: header at its end | payload, page aligned (O_DIRECT) ]
	 * Touch it all now, so no page fault waits for memory on the
	 * request path (and mlockall pins it).
	 */
	if (posix_memalign((void **)&c->mem, PAGE, PAGE + c->cfg.capacity))
		return -ENOMEM;
	memset(c->mem, 0, PAGE + c->cfg.capacity);
	c->data = c->mem + PAGE;
	c->msg = (struct dm_user_message *)(c->data - DMU_MSG_SIZE);
	return 0;
}

void dmu_channel_destroy(struct dmu_channel *c)
{
	free(c->mem);
	c->mem = NULL;
	c->msg = NULL;
	c->data = NULL;
}

/* ---- the descriptor ---------------------------------------------------- */

static enum dmu_serve_result fd_failed(struct dmu_channel *c, int err)
{
	c->last_errno = err;
	return err == ENOTBLK ? DMU_CH_GONE : DMU_CH_BROKEN;
}

/* Read exactly len bytes of the current request. */
static enum dmu_serve_result read_exact(struct dmu_channel *c, void *buf,
					size_t len)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t n = read(c->fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fd_failed(c, errno);
		if (n == 0)
			return fd_failed(c, EPIPE);	/* closed mid-request */
		if (c->cfg.metrics)
			dmu_metrics_read(c->cfg.metrics);
		p += n;
		len -= (size_t)n;
	}
	return DMU_CH_OK;
}

static enum dmu_serve_result write_all(struct dmu_channel *c, const void *buf,
				       size_t len)
{
	const unsigned char *p = buf;

	while (len) {
		ssize_t n = write(c->fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fd_failed(c, errno);
		if (n == 0)
			return fd_failed(c, EIO);
		if (c->cfg.metrics)
			dmu_metrics_wrote(c->cfg.metrics);
		p += n;
		len -= (size_t)n;
	}
	return DMU_CH_OK;
}

/*
 * Wait for the next request and read at least its header, plus whatever
 * payload the same read() brings.  A signal before anything arrived is
 * reported, so the caller can check whether it should stop.
 */
static enum dmu_serve_result receive(struct dmu_channel *c, size_t *have)
{
	size_t want = DMU_MSG_SIZE + c->cfg.capacity;
	ssize_t n = read(c->fd, c->msg, want);

	if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
		c->last_errno = errno;
		return DMU_CH_INTERRUPTED;
	}
	if (n < 0)
		return fd_failed(c, errno);
	if (n == 0) {
		c->last_errno = 0;
		return DMU_CH_GONE;
	}
	if (c->cfg.metrics)
		dmu_metrics_read(c->cfg.metrics);

	size_t got = (size_t)n;
	while (got < DMU_MSG_SIZE) {
		n = read(c->fd, (unsigned char *)c->msg + got, want - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fd_failed(c, errno);
		if (n == 0)
			return fd_failed(c, EPIPE);
		if (c->cfg.metrics)
			dmu_metrics_read(c->cfg.metrics);
		got += (size_t)n;
	}
	*have = got - DMU_MSG_SIZE;
	return DMU_CH_OK;
}

/* The reply status for a backend result: ENOSPC has a status of its own. */
static unsigned status_for(int err)
{
	if (!err)
		return DM_USER_RESP_SUCCESS;
	return err == -ENOSPC ? DM_USER_RESP_NOSPC : DM_USER_RESP_ERROR;
}

static enum dmu_serve_result reply(struct dmu_channel *c, unsigned status,
				   size_t data_len)
{
	c->msg->type = status;	/* seq, flags, sector and len are echoed */
	return write_all(c, c->msg, DMU_MSG_SIZE + data_len);
}

/* ---- requests ---------------------------------------------------------- */

/* Log the first few failures of a channel; all of them are counted. */
static void report(struct dmu_channel *c, const struct request *rq, int err)
{
	const char *op = dmu_op_name(dmu_op_from_type(rq->type));
	const char *more = "";

	if (c->logged_errors >= MAX_LOGGED_ERRORS)
		return;
	if (++c->logged_errors == MAX_LOGGED_ERRORS)
		more = " (further errors on this channel are only counted)";
	if (rq->type == DM_USER_REQ_MAP_FLUSH)
		dmu_warn("flush failed: %s%s", strerror(-err), more);
	else
		dmu_warn("%s of %llu bytes at offset %llu failed: %s%s", op,
			 (unsigned long long)rq->len,
			 (unsigned long long)rq->offset, strerror(-err), more);
}

static int flush(struct dmu_channel *c)
{
	if (c->cfg.metrics)
		dmu_metrics_flushed(c->cfg.metrics);
	return c->cfg.backend->ops->flush(c->cfg.backend);
}

/* Why a request that changes data cannot run, or 0. */
static int refuse_change(const struct dmu_channel *c, const struct request *rq)
{
	if (c->cfg.read_only)
		return -EROFS;
	if (!rq->in_range)
		return -EINVAL;
	return 0;
}

static int preflush(struct dmu_channel *c, const struct request *rq, int err)
{
	if (err || !(rq->flags & DM_USER_REQ_MAP_FLAG_PREFLUSH))
		return err;
	return flush(c);
}

/* FUA: the data is durable before the reply says it is written. */
static int fua(struct dmu_channel *c, const struct request *rq, int err)
{
	if (err || !(rq->flags & DM_USER_REQ_MAP_FLAG_FUA))
		return err;
	return flush(c);
}

/*
 * WRITE: consume the whole payload, a buffer at a time, even when the
 * request is refused or the backend fails, so the next read() starts at the
 * next request.
 */
static enum dmu_serve_result do_write(struct dmu_channel *c, struct request *rq,
				      int *err)
{
	uint64_t done = 0;
	size_t have = rq->have;

	*err = preflush(c, rq, refuse_change(c, rq));
	while (done < rq->len) {
		uint64_t left = rq->len - done;
		size_t chunk = left < c->cfg.capacity ? (size_t)left : c->cfg.capacity;
		enum dmu_serve_result r = read_exact(c, c->data + have, chunk - have);

		if (r != DMU_CH_OK)
			return r;
		if (!*err)
			*err = c->cfg.backend->ops->write(c->cfg.backend, c->data,
							  chunk, rq->offset + done);
		done += chunk;
		have = 0;
	}
	*err = fua(c, rq, *err);
	return reply(c, status_for(*err), 0);
}

/*
 * READ: a request that fits the buffer is read completely before the reply
 * goes out, so any failure becomes an ERROR reply.  A larger one streams;
 * once its SUCCESS header is sent a failure can only break the channel,
 * which makes the kernel fail (or requeue) the request.
 */
static enum dmu_serve_result do_read(struct dmu_channel *c, struct request *rq,
				     int *err)
{
	struct dmu_backend *b = c->cfg.backend;
	size_t first = rq->len < c->cfg.capacity ? (size_t)rq->len : c->cfg.capacity;

	*err = rq->in_range ? 0 : -EINVAL;
	if (!*err)
		*err = b->ops->read(b, c->data, first, rq->offset);
	if (*err)
		return reply(c, DM_USER_RESP_ERROR, 0);

	enum dmu_serve_result r = reply(c, DM_USER_RESP_SUCCESS, first);
	for (uint64_t done = first; r == DMU_CH_OK && done < rq->len;) {
		uint64_t left = rq->len - done;
		size_t chunk = left < c->cfg.capacity ? (size_t)left : c->cfg.capacity;

		*err = b->ops->read(b, c->data, chunk, rq->offset + done);
		if (*err)
			return fd_failed(c, -*err);
		r = write_all(c, c->data, chunk);
		done += chunk;
	}
	return r;
}

static enum dmu_serve_result do_flush(struct dmu_channel *c, int *err)
{
	*err = flush(c);
	return reply(c, status_for(*err), 0);
}

/* DISCARD, WRITE_ZEROES and SECURE_ERASE: no payload either way. */
static enum dmu_serve_result do_zeroing(struct dmu_channel *c,
					struct request *rq, int *err)
{
	struct dmu_backend *b = c->cfg.backend;

	*err = preflush(c, rq, refuse_change(c, rq));
	if (!*err) {
		switch (rq->type) {
		case DM_USER_REQ_MAP_DISCARD:
			*err = b->ops->discard(b, rq->offset, rq->len);
			break;
		case DM_USER_REQ_MAP_WRITE_ZEROES:
			*err = b->ops->write_zeroes(b, rq->offset, rq->len,
				!(rq->flags & DM_USER_REQ_MAP_FLAG_NOUNMAP));
			break;
		default:
			*err = b->ops->secure_erase(b, rq->offset, rq->len);
			break;
		}
	}
	*err = fua(c, rq, *err);
	return reply(c, status_for(*err), 0);
}

static enum dmu_serve_result dispatch(struct dmu_channel *c, struct request *rq,
				      int *err)
{
	switch (rq->type) {
	case DM_USER_REQ_MAP_READ:
		return do_read(c, rq, err);
	case DM_USER_REQ_MAP_WRITE:
		return do_write(c, rq, err);
	case DM_USER_REQ_MAP_FLUSH:
		return do_flush(c, err);
	case DM_USER_REQ_MAP_DISCARD:
	case DM_USER_REQ_MAP_WRITE_ZEROES:
	case DM_USER_REQ_MAP_SECURE_ERASE:
		return do_zeroing(c, rq, err);
	default:
		*err = 0;
		return reply(c, DM_USER_RESP_UNSUPPORTED, 0);
	}
}

static struct request parse(const struct dmu_channel *c, size_t have)
{
	const struct dm_user_message *m = c->msg;
	struct request rq = {
		.type = m->type,
		.flags = m->flags,
		.offset = m->sector * 512,
		.len = m->len,
		.have = have,
	};
	uint64_t size = c->cfg.backend->size;

	rq.in_range = m->sector <= size / 512 && rq.len <= size - rq.offset;
	return rq;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void inject_delay(const struct dmu_channel *c)
{
	unsigned us = c->cfg.inject_delay_us;
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000 };

	while (us && clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
}

/* Only a WRITE brings a payload, and never more than its len. */
static bool payload_fits(const struct request *rq)
{
	if (rq->type == DM_USER_REQ_MAP_WRITE)
		return rq->have <= rq->len;
	return rq->have == 0;
}

static unsigned status_of(const struct request *rq, enum dmu_serve_result r,
			  int err)
{
	if (r != DMU_CH_OK)
		return DM_USER_RESP_ERROR;
	if (err)
		return status_for(err);
	if (dmu_op_from_type(rq->type) == DMU_OP_OTHER)
		return DM_USER_RESP_UNSUPPORTED;
	return DM_USER_RESP_SUCCESS;
}

enum dmu_serve_result dmu_channel_serve_one(struct dmu_channel *c)
{
	size_t have = 0;
	enum dmu_serve_result r = receive(c, &have);

	if (r != DMU_CH_OK)
		return r;

	struct request rq = parse(c, have);
	if (!payload_fits(&rq)) {
		dmu_error("protocol error: %zu payload bytes after a type %llu request of %llu bytes",
			  rq.have, (unsigned long long)rq.type,
			  (unsigned long long)rq.len);
		c->last_errno = EPROTO;
		return DMU_CH_BROKEN;
	}

	uint64_t start = now_ns();
	int err = 0;

	if (c->cfg.metrics)
		dmu_metrics_received(c->cfg.metrics, 1);
	inject_delay(c);
	r = dispatch(c, &rq, &err);
	if (err)
		report(c, &rq, err);

	unsigned status = status_of(&rq, r, err);
	if (c->cfg.metrics)
		dmu_metrics_end(c->cfg.metrics, dmu_op_from_type(rq.type), status,
				rq.len, now_ns() - start);
	return r;
}
