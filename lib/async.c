// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The asynchronous API: requests go to the backend as they are read and
 * come back, in any order and from any thread, through dmu_req_complete().
 *
 * Slots.  An asynchronous channel has async_depth slots, each a page whose
 * end holds a request's header followed by a page-aligned buffer of cap
 * bytes: a WRITE's payload or a READ's data, so a successful READ reply
 * is one contiguous iovec.  A request lives in its slot from the moment it
 * is read to the moment its reply is written; slot numbers are the tags.
 *
 * Reading.  Without batching, a read() goes straight into a free slot: one
 * request, no copy.  With batching, a read() fills the channel's staging
 * buffer (a header and cap bytes) with as many requests as fit, and each
 * is copied to a free slot; those that find no free slot stay staged until
 * completions free some, and no new read() is made meanwhile.  A read()
 * is made only while a slot is free.
 *
 * Completion.  dmu_req_complete() pushes the request on a lock-free stack
 * (one compare-and-swap) and, when the stack was empty, writes the
 * channel's eventfd, so a burst of completions costs one wakeup.  The
 * serving thread drains the whole stack with one exchange and sends the
 * replies together, MAX_REPLIES per writev().  It clears the eventfd
 * before it drains the stack, so a completion that races with the drain
 * either is drained or wakes it again.
 *
 * The pollable descriptor is an epoll set: the control device (only while
 * a read() could be made), the completion eventfd, and the two stop
 * eventfds (until the stop is seen), so it is never readable for nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/sdt.h>
#include <unistd.h>

#include "internal.h"

HIDDEN int dmu__async_init(struct dmu_channel *ch);
HIDDEN void dmu__async_free(struct dmu_channel *ch);
HIDDEN int dmu__async_attach_fd(struct dmu_channel *ch);
HIDDEN void dmu__async_detach_fd(struct dmu_channel *ch);

#define SLOT_SIZE(ch) (PAGE + (ch)->cap)

static bool stopping(const struct dmu_channel *ch)
{
	return atomic_load_explicit(&ch->stopping, memory_order_relaxed) ||
	       atomic_load_explicit(&ch->dev->stopping, memory_order_relaxed);
}

/* ---- set-up ------------------------------------------------------------ */

static int ep_add(int epfd, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

/*
 * Watch the control device for requests, or stop watching it.  Not
 * watching means out of the set: epoll reports EPOLLHUP and EPOLLERR
 * whatever the events asked for.
 */
static void arm_ctrl(struct dmu_channel *ch, bool on)
{
	if (ch->ctrl_armed == on)
		return;
	if (on)
		ep_add(ch->epfd, ch->fd, EPOLLIN);
	else
		epoll_ctl(ch->epfd, EPOLL_CTL_DEL, ch->fd, NULL);
	ch->ctrl_armed = on;
}

int dmu__async_attach_fd(struct dmu_channel *ch)
{
	int err = ep_add(ch->epfd, ch->fd, EPOLLIN);

	ch->ctrl_armed = !err;
	return err;
}

void dmu__async_detach_fd(struct dmu_channel *ch)
{
	arm_ctrl(ch, false);
}

int dmu__async_init(struct dmu_channel *ch)
{
	size_t slot = SLOT_SIZE(ch);
	int err;

	if (ch->depth > SIZE_MAX / slot)
		return -EINVAL;
	ch->slot_mem_size = slot * ch->depth;
	if (posix_memalign((void **)&ch->slot_mem, PAGE, ch->slot_mem_size)) {
		ch->slot_mem = NULL;
		return -ENOMEM;
	}
	memset(ch->slot_mem, 0, ch->slot_mem_size);	/* no page fault later */
	ch->reqs = calloc(ch->depth, sizeof(*ch->reqs));
	ch->free_tags = calloc(ch->depth, sizeof(*ch->free_tags));
	if (!ch->reqs || !ch->free_tags)
		return -ENOMEM;
	for (unsigned i = 0; i < ch->depth; i++) {
		struct dmu_req *r = &ch->reqs[i];

		r->ch = ch;
		r->tag = i;
		r->buf = ch->slot_mem + (size_t)i * slot + PAGE;
		r->msg = r->buf - MSG_SIZE;
		ch->free_tags[i] = ch->depth - 1 - i;	/* tag 0 first */
	}
	ch->nfree = ch->depth;
	atomic_init(&ch->done, NULL);

	ch->epfd = epoll_create1(EPOLL_CLOEXEC);
	ch->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ch->epfd < 0 || ch->done_fd < 0)
		return -errno;
	err = ep_add(ch->epfd, ch->done_fd, EPOLLIN);
	if (!err)
		err = ep_add(ch->epfd, ch->stop_fd, EPOLLIN);
	if (!err)
		err = ep_add(ch->epfd, ch->dev->stop_fd, EPOLLIN);
	if (!err)
		err = dmu__async_attach_fd(ch);
	return err;
}

void dmu__async_free(struct dmu_channel *ch)
{
	if (ch->epfd >= 0)
		close(ch->epfd);
	if (ch->done_fd >= 0)
		close(ch->done_fd);
	free(ch->reqs);
	free(ch->free_tags);
	free(ch->slot_mem);
}

DMU_API int dmu_channel_pollfd(const struct dmu_channel *ch)
{
	return ch->epfd;
}

/* ---- completion -------------------------------------------------------- */

static void push_done(struct dmu_req *req, int err, bool wake)
{
	struct dmu_channel *ch = req->ch;
	struct dmu_req *old = atomic_load_explicit(&ch->done, memory_order_relaxed);

	req->err = err;
	do {
		req->next = old;
	} while (!atomic_compare_exchange_weak_explicit(&ch->done, &old, req,
							memory_order_release,
							memory_order_relaxed));
	if (!old && wake) {
		uint64_t one = 1;
		ssize_t ignored = write(ch->done_fd, &one, sizeof(one));

		(void)ignored;
	}
}

DMU_API void dmu_req_complete(struct dmu_req *req, int err)
{
	DTRACE_PROBE3(dmuser, backend_done, req->ch->dev->devt, req->seq, err);
	push_done(req, err, true);
}

/* ---- accessors --------------------------------------------------------- */

DMU_API unsigned dmu_req_type(const struct dmu_req *req)
{
	return (unsigned)req->type;
}

DMU_API uint64_t dmu_req_flags(const struct dmu_req *req)
{
	return req->flags;
}

DMU_API uint64_t dmu_req_offset(const struct dmu_req *req)
{
	return req->offset;
}

DMU_API uint64_t dmu_req_len(const struct dmu_req *req)
{
	return req->len;
}

DMU_API uint64_t dmu_req_seq(const struct dmu_req *req)
{
	return req->seq;
}

DMU_API unsigned dmu_req_tag(const struct dmu_req *req)
{
	return req->tag;
}

DMU_API void *dmu_req_buf(struct dmu_req *req)
{
	if (req->type == DM_USER_REQ_MAP_READ || req->type == DM_USER_REQ_MAP_WRITE)
		return req->buf;
	return NULL;
}

/* ---- replies ----------------------------------------------------------- */

static void free_slot(struct dmu_channel *ch, struct dmu_req *req)
{
	req->busy = false;
	ch->free_tags[ch->nfree++] = req->tag;
	ch->inflight--;
}

/*
 * Send the gathered replies (unless the stream is gone: then they count
 * as errors, as the kernel never sees them) and free their slots.
 */
static enum result send_replies(struct dmu_channel *ch)
{
	enum result r = RS_OK;
	unsigned n = 0;
	size_t sent = 0, end = 0;
	uint64_t now;

	if (!ch->npending)
		return RS_OK;
	for (unsigned i = 0; i < ch->npending; i++) {
		const struct pending_reply *p = &ch->pending[i];

		ch->iov[n++] = (struct iovec){ p->msg, MSG_SIZE + p->data_len };
	}
	if (!ch->gone)
		r = dmu__write_iov(ch, ch->iov, n, &sent);
	now = dmu__now_ns();
	for (unsigned i = 0; i < ch->npending; i++) {
		const struct pending_reply *p = &ch->pending[i];
		bool left;

		end += MSG_SIZE + p->data_len;
		left = end <= sent;
		if (left)
			DTRACE_PROBE3(dmuser, reply_sent, ch->dev->devt, p->seq, p->status);
		dmu__m_end(&ch->m, p->op, left ? p->status : DM_USER_RESP_ERROR, p->len,
			   now - p->read_ns);
		free_slot(ch, &ch->reqs[p->tag]);
	}
	ch->npending = 0;
	return r;
}

static void log_error(struct dmu_channel *ch, const struct dmu_req *req)
{
	if (req->err == -EOPNOTSUPP || ch->logged_errors >= 8)
		return;
	ch->logged_errors++;
	dmu__warn("%s: %s of %llu bytes at offset %llu failed: %s%s", ch->dev->name,
		  dmu__mop_name(dmu__mop(req->type)), (unsigned long long)req->len,
		  (unsigned long long)req->offset, strerror(-req->err),
		  ch->logged_errors == 8 ? " (further errors on this channel are only counted)" : "");
}

static enum result gather(struct dmu_channel *ch, struct dmu_req *req)
{
	unsigned status = dmu__status_for(req->err);
	enum result r = RS_OK;

	if (ch->npending == MAX_REPLIES)
		r = send_replies(ch);
	if (req->err)
		log_error(ch, req);
	dmu__set_status(req->msg, status);
	ch->pending[ch->npending++] = (struct pending_reply){
		.msg = req->msg,
		.data_len = req->type == DM_USER_REQ_MAP_READ && !status ? (size_t)req->len : 0,
		.len = req->len,
		.seq = req->seq,
		.read_ns = req->read_ns,
		.op = dmu__mop(req->type),
		.status = status,
		.tag = (int)req->tag,
	};
	return r;
}

/* Answer every request completed so far. */
static enum result reap(struct dmu_channel *ch)
{
	enum result r = RS_OK;
	uint64_t v;
	ssize_t ignored = read(ch->done_fd, &v, sizeof(v));	/* before the drain */

	(void)ignored;
	struct dmu_req *list = atomic_exchange_explicit(&ch->done, NULL, memory_order_acquire);
	struct dmu_req *fifo = NULL;

	while (list) {		/* the stack is newest first: answer oldest first */
		struct dmu_req *next = list->next;

		list->next = fifo;
		fifo = list;
		list = next;
	}
	for (; fifo; fifo = fifo->next) {
		enum result g = gather(ch, fifo);

		if (r == RS_OK)
			r = g;
	}
	enum result s = send_replies(ch);

	return r == RS_OK ? s : r;
}

/* ---- requests ---------------------------------------------------------- */

/* Reads and drops the rest of a WRITE payload that does not fit a slot. */
static enum result drop_payload(struct dmu_channel *ch, uint64_t left)
{
	while (left) {
		size_t n = left < ch->cap ? (size_t)left : ch->cap;
		enum result r = dmu__read_exact(ch, ch->data, n);

		if (r != RS_OK)
			return r;
		left -= n;
	}
	return RS_OK;
}

/* Why a request that changes data cannot run, or 0. */
static int refuse(const struct dmu_channel *ch, const struct dmu_req *req)
{
	bool changes = req->type == DM_USER_REQ_MAP_WRITE ||
		       req->type == DM_USER_REQ_MAP_DISCARD ||
		       req->type == DM_USER_REQ_MAP_WRITE_ZEROES ||
		       req->type == DM_USER_REQ_MAP_SECURE_ERASE;

	if (changes && ch->dev->read_only)
		return -EROFS;
	if (!dmu__in_range(ch->dev, req->offset / 512, req->len))
		return -EINVAL;
	if ((req->type == DM_USER_REQ_MAP_READ || req->type == DM_USER_REQ_MAP_WRITE) &&
	    req->len > ch->cap)
		return -E2BIG;
	return 0;
}

/*
 * Hand the request in slot req (header in req->msg, have bytes of a
 * WRITE's payload in req->buf) to the backend, or answer it at once.
 */
static enum result submit(struct dmu_channel *ch, struct dmu_req *req, size_t have,
			  const struct dmu_async_ops *ops, void *arg)
{
	struct dm_user_message m;
	enum result r = RS_OK;
	int err;

	memcpy(&m, req->msg, MSG_SIZE);
	req->seq = m.seq;
	req->type = m.type;
	req->flags = m.flags;
	req->offset = m.sector * 512;
	req->len = m.len;
	req->read_ns = ch->read_ns;
	req->busy = true;
	DTRACE_PROBE5(dmuser, request_received, ch->dev->devt, req->seq, req->type,
		      req->offset, req->len);

	if (req->type == DM_USER_REQ_MAP_WRITE && have < req->len) {
		if (req->len <= ch->cap)
			r = dmu__read_exact(ch, req->buf + have, (size_t)(req->len - have));
		else
			r = drop_payload(ch, req->len - have);
		if (r != RS_OK) {
			push_done(req, -EIO, false);
			return r;
		}
	}
	switch (req->type) {
	case DM_USER_REQ_MAP_READ:
	case DM_USER_REQ_MAP_WRITE:
	case DM_USER_REQ_MAP_FLUSH:
	case DM_USER_REQ_MAP_DISCARD:
	case DM_USER_REQ_MAP_WRITE_ZEROES:
	case DM_USER_REQ_MAP_SECURE_ERASE:
		err = ops->submit ? refuse(ch, req) : -EOPNOTSUPP;
		break;
	default:
		err = -EOPNOTSUPP;
		break;
	}
	if (err) {
		push_done(req, err, false);
		return RS_OK;
	}
	if (req->type == DM_USER_REQ_MAP_FLUSH)
		dmu__m_flushed(&ch->m);
	DTRACE_PROBE3(dmuser, backend_submitted, ch->dev->devt, req->seq, req->type);
	err = ops->submit(arg, req);
	if (err)
		push_done(req, err, false);
	return RS_OK;
}

static struct dmu_req *take_slot(struct dmu_channel *ch)
{
	return &ch->reqs[ch->free_tags[--ch->nfree]];
}

/* Move staged requests (batching) to free slots and submit them. */
static enum result submit_staged(struct dmu_channel *ch, const struct dmu_async_ops *ops,
				 void *arg, unsigned *submitted)
{
	const unsigned char *buf = (const unsigned char *)ch->msg;

	while (ch->staged_off < ch->staged_got && ch->nfree) {
		struct dmu_req *req = take_slot(ch);
		size_t off = ch->staged_off;
		size_t after = ch->staged_got - off - MSG_SIZE;
		struct dm_user_message m;
		size_t have = 0;

		memcpy(&m, buf + off, MSG_SIZE);
		memcpy(req->msg, buf + off, MSG_SIZE);
		if (m.type == DM_USER_REQ_MAP_WRITE) {
			have = m.len < after ? (size_t)m.len : after;
			/* A payload larger than a slot is dropped by submit(). */
			if (m.len <= ch->cap)
				memcpy(req->buf, buf + off + MSG_SIZE, have);
		}
		ch->staged_off = off + MSG_SIZE + have;
		enum result r = submit(ch, req, have, ops, arg);

		(*submitted)++;
		if (r != RS_OK)
			return r;
	}
	return RS_OK;
}

/*
 * One read(): batching, into the staging buffer; otherwise straight into a
 * free slot.  RS_AGAIN when nothing is queued.
 */
static enum result read_some(struct dmu_channel *ch, const struct dmu_async_ops *ops,
			     void *arg, unsigned *submitted)
{
	unsigned char *dst = ch->batching ? (unsigned char *)ch->msg : ch->reqs[ch->free_tags[ch->nfree - 1]].msg;
	ssize_t n = read(ch->fd, dst, MSG_SIZE + ch->cap);
	unsigned count;
	size_t got;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return RS_AGAIN;
	if (n < 0)
		return dmu__fd_failed(ch, errno);
	if (n == 0) {
		ch->last_errno = ENOTBLK;
		return RS_GONE;
	}
	dmu__m_read(&ch->m);
	got = (size_t)n;
	if (got < MSG_SIZE) {
		enum result r = dmu__read_exact(ch, dst + got, MSG_SIZE - got);

		if (r != RS_OK)
			return r;
		got = MSG_SIZE;
	}
	if (!dmu__frame(ch, dst, got, &count)) {
		ch->last_errno = EPROTO;
		return RS_BROKEN;
	}
	ch->read_ns = dmu__now_ns();
	dmu__m_received(&ch->m, count);
	ch->inflight += count;
	if (ch->batching) {
		ch->staged_off = 0;
		ch->staged_got = got;
		return submit_staged(ch, ops, arg, submitted);
	}
	(*submitted)++;
	return submit(ch, take_slot(ch), got - MSG_SIZE, ops, arg);
}

/* The stream ended or broke: staged requests will never be answered. */
static void drop_staged(struct dmu_channel *ch)
{
	const unsigned char *buf = (const unsigned char *)ch->msg;

	while (ch->staged_off < ch->staged_got) {
		struct dm_user_message m;
		size_t after = ch->staged_got - ch->staged_off - MSG_SIZE;
		size_t have = 0;

		memcpy(&m, buf + ch->staged_off, MSG_SIZE);
		if (m.type == DM_USER_REQ_MAP_WRITE)
			have = m.len < after ? (size_t)m.len : after;
		ch->staged_off += MSG_SIZE + have;
		dmu__m_end(&ch->m, dmu__mop(m.type), DM_USER_RESP_ERROR, m.len, 0);
		ch->inflight--;
	}
}

static void went(struct dmu_channel *ch)
{
	ch->gone = true;
	ch->gone_err = ch->last_errno ? ch->last_errno : EIO;
	drop_staged(ch);
	if (ch->gone_err != ENOTBLK)
		dmu__warn("%s: channel broken: %s", ch->dev->name, strerror(ch->gone_err));
}

DMU_API int dmu_channel_process(struct dmu_channel *ch, const struct dmu_async_ops *ops,
				void *arg)
{
	struct dmu_async_ops o;
	unsigned submitted = 0;
	enum result r;

	if (!ch->depth)
		return -EINVAL;
	OPTS_COPY(o, ops);

	if (reap(ch) != RS_OK)
		went(ch);
	if (stopping(ch) && !ch->stop_seen) {
		epoll_ctl(ch->epfd, EPOLL_CTL_DEL, ch->stop_fd, NULL);
		epoll_ctl(ch->epfd, EPOLL_CTL_DEL, ch->dev->stop_fd, NULL);
		ch->stop_seen = true;
	}
	r = submit_staged(ch, &o, arg, &submitted);
	while (r == RS_OK && !ch->gone && !ch->stop_seen && ch->nfree &&
	       ch->staged_off >= ch->staged_got)
		r = read_some(ch, &o, arg, &submitted);
	if (r == RS_GONE || r == RS_BROKEN)
		went(ch);
	if (submitted && o.commit)
		o.commit(arg);
	/* Requests answered at once (and fast backends) leave now. */
	if (atomic_load_explicit(&ch->done, memory_order_relaxed) && reap(ch) != RS_OK &&
	    !ch->gone)
		went(ch);

	arm_ctrl(ch, !ch->gone && !ch->stop_seen && ch->nfree &&
		     ch->staged_off >= ch->staged_got);
	if (ch->inflight)
		return 0;
	if (ch->gone)
		return -ch->gone_err;
	return ch->stop_seen ? DMU_STOPPED : 0;
}

DMU_API int dmu_channel_run_async(struct dmu_channel *ch, const struct dmu_async_ops *ops,
				  void *arg)
{
	for (;;) {
		struct epoll_event ev[4];
		int r = dmu_channel_process(ch, ops, arg);

		if (r == DMU_STOPPED)
			return 0;
		if (r)
			return r;
		if (epoll_wait(ch->epfd, ev, 4, -1) < 0 && errno != EINTR)
			return -errno;
	}
}
