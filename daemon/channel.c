// SPDX-License-Identifier: GPL-2.0
/*
 * The dm-user wire protocol, daemon side.
 *
 * A request is a struct dm_user_message header, followed for a WRITE by
 * len bytes of payload.  Without batching, one read() returns at most one
 * request: its header and some or all of its payload, or just part of
 * either, so everything up to the end of the payload belongs to it.
 *
 * With DM_USER_CHANNEL_BATCH (asked for at open, unless cfg.batch is off;
 * a kernel without it fails the ioctl with ENOTTY and the channel stays as
 * above), one read() returns as many whole requests as fit in the buffer,
 * back to back.  Only the first may be incomplete, and only when it does
 * not fit: the buffer holds a header and cfg.capacity bytes, so that is a
 * WRITE larger than cfg.capacity, which is then the only request in the
 * buffer and is served a buffer at a time, as without batching.
 *
 * The reply is the request's header with the status in `type`, followed
 * for a successful READ by len bytes of data.  Replies are gathered while
 * the requests of one read() are carried out in order, and leave together
 * in one writev(): each header where its request was read, each READ's
 * data where the backend put it.  Without batching the data go right after
 * the header, in the read buffer; with batching they go to a second buffer
 * (reply_data), since later requests follow the header.  Replies are sent
 * before the next read() (the kernel may be waiting for them before it
 * queues more), and earlier when the gathered ones fill the reply buffer or
 * DMU_CHANNEL_MAX_REPLIES, or must precede a streamed READ.
 *
 * Flushes.  The contract is: when the kernel sees a FLUSH (or a PREFLUSH
 * or FUA request) answered, every write it had seen answered before it
 * issued that request is durable.  Gathering keeps it, because a reply is
 * gathered only after its request's backend work has returned, and requests
 * are carried out in the order read:
 *  - a write answered before the flush was issued was answered in an
 *    earlier writev(), so its pwrite() had returned before that, and the
 *    flush's fdatasync() comes later still: it covers the write, whichever
 *    worker served it (fdatasync is per file, not per descriptor);
 *  - writes read with the flush in one batch were not answered when the
 *    flush was issued, so it owes them nothing (the block layer orders
 *    nothing among requests in flight together); those before it are
 *    covered anyway, as they were written first;
 *  - a FUA write's fdatasync() runs before its reply is gathered.
 * Sending a batch's write replies in the same writev() as a later flush's
 * only delays them: a reply can never leave before its request's work, so
 * no write is reported done before it is written (durably, for FUA).  The
 * cost is latency: a batch's replies wait for the slowest request in it,
 * an fdatasync() included.
 *
 * A backend failure turns into an ERROR reply for that request only; a
 * failure of the descriptor itself ends the channel.
 */
#include "channel.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define PAGE 4096u
#define MAX_LOGGED_ERRORS 8

_Static_assert(2 * DMU_CHANNEL_MAX_REPLIES <= IOV_MAX,
	       "one writev() must take every pending reply");

/* A request as parsed from its header, and its outcome. */
struct request {
	unsigned char *msg;	/* its header, in the read buffer */
	unsigned char *payload;	/* right after it: a WRITE's payload */
	uint64_t type;
	uint64_t flags;
	uint64_t offset;	/* bytes */
	uint64_t len;		/* bytes */
	size_t have;		/* payload bytes already in the buffer */
	bool in_range;
	unsigned status;	/* DM_USER_RESP_* */
	const unsigned char *data;	/* a successful READ's data */
	size_t data_len;
	bool sent;		/* the reply has left already (streamed) */
};

static size_t page_up(size_t n)
{
	return (n + PAGE - 1) & ~(size_t)(PAGE - 1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- batching ---------------------------------------------------------- */

static int ioctl_set_flags(int fd, uint64_t flags)
{
	return ioctl(fd, DM_USER_IOC_SET_FLAGS, &flags) ? -errno : 0;
}

/* Every channel asks the same kernel: say why not once, not per channel. */
static atomic_flag told_unsupported = ATOMIC_FLAG_INIT;
static atomic_flag told_failed = ATOMIC_FLAG_INIT;

static bool ask_for_batching(struct dmu_channel *c)
{
	int (*set_flags)(int, uint64_t) = c->cfg.set_flags ? c->cfg.set_flags :
							     ioctl_set_flags;
	int err = set_flags(c->fd, DM_USER_CHANNEL_BATCH);

	if (!err)
		return true;
	if (err == -ENOTTY) {
		if (!atomic_flag_test_and_set(&told_unsupported))
			dmu_info("the kernel's dm-user does not batch requests; reading one request at a time");
	} else if (!atomic_flag_test_and_set(&told_failed)) {
		dmu_warn("cannot turn on request batching (DM_USER_IOC_SET_FLAGS): %s; reading one request at a time",
			 strerror(-err));
	}
	return false;
}

static void set_batching(struct dmu_channel *c, bool on)
{
	c->batching = on;
	if (c->cfg.metrics)
		dmu_metrics_batched(c->cfg.metrics, on);
}

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
	 * [ page: header at its end | payload, page aligned (O_DIRECT) |
	 *   with batching: reply data ]
	 * Touch it all now, so no page fault waits for memory on the
	 * request path (and mlockall pins it).
	 */
	bool batching = c->cfg.batch && ask_for_batching(c);
	size_t size = PAGE + c->cfg.capacity * (batching ? 2 : 1);

	if (posix_memalign((void **)&c->mem, PAGE, size))
		return -ENOMEM;
	memset(c->mem, 0, size);
	c->data = c->mem + PAGE;
	c->msg = (struct dm_user_message *)(c->data - DMU_MSG_SIZE);
	if (batching)
		c->reply_data = c->data + c->cfg.capacity;
	set_batching(c, batching);
	return 0;
}

void dmu_channel_attach(struct dmu_channel *c, int fd)
{
	c->fd = fd;
	c->npending = 0;
	c->reply_data_used = 0;
	set_batching(c, c->reply_data && ask_for_batching(c));
}

void dmu_channel_destroy(struct dmu_channel *c)
{
	free(c->mem);
	c->mem = NULL;
	c->msg = NULL;
	c->data = NULL;
	c->reply_data = NULL;
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

/*
 * Write iov[0..n) in full, adding the bytes written to *sent.  The iovecs
 * are used up: after a short write (the kernel took only some replies, or
 * a signal arrived part way) the next writev() starts where it stopped.
 */
static enum dmu_serve_result write_iov(struct dmu_channel *c,
				       struct iovec *iov, unsigned n,
				       size_t *sent)
{
	while (n) {
		ssize_t w = writev(c->fd, iov, (int)n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return fd_failed(c, errno);
		if (w == 0)
			return fd_failed(c, EIO);
		if (c->cfg.metrics)
			dmu_metrics_wrote(c->cfg.metrics);
		*sent += (size_t)w;

		size_t done = (size_t)w;
		while (n && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			n--;
		}
		if (n) {
			iov->iov_base = (unsigned char *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	return DMU_CH_OK;
}

/*
 * Wait for requests and read as many bytes of them as the buffer holds:
 * at least a header.  A signal before anything arrived is reported, so the
 * caller can check whether it should stop.
 */
static enum dmu_serve_result receive(struct dmu_channel *c, size_t *got)
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

	*got = (size_t)n;
	while (*got < DMU_MSG_SIZE) {
		n = read(c->fd, (unsigned char *)c->msg + *got, want - *got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fd_failed(c, errno);
		if (n == 0)
			return fd_failed(c, EPIPE);
		if (c->cfg.metrics)
			dmu_metrics_read(c->cfg.metrics);
		*got += (size_t)n;
	}
	return DMU_CH_OK;
}

/* ---- replies ----------------------------------------------------------- */

/* The reply status for a backend result: ENOSPC has a status of its own. */
static unsigned status_for(int err)
{
	if (!err)
		return DM_USER_RESP_SUCCESS;
	return err == -ENOSPC ? DM_USER_RESP_NOSPC : DM_USER_RESP_ERROR;
}

/* Headers after the first need not be 8-byte aligned: no direct access. */
static void set_status(unsigned char *msg, unsigned status)
{
	uint64_t type = status;	/* seq, flags, sector and len are echoed */

	memcpy(msg + offsetof(struct dm_user_message, type), &type, sizeof(type));
}

static void account(struct dmu_channel *c, enum dmu_op op, unsigned status,
		    uint64_t len, uint64_t end_ns)
{
	if (c->cfg.metrics)
		dmu_metrics_end(c->cfg.metrics, op, status, len, end_ns - c->read_ns);
}

/*
 * Account for the pending replies and forget them.  Those within the
 * first sent bytes have left; the others failed with the descriptor.
 */
static void retire_pending(struct dmu_channel *c, size_t sent)
{
	uint64_t end_ns = now_ns();
	size_t end = 0;

	for (unsigned i = 0; i < c->npending; i++) {
		const struct dmu_reply *p = &c->pending[i];

		end += DMU_MSG_SIZE + p->data_len;
		account(c, p->op, end <= sent ? p->status : DM_USER_RESP_ERROR,
			p->len, end_ns);
	}
	c->npending = 0;
	c->reply_data_used = 0;
}

/* Send the pending replies, in the order their requests were read. */
static enum dmu_serve_result send_pending(struct dmu_channel *c)
{
	unsigned n = 0;
	size_t sent = 0;

	if (!c->npending)
		return DMU_CH_OK;
	for (unsigned i = 0; i < c->npending; i++) {
		const struct dmu_reply *p = &c->pending[i];

		c->iov[n++] = (struct iovec){ p->msg, DMU_MSG_SIZE };
		if (p->data_len)
			c->iov[n++] = (struct iovec){ (void *)p->data, p->data_len };
	}
	enum dmu_serve_result r = write_iov(c, c->iov, n, &sent);

	retire_pending(c, sent);
	return r;
}

static void queue_reply(struct dmu_channel *c, const struct request *rq)
{
	set_status(rq->msg, rq->status);
	c->pending[c->npending++] = (struct dmu_reply){
		.msg = rq->msg,
		.data = rq->data,
		.data_len = rq->data_len,
		.len = rq->len,
		.op = dmu_op_from_type(rq->type),
		.status = rq->status,
	};
}

/*
 * Room for len (at most cfg.capacity) bytes that must stay put until the
 * pending replies are sent.  Without batching the read() brought this
 * request alone, so that is the buffer after its header.  With batching it
 * is the next page-aligned free part of reply_data, once the pending
 * replies are sent if it is full.
 */
static enum dmu_serve_result reply_space(struct dmu_channel *c, size_t len,
					 unsigned char **buf)
{
	enum dmu_serve_result r = DMU_CH_OK;

	if (!c->batching) {
		*buf = c->data;
		return DMU_CH_OK;
	}
	if (len > c->cfg.capacity - c->reply_data_used)
		r = send_pending(c);
	*buf = c->reply_data + c->reply_data_used;
	return r;
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
 * A WRITE's payload as the backend takes it.  Only the first payload of a
 * read() starts page aligned; a backend that needs aligned memory
 * (O_DIRECT) gets the others copied to free reply space.
 */
static enum dmu_serve_result write_source(struct dmu_channel *c,
					  const unsigned char *buf, size_t len,
					  const unsigned char **src)
{
	size_t align = c->cfg.backend->mem_align;
	unsigned char *copy;
	enum dmu_serve_result r;

	*src = buf;
	if (align <= 1 || (uintptr_t)buf % align == 0 || !c->batching)
		return DMU_CH_OK;
	r = reply_space(c, len, &copy);
	if (r != DMU_CH_OK)
		return r;
	memcpy(copy, buf, len);
	*src = copy;
	return DMU_CH_OK;
}

/*
 * WRITE: consume the whole payload, a buffer at a time, even when the
 * request is refused or the backend fails, so the next read() starts at the
 * next request.
 */
static enum dmu_serve_result do_write(struct dmu_channel *c, struct request *rq,
				      int *err)
{
	unsigned char *buf = rq->payload;
	size_t have = rq->have;
	uint64_t done = 0;

	*err = preflush(c, rq, refuse_change(c, rq));
	while (done < rq->len) {
		uint64_t left = rq->len - done;
		size_t chunk = left < c->cfg.capacity ? (size_t)left : c->cfg.capacity;
		enum dmu_serve_result r = DMU_CH_OK;
		const unsigned char *src = buf;

		/*
		 * Only the first request of a read() can be incomplete, and
		 * its payload starts at c->data: read the rest there.
		 */
		if (have < chunk)
			r = read_exact(c, buf + have, chunk - have);
		if (r == DMU_CH_OK && !*err)
			r = write_source(c, buf, chunk, &src);
		if (r != DMU_CH_OK)
			return r;
		if (!*err)
			*err = c->cfg.backend->ops->write(c->cfg.backend, src,
							  chunk, rq->offset + done);
		done += chunk;
		have = 0;
		buf = c->data;
	}
	*err = fua(c, rq, *err);
	rq->status = status_for(*err);
	return DMU_CH_OK;
}

/*
 * READ: a request that fits the buffer is read completely before the reply
 * is gathered, so any failure becomes an ERROR reply.  A larger one
 * streams, after the pending replies; once its SUCCESS header is sent a
 * failure can only break the channel, which makes the kernel fail (or
 * requeue) the request.
 */
static enum dmu_serve_result do_read(struct dmu_channel *c, struct request *rq,
				     int *err)
{
	struct dmu_backend *b = c->cfg.backend;
	size_t cap = c->cfg.capacity;
	size_t first = rq->len < cap ? (size_t)rq->len : cap;
	bool stream = rq->len > cap;
	enum dmu_serve_result r = stream ? send_pending(c) : DMU_CH_OK;
	unsigned char *buf = NULL;

	if (r == DMU_CH_OK)
		r = reply_space(c, first, &buf);
	if (r != DMU_CH_OK)
		return r;
	*err = rq->in_range ? 0 : -EINVAL;
	if (!*err)
		*err = b->ops->read(b, buf, first, rq->offset);
	if (*err) {
		rq->status = DM_USER_RESP_ERROR;
		return DMU_CH_OK;
	}
	rq->status = DM_USER_RESP_SUCCESS;
	if (!stream) {
		rq->data = buf;
		rq->data_len = first;
		if (c->batching)
			c->reply_data_used += page_up(first);
		return DMU_CH_OK;
	}

	struct iovec iov[2] = { { rq->msg, DMU_MSG_SIZE }, { buf, first } };
	size_t sent = 0;

	set_status(rq->msg, DM_USER_RESP_SUCCESS);
	rq->sent = true;
	r = write_iov(c, iov, 2, &sent);
	for (uint64_t done = first; r == DMU_CH_OK && done < rq->len;) {
		uint64_t left = rq->len - done;
		size_t chunk = left < cap ? (size_t)left : cap;

		*err = b->ops->read(b, buf, chunk, rq->offset + done);
		if (*err)
			return fd_failed(c, -*err);
		iov[0] = (struct iovec){ buf, chunk };
		r = write_iov(c, iov, 1, &sent);
		done += chunk;
	}
	return r;
}

static void do_flush(struct dmu_channel *c, struct request *rq, int *err)
{
	*err = flush(c);
	rq->status = status_for(*err);
}

/* DISCARD, WRITE_ZEROES and SECURE_ERASE: no payload either way. */
static void do_zeroing(struct dmu_channel *c, struct request *rq, int *err)
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
	rq->status = status_for(*err);
}

/*
 * Carry out one request and set its reply status.  Returns DMU_CH_OK
 * unless the descriptor failed.
 */
static enum dmu_serve_result dispatch(struct dmu_channel *c, struct request *rq,
				      int *err)
{
	*err = 0;
	switch (rq->type) {
	case DM_USER_REQ_MAP_READ:
		return do_read(c, rq, err);
	case DM_USER_REQ_MAP_WRITE:
		return do_write(c, rq, err);
	case DM_USER_REQ_MAP_FLUSH:
		do_flush(c, rq, err);
		return DMU_CH_OK;
	case DM_USER_REQ_MAP_DISCARD:
	case DM_USER_REQ_MAP_WRITE_ZEROES:
	case DM_USER_REQ_MAP_SECURE_ERASE:
		do_zeroing(c, rq, err);
		return DMU_CH_OK;
	default:
		rq->status = DM_USER_RESP_UNSUPPORTED;
		return DMU_CH_OK;
	}
}

static void inject_delay(const struct dmu_channel *c)
{
	unsigned us = c->cfg.inject_delay_us;
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000 };

	while (us && clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
}

/*
 * One request, whichever way it was read: carry it out and gather its
 * reply (or account for it at once if its reply has left already, or the
 * descriptor failed: its reply then counts as an ERROR, as the kernel
 * never sees it).
 */
static enum dmu_serve_result serve_request(struct dmu_channel *c,
					   struct request *rq)
{
	enum dmu_serve_result r = DMU_CH_OK;
	int err = 0;

	if (c->npending == DMU_CHANNEL_MAX_REPLIES)
		r = send_pending(c);
	if (r == DMU_CH_OK) {
		inject_delay(c);
		r = dispatch(c, rq, &err);
	}
	if (err)
		report(c, rq, err);
	if (r != DMU_CH_OK || rq->sent) {
		account(c, dmu_op_from_type(rq->type),
			r == DMU_CH_OK ? rq->status : DM_USER_RESP_ERROR, rq->len,
			now_ns());
		return r;
	}
	queue_reply(c, rq);
	return DMU_CH_OK;
}

static bool in_range(uint64_t sector, uint64_t len, uint64_t size)
{
	return sector <= size / 512 && len <= size - sector * 512;
}

/*
 * A request beyond the size this daemon knows: the device may have grown
 * since start-up (dmuserd --resize grows the backing file, then reloads
 * the table).  Ask the backend, once per such request, and raise the size
 * if the storage grew; the size never shrinks here.  Returns the size now.
 */
static uint64_t grown_size(struct dmu_backend *b)
{
	uint64_t now, known = atomic_load(&b->size);

	if (!b->ops->probe_size || b->ops->probe_size(b, &now))
		return known;
	now &= ~(uint64_t)511;
	while (now > known && !atomic_compare_exchange_weak(&b->size, &known, now))
		;
	return now > known ? now : known;
}

/* The request whose header is at offset off of the got bytes read. */
static struct request parse(struct dmu_channel *c, size_t off, size_t got)
{
	unsigned char *msg = (unsigned char *)c->msg + off;
	size_t after = got - off - DMU_MSG_SIZE;
	struct dm_user_message m;

	memcpy(&m, msg, DMU_MSG_SIZE);

	struct request rq = {
		.msg = msg,
		.payload = msg + DMU_MSG_SIZE,
		.type = m.type,
		.flags = m.flags,
		.offset = m.sector * 512,
		.len = m.len,
	};
	if (rq.type == DM_USER_REQ_MAP_WRITE)
		rq.have = rq.len < after ? (size_t)rq.len : after;
	rq.in_range = in_range(m.sector, rq.len, atomic_load(&c->cfg.backend->size)) ||
		      in_range(m.sector, rq.len, grown_size(c->cfg.backend));
	return rq;
}

/*
 * Check that the got bytes of a read() divide into requests as the
 * protocol says, and count them: back to back, only the first incomplete
 * (and then alone); without batching, exactly one.
 */
static bool frame(const struct dmu_channel *c, size_t got, unsigned *count)
{
	const unsigned char *buf = (const unsigned char *)c->msg;
	size_t off = 0;
	unsigned n = 0;

	while (off < got) {
		size_t after = got - off;
		struct dm_user_message m;

		if (after < DMU_MSG_SIZE) {
			dmu_error("protocol error: %zu bytes of a header after %u requests",
				  after, n);
			return false;
		}
		memcpy(&m, buf + off, DMU_MSG_SIZE);
		after -= DMU_MSG_SIZE;
		n++;

		uint64_t payload = m.type == DM_USER_REQ_MAP_WRITE ? m.len : 0;
		if (payload > after && n > 1) {
			dmu_error("protocol error: request %u of a read() has %zu of its %llu payload bytes",
				  n, after, (unsigned long long)payload);
			return false;
		}
		if (payload > after)
			break;		/* the rest comes with the next reads */
		if (payload < after && !c->batching) {
			dmu_error("protocol error: %zu payload bytes after a type %llu request of %llu bytes",
				  after, (unsigned long long)m.type,
				  (unsigned long long)m.len);
			return false;
		}
		off += DMU_MSG_SIZE + (size_t)payload;
	}
	*count = n;
	return true;
}

enum dmu_serve_result dmu_channel_serve(struct dmu_channel *c)
{
	size_t got = 0;
	unsigned count;
	enum dmu_serve_result r = receive(c, &got);

	if (r != DMU_CH_OK)
		return r;
	if (!frame(c, got, &count)) {
		c->last_errno = EPROTO;
		return DMU_CH_BROKEN;
	}
	c->read_ns = now_ns();
	if (c->cfg.metrics)
		dmu_metrics_received(c->cfg.metrics, count);

	for (size_t off = 0; r == DMU_CH_OK && off < got;) {
		struct request rq = parse(c, off, got);

		r = serve_request(c, &rq);
		off += DMU_MSG_SIZE + rq.have;
	}
	if (r == DMU_CH_OK)
		r = send_pending(c);
	else
		retire_pending(c, 0);
	/* Answered, or left to the kernel with the broken stream. */
	if (c->cfg.metrics)
		dmu_metrics_idle(c->cfg.metrics);
	return r;
}
