// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Channels, and the blocking loop: the dm-user wire protocol, daemon side
 * (module/README.md, "Wire protocol").
 *
 * A request is a struct dm_user_message header, followed for a WRITE by
 * len bytes of payload.  Without batching, one read() returns at most one
 * request: its header and some or all of its payload, or just part of
 * either, so everything up to the end of the payload belongs to it.
 *
 * With DM_USER_CHANNEL_BATCH (asked for at open unless the caller says
 * DMU_BATCH_OFF; a module without it fails the ioctl with ENOTTY and the
 * channel stays as above), one read() returns as many whole requests as
 * fit in the buffer, back to back.  Only the first may be incomplete, and
 * only when it does not fit: the buffer holds a header and cap bytes, so
 * that is a WRITE larger than cap, which is then the only request in the
 * buffer and is served a buffer at a time, as without batching.
 *
 * The reply is the request's header with the status in `type`, followed
 * for a successful READ by len bytes of data.  Replies are gathered while
 * the requests of one read() are carried out in order, and leave together
 * in one writev(): each header where its request was read, each READ's
 * data where the callback put it.  Without batching the data go right
 * after the header, in the read buffer; with batching they go to a second
 * buffer (reply_data), since later requests follow the header.  Replies are
 * sent before the next read(), and earlier when the gathered ones fill the
 * reply buffer or MAX_REPLIES, or must precede a streamed READ.
 *
 * Flushes.  When the kernel sees a FLUSH (or a PREFLUSH or FUA request)
 * answered, every write it had seen answered before it issued that request
 * must be durable.  Gathering keeps that, because a reply is gathered only
 * after its callback returned, and requests are carried out in the order
 * read: a write answered before the flush was issued was answered in an
 * earlier writev(), so its callback had returned before the flush's
 * callback runs; writes read in the same batch as the flush were not
 * answered when it was issued, so it owes them nothing; a FUA write's
 * flush runs before its reply is gathered.
 *
 * The descriptor is non-blocking: an empty queue makes the loop poll() the
 * control device and the two stop eventfds (the channel's and the
 * device's), so a stop needs no signal.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/sdt.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

#define MAX_LOGGED_ERRORS 8
#define OPEN_WAIT_MS 5000		/* for the control node to appear */
#define OPEN_POLL_MS 10
#define ZERO_CHUNK (64 * 1024)

_Static_assert(2 * MAX_REPLIES <= IOV_MAX, "one writev() must take every pending reply");
_Static_assert(DMU_REQ_READ == DM_USER_REQ_MAP_READ && DMU_REQ_WRITE == DM_USER_REQ_MAP_WRITE &&
	       DMU_REQ_FLUSH == DM_USER_REQ_MAP_FLUSH && DMU_REQ_DISCARD == DM_USER_REQ_MAP_DISCARD &&
	       DMU_REQ_SECURE_ERASE == DM_USER_REQ_MAP_SECURE_ERASE &&
	       DMU_REQ_WRITE_ZEROES == DM_USER_REQ_MAP_WRITE_ZEROES, "request types are the protocol's");
_Static_assert(DMU_REQ_FLAG_FUA == DM_USER_REQ_MAP_FLAG_FUA &&
	       DMU_REQ_FLAG_PREFLUSH == DM_USER_REQ_MAP_FLAG_PREFLUSH &&
	       DMU_REQ_FLAG_NOUNMAP == DM_USER_REQ_MAP_FLAG_NOUNMAP &&
	       DMU_REQ_FLAG_SYNC == DM_USER_REQ_MAP_FLAG_SYNC &&
	       DMU_REQ_FLAG_META == DM_USER_REQ_MAP_FLAG_META &&
	       DMU_REQ_FLAG_RAHEAD == DM_USER_REQ_MAP_FLAG_RAHEAD &&
	       DMU_REQ_FLAG_NOWAIT == DM_USER_REQ_MAP_FLAG_NOWAIT, "request flags are the protocol's");

/* Never written: the source of the zeroes write_zeroes writes without a callback. */
static _Alignas(4096) const unsigned char zero_chunk[ZERO_CHUNK];

/* Implemented in async.c. */
HIDDEN int dmu__async_init(struct dmu_channel *ch);
HIDDEN void dmu__async_free(struct dmu_channel *ch);
HIDDEN int dmu__async_attach_fd(struct dmu_channel *ch);
HIDDEN void dmu__async_detach_fd(struct dmu_channel *ch);

/* A request as parsed from its header, and its outcome. */
struct request {
	unsigned char *msg;	/* its header, in the read buffer */
	unsigned char *payload;	/* right after it: a WRITE's payload */
	uint64_t seq;
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

static bool stopping(const struct dmu_channel *ch)
{
	return atomic_load_explicit(&ch->stopping, memory_order_relaxed) ||
	       atomic_load_explicit(&ch->dev->stopping, memory_order_relaxed);
}

/* The reply status for a callback's result. */
unsigned dmu__status_for(int err)
{
	switch (err) {
	case 0:			return DM_USER_RESP_SUCCESS;
	case -ENOSPC:		return DM_USER_RESP_NOSPC;
	case -EOPNOTSUPP:	return DM_USER_RESP_UNSUPPORTED;
	default:		return DM_USER_RESP_ERROR;
	}
}

/* ---- PR_SET_IO_FLUSHER ------------------------------------------------- */

DMU_API int dmu_thread_set_io_flusher(void)
{
	return prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) ? -errno : 0;
}

static atomic_flag told_io_flusher = ATOMIC_FLAG_INIT;

static void set_io_flusher(void)
{
	int err = dmu_thread_set_io_flusher();

	if (err && !atomic_flag_test_and_set(&told_io_flusher))
		dmu__warn("prctl(PR_SET_IO_FLUSHER): %s (needs CAP_SYS_RESOURCE and Linux 5.6); reclaim may wait on this device",
			  strerror(-err));
}

/* ---- batching ---------------------------------------------------------- */

/* Every channel asks the same kernel: say why not once, not per channel. */
static atomic_flag told_unsupported = ATOMIC_FLAG_INIT;
static atomic_flag told_failed = ATOMIC_FLAG_INIT;

static bool ask_for_batching(struct dmu_channel *ch)
{
	uint64_t flags = DM_USER_CHANNEL_BATCH;
	int err = ioctl(ch->fd, DM_USER_IOC_SET_FLAGS, &flags) ? -errno : 0;

	if (!err)
		return true;
	if (err == -ENOTTY) {
		if (!atomic_flag_test_and_set(&told_unsupported))
			dmu__info("the kernel's dm-user does not batch requests; reading one request at a time");
	} else if (!atomic_flag_test_and_set(&told_failed)) {
		dmu__warn("cannot turn on request batching (DM_USER_IOC_SET_FLAGS): %s; reading one request at a time",
			  strerror(-err));
	}
	return false;
}

static void set_batching(struct dmu_channel *ch, bool on)
{
	ch->batching = on;
	dmu__m_batched(&ch->m, on);
}

/* ---- open and close ---------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };

	while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
}

/*
 * devtmpfs creates /dev/dm-user/<name> before the table load returns; with
 * udev managing /dev the node may lag a little, so wait a bounded time.
 */
static int open_control(const char *path, bool wait)
{
	for (unsigned waited = 0;; waited += OPEN_POLL_MS) {
		int fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);

		if (fd >= 0)
			return fd;
		if (errno != ENOENT || !wait || waited >= OPEN_WAIT_MS)
			return -errno;
		sleep_ms(OPEN_POLL_MS);
	}
}

static void close_pipes(struct dmu_channel *ch)
{
	for (int i = 0; i < 2; i++) {
		if (ch->pin[i] >= 0)
			close(ch->pin[i]);
		if (ch->pout[i] >= 0)
			close(ch->pout[i]);
		ch->pin[i] = ch->pout[i] = -1;
	}
}

static void free_channel(struct dmu_channel *ch)
{
	close_pipes(ch);
	dmu__async_free(ch);
	if (ch->fd >= 0)
		close(ch->fd);
	if (ch->stop_fd >= 0)
		close(ch->stop_fd);
	free(ch->mem);
	free(ch);
}

static int open_common(struct dmu_device *dev, int fd,
		       const struct dmu_channel_opts *opts, struct dmu_channel **chp)
{
	struct dmu_channel_opts o;
	struct dmu_channel *ch;
	int err, fl;

	OPTS_COPY(o, opts);
	*chp = NULL;
	if (!o.buffer_size)
		o.buffer_size = dmu_device_max_io(dev);
	if (o.buffer_size % PAGE || o.buffer_size > (size_t)1 << 30 ||
	    o.mem_align > PAGE || (o.mem_align & (o.mem_align - 1)) ||
	    o.batch > DMU_BATCH_OFF || o.async_depth > 65536 ||
	    o.poll_us > 1000000) {
		close(fd);
		return -EINVAL;
	}
	fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK)) {
		err = -errno;
		close(fd);
		return err;
	}
	ch = aligned_alloc(_Alignof(struct dmu_channel),
			   (sizeof(*ch) + _Alignof(struct dmu_channel) - 1) &
			   ~(_Alignof(struct dmu_channel) - 1));
	if (!ch) {
		close(fd);
		return -ENOMEM;
	}
	memset(ch, 0, sizeof(*ch));
	ch->dev = dev;
	ch->fd = fd;
	ch->epfd = ch->done_fd = -1;
	ch->pin[0] = ch->pin[1] = ch->pout[0] = ch->pout[1] = -1;
	ch->cap = o.buffer_size;
	ch->align = o.mem_align;
	ch->poll_ns = (uint64_t)o.poll_us * 1000;
	ch->depth = o.async_depth;
	ch->want_batch = o.batch != DMU_BATCH_OFF;
	ch->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ch->stop_fd < 0) {
		err = -errno;
		goto fail;
	}

	/*
	 * [ page: header at its end | cap, page aligned (O_DIRECT) |
	 *   blocking with batching: cap for reply data ]
	 * Touch it all now, so no page fault waits for memory on the
	 * request path.  An asynchronous channel reads batches here and
	 * copies each request to its slot.
	 */
	bool batching = ch->want_batch && ask_for_batching(ch);

	ch->mem_size = PAGE + ch->cap * (batching && !ch->depth ? 2 : 1);
	if (posix_memalign((void **)&ch->mem, PAGE, ch->mem_size)) {
		ch->mem = NULL;
		err = -ENOMEM;
		goto fail;
	}
	memset(ch->mem, 0, ch->mem_size);
	ch->data = ch->mem + PAGE;
	ch->msg = (struct dm_user_message *)(ch->data - MSG_SIZE);
	if (batching && !ch->depth)
		ch->reply_data = ch->data + ch->cap;
	set_batching(ch, batching);
	if (ch->depth) {
		err = dmu__async_init(ch);
		if (err)
			goto fail;
	}
	if (!o.no_io_flusher)
		set_io_flusher();
	dmu__device_add_channel(dev, ch);
	*chp = ch;
	return 0;
fail:
	free_channel(ch);
	return err;
}

DMU_API int dmu_channel_open_fd(struct dmu_device *dev, int fd,
				const struct dmu_channel_opts *opts,
				struct dmu_channel **chp)
{
	if (!dev || fd < 0) {
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	return open_common(dev, fd, opts, chp);
}

DMU_API int dmu_channel_open(struct dmu_device *dev,
			     const struct dmu_channel_opts *opts,
			     struct dmu_channel **chp)
{
	int fd = open_control(dev->control_path, true);

	if (fd < 0) {
		dmu__err("cannot open %s: %s", dev->control_path, strerror(-fd));
		*chp = NULL;
		return fd;
	}
	return open_common(dev, fd, opts, chp);
}

DMU_API int dmu_channel_reopen(struct dmu_channel *ch)
{
	int fd;

	if (ch->inflight)
		return -EBUSY;
	fd = open_control(ch->dev->control_path, false);
	if (fd < 0)
		return fd;
	if (ch->depth)
		dmu__async_detach_fd(ch);
	close(ch->fd);
	ch->fd = fd;
	/* What a broken stream left in the pipes is not this channel's. */
	close_pipes(ch);
	ch->splice_tried = false;
	ch->npending = 0;
	ch->reply_data_used = 0;
	ch->staged_off = ch->staged_got = 0;
	ch->gone = false;
	set_batching(ch, ch->want_batch && (ch->reply_data || ch->depth) &&
			 ask_for_batching(ch));
	dmu__m_reopened(&ch->m);
	return ch->depth ? dmu__async_attach_fd(ch) : 0;
}

DMU_API int dmu_channel_close(struct dmu_channel *ch)
{
	if (!ch)
		return 0;
	if (ch->depth && ch->inflight)
		return -EBUSY;
	dmu__m_idle(&ch->m);
	dmu__device_del_channel(ch->dev, ch);
	free_channel(ch);
	return 0;
}

DMU_API void dmu_channel_stop(struct dmu_channel *ch)
{
	uint64_t one = 1;

	atomic_store(&ch->stopping, true);
	ssize_t ignored = write(ch->stop_fd, &one, sizeof(one));
	(void)ignored;
}

DMU_API int dmu_channel_fd(const struct dmu_channel *ch)
{
	return ch->fd;
}

DMU_API bool dmu_channel_batching(const struct dmu_channel *ch)
{
	return ch->batching;
}

DMU_API unsigned dmu_channel_inflight(const struct dmu_channel *ch)
{
	return ch->inflight;
}

/* ---- the descriptor ---------------------------------------------------- */

enum result dmu__fd_failed(struct dmu_channel *ch, int err)
{
	ch->last_errno = err;
	return err == ENOTBLK ? RS_GONE : RS_BROKEN;
}

/* Wait until fd can do `events` (the rest of a request, room for a reply). */
static void wait_fd(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };

	poll(&p, 1, -1);
}

/* Read exactly len bytes of the current request. */
enum result dmu__read_exact(struct dmu_channel *ch, void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t n = read(ch->fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			wait_fd(ch->fd, POLLIN);
			continue;
		}
		if (n < 0)
			return dmu__fd_failed(ch, errno);
		if (n == 0)
			return dmu__fd_failed(ch, EPIPE);	/* closed mid-request */
		dmu__m_read(&ch->m);
		p += n;
		len -= (size_t)n;
	}
	return RS_OK;
}

/*
 * Write iov[0..n) in full, adding the bytes written to *sent.  The iovecs
 * are used up: after a short write the next writev() starts where it
 * stopped.
 */
enum result dmu__write_iov(struct dmu_channel *ch, struct iovec *iov,
			     unsigned n, size_t *sent)
{
	while (n) {
		ssize_t w = writev(ch->fd, iov, (int)n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			wait_fd(ch->fd, POLLOUT);
			continue;
		}
		if (w < 0)
			return dmu__fd_failed(ch, errno);
		if (w == 0)
			return dmu__fd_failed(ch, EIO);
		dmu__m_wrote(&ch->m);
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
	return RS_OK;
}

/*
 * Read as many bytes of requests as the buffer holds, at least a header;
 * RS_AGAIN if none is queued.
 */
static enum result receive(struct dmu_channel *ch, size_t *got)
{
	size_t want = MSG_SIZE + ch->cap;
	ssize_t n = read(ch->fd, ch->msg, want);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return RS_AGAIN;
	if (n < 0)
		return dmu__fd_failed(ch, errno);
	if (n == 0) {
		ch->last_errno = ENOTBLK;	/* end of stream: the target went */
		return RS_GONE;
	}
	dmu__m_read(&ch->m);
	*got = (size_t)n;
	if (*got < MSG_SIZE) {
		enum result r = dmu__read_exact(ch, (unsigned char *)ch->msg + *got,
					   MSG_SIZE - *got);
		if (r != RS_OK)
			return r;
		*got = MSG_SIZE;
	}
	return RS_OK;
}

/* ---- replies ----------------------------------------------------------- */

/* Headers after the first need not be 8-byte aligned: no direct access. */
void dmu__set_status(unsigned char *msg, unsigned status)
{
	uint64_t type = status;	/* seq, flags, sector and len are echoed */

	memcpy(msg + offsetof(struct dm_user_message, type), &type, sizeof(type));
}

/*
 * Account for the pending replies and forget them.  Those within the
 * first sent bytes have left; the others failed with the descriptor.
 */
static void retire_pending(struct dmu_channel *ch, size_t sent)
{
	uint64_t end_ns = dmu__now_ns();
	size_t end = 0;

	for (unsigned i = 0; i < ch->npending; i++) {
		const struct pending_reply *p = &ch->pending[i];
		bool left;

		end += MSG_SIZE + p->data_len;
		left = end <= sent;
		if (left)
			DTRACE_PROBE3(dmuser, reply_sent, ch->dev->devt, p->seq, p->status);
		dmu__m_end(&ch->m, p->op, left ? p->status : DM_USER_RESP_ERROR,
			   p->len, end_ns - p->read_ns);
	}
	ch->npending = 0;
	ch->reply_data_used = 0;
}

/* Send the pending replies, in the order their requests were read. */
static enum result send_pending(struct dmu_channel *ch)
{
	unsigned n = 0;
	size_t sent = 0;

	if (!ch->npending)
		return RS_OK;
	for (unsigned i = 0; i < ch->npending; i++) {
		const struct pending_reply *p = &ch->pending[i];

		ch->iov[n++] = (struct iovec){ p->msg, MSG_SIZE };
		if (p->data_len)
			ch->iov[n++] = (struct iovec){ (void *)p->data, p->data_len };
	}
	enum result r = dmu__write_iov(ch, ch->iov, n, &sent);

	retire_pending(ch, sent);
	return r;
}

static void queue_reply(struct dmu_channel *ch, const struct request *rq)
{
	dmu__set_status(rq->msg, rq->status);
	ch->pending[ch->npending++] = (struct pending_reply){
		.msg = rq->msg,
		.data = rq->data,
		.data_len = rq->data_len,
		.len = rq->len,
		.seq = rq->seq,
		.read_ns = ch->read_ns,
		.op = dmu__mop(rq->type),
		.status = rq->status,
	};
}

/*
 * Room for len (at most cap) bytes that must stay put until the pending
 * replies are sent.  Without batching the read() brought this request
 * alone, so that is the buffer after its header.  With batching it is the
 * next page-aligned free part of reply_data, once the pending replies are
 * sent if it is full.
 */
static enum result reply_space(struct dmu_channel *ch, size_t len, unsigned char **buf)
{
	enum result r = RS_OK;

	if (!ch->batching) {
		*buf = ch->data;
		return RS_OK;
	}
	if (len > ch->cap - ch->reply_data_used)
		r = send_pending(ch);
	*buf = ch->reply_data + ch->reply_data_used;
	return r;
}

/* ---- requests ---------------------------------------------------------- */

/* Log the first few failures of a channel; all of them are counted. */
static void report(struct dmu_channel *ch, const struct request *rq, int err)
{
	const char *more = "";

	if (err == -EOPNOTSUPP || ch->logged_errors >= MAX_LOGGED_ERRORS)
		return;
	if (++ch->logged_errors == MAX_LOGGED_ERRORS)
		more = " (further errors on this channel are only counted)";
	if (rq->type == DM_USER_REQ_MAP_FLUSH)
		dmu__warn("%s: flush failed: %s%s", ch->dev->name, strerror(-err), more);
	else
		dmu__warn("%s: %s of %llu bytes at offset %llu failed: %s%s", ch->dev->name,
			  dmu__mop_name(dmu__mop(rq->type)), (unsigned long long)rq->len,
			  (unsigned long long)rq->offset, strerror(-err), more);
}

struct ctx {
	struct dmu_channel *ch;
	const struct dmu_ops *ops;
	void *arg;
};

static int flush(const struct ctx *x)
{
	if (!x->ops->flush)
		return 0;	/* nothing is cached */
	dmu__m_flushed(&x->ch->m);
	return x->ops->flush(x->arg);
}

/* Why a request that changes data cannot run, or 0. */
static int refuse_change(const struct dmu_channel *ch, const struct request *rq)
{
	if (ch->dev->read_only)
		return -EROFS;
	if (!rq->in_range)
		return -EINVAL;
	return 0;
}

static int preflush(const struct ctx *x, const struct request *rq, int err)
{
	if (err || !(rq->flags & DM_USER_REQ_MAP_FLAG_PREFLUSH))
		return err;
	return flush(x);
}

/* FUA: the data is durable before the reply says it is written. */
static int fua(const struct ctx *x, const struct request *rq, int err)
{
	if (err || !(rq->flags & DM_USER_REQ_MAP_FLAG_FUA))
		return err;
	return flush(x);
}

/*
 * A WRITE's payload as the callback takes it.  Only the first payload of
 * a read() starts page aligned; a backend that wants aligned memory
 * (mem_align) gets the others copied to free reply space.
 */
static enum result write_source(struct dmu_channel *ch, const unsigned char *buf,
				size_t len, const unsigned char **src)
{
	unsigned char *copy;
	enum result r;

	*src = buf;
	if (ch->align <= 1 || (uintptr_t)buf % ch->align == 0 || !ch->batching)
		return RS_OK;
	r = reply_space(ch, len, &copy);
	if (r != RS_OK)
		return r;
	memcpy(copy, buf, len);
	*src = copy;
	return RS_OK;
}

/*
 * WRITE: consume the whole payload, a buffer at a time, even when the
 * request is refused or the callback fails, so the next read() starts at
 * the next request.
 */
static enum result do_write(const struct ctx *x, struct request *rq, int *err)
{
	struct dmu_channel *ch = x->ch;
	unsigned char *buf = rq->payload;
	size_t have = rq->have;
	uint64_t done = 0;

	*err = x->ops->write ? preflush(x, rq, refuse_change(ch, rq)) : -EOPNOTSUPP;
	while (done < rq->len) {
		uint64_t left = rq->len - done;
		size_t chunk = left < ch->cap ? (size_t)left : ch->cap;
		enum result r = RS_OK;
		const unsigned char *src = buf;

		/*
		 * Only the first request of a read() can be incomplete, and
		 * its payload starts at ch->data: read the rest there.
		 */
		if (have < chunk)
			r = dmu__read_exact(ch, buf + have, chunk - have);
		if (r == RS_OK && !*err)
			r = write_source(ch, buf, chunk, &src);
		if (r != RS_OK)
			return r;
		if (!*err)
			*err = x->ops->write(x->arg, src, chunk, rq->offset + done);
		done += chunk;
		have = 0;
		buf = ch->data;
	}
	*err = fua(x, rq, *err);
	rq->status = dmu__status_for(*err);
	return RS_OK;
}

/*
 * READ: a request that fits the buffer is read completely before the reply
 * is gathered, so any failure becomes an ERROR reply.  A larger one
 * streams, after the pending replies; once its SUCCESS header is sent a
 * failure can only break the channel, which makes the kernel fail (or
 * requeue) the request.
 */
static enum result do_read(const struct ctx *x, struct request *rq, int *err)
{
	struct dmu_channel *ch = x->ch;
	size_t cap = ch->cap;
	size_t first = rq->len < cap ? (size_t)rq->len : cap;
	bool stream = rq->len > cap;
	enum result r;
	unsigned char *buf = NULL;

	if (!x->ops->read) {
		*err = -EOPNOTSUPP;
		rq->status = DM_USER_RESP_UNSUPPORTED;
		return RS_OK;
	}
	r = stream ? send_pending(ch) : RS_OK;
	if (r == RS_OK)
		r = reply_space(ch, first, &buf);
	if (r != RS_OK)
		return r;
	*err = rq->in_range ? 0 : -EINVAL;
	if (!*err)
		*err = x->ops->read(x->arg, buf, first, rq->offset);
	if (*err) {
		rq->status = dmu__status_for(*err);
		return RS_OK;
	}
	rq->status = DM_USER_RESP_SUCCESS;
	if (!stream) {
		rq->data = buf;
		rq->data_len = first;
		if (ch->batching)
			ch->reply_data_used += page_up(first);
		return RS_OK;
	}

	struct iovec iov[2] = { { rq->msg, MSG_SIZE }, { buf, first } };
	size_t sent = 0;

	dmu__set_status(rq->msg, DM_USER_RESP_SUCCESS);
	rq->sent = true;
	r = dmu__write_iov(ch, iov, 2, &sent);
	for (uint64_t done = first; r == RS_OK && done < rq->len;) {
		uint64_t left = rq->len - done;
		size_t chunk = left < cap ? (size_t)left : cap;

		*err = x->ops->read(x->arg, buf, chunk, rq->offset + done);
		if (*err)
			return dmu__fd_failed(ch, -*err);
		iov[0] = (struct iovec){ buf, chunk };
		r = dmu__write_iov(ch, iov, 1, &sent);
		done += chunk;
	}
	if (r == RS_OK)
		DTRACE_PROBE3(dmuser, reply_sent, ch->dev->devt, rq->seq, rq->status);
	return r;
}

/* ---- splicing (dmu_ops.locate) ----------------------------------------- */

/*
 * With a backend that says where its bytes are (locate), a blocking
 * channel takes requests with splice() into the pipe pin: the kernel
 * moves whole requests, each header copied and a WRITE's payload as
 * references to the BIO's pages (module/README.md, "Splice"), so that the
 * payload goes from there to the backend's descriptor with one copy, the
 * one into the file.  A READ's reply goes the other way: its header is
 * written into the pipe pout, its data spliced in from the descriptor
 * (page references where the descriptor's cache has them), and the whole
 * spliced to the control device, which copies it into the BIO.  A read()
 * and a write() with the buffer between them make two copies.
 *
 * Only where it pays: for a request of SPLICE_MIN or more.  A READ that
 * large is answered by splice, whichever way it came; the requests of a
 * round are taken by splice when the round before had a WRITE that large
 * (serve_once()), else by read(), which takes a batch of small ones in one
 * call where a splice needs a read() of the pipe per header, and gathers
 * their replies in one writev() where a spliced READ is three calls.
 *
 * Everything else is as with read(): the same checks, flushes and
 * replies; a request the backend will not locate, or whose first splice
 * fails with EINVAL, goes through the buffer and the read and write
 * callbacks.  A module without splice fails the first splice() with
 * EINVAL, and the channel reads from then on.
 */

/* /proc/sys/fs/pipe-max-size, or 0. */
static size_t pipe_max_size(void)
{
	char buf[32] = "";
	int fd = open("/proc/sys/fs/pipe-max-size", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	return n > 0 ? strtoul(buf, NULL, 10) : 0;
}

/* Both pipes at size bytes; the size they got, or -1. */
static int size_pipes(struct dmu_channel *ch, size_t size)
{
	int in, out;

	if (size > INT_MAX)
		return -1;
	in = fcntl(ch->pin[1], F_SETPIPE_SZ, (int)size);
	out = in < 0 ? -1 : fcntl(ch->pout[1], F_SETPIPE_SZ, (int)size);
	return out < 0 ? -1 : in < out ? in : out;
}

/*
 * The pipes, each for the largest request: its header and its payload in
 * separate buffers, a page each, one more for a payload that does not
 * start on a page (F_SETPIPE_SZ rounds up to a power of two).  Sizes past
 * /proc/sys/fs/pipe-max-size need CAP_SYS_RESOURCE; without it the pipes
 * get that size, and a request too large for them is read (the module
 * refuses to splice it: EMSGSIZE).
 */
static void open_pipes(struct dmu_channel *ch)
{
	size_t want = (dmu_device_max_io(ch->dev) / PAGE + 3) * PAGE, max;
	int got;

	if (pipe2(ch->pin, O_CLOEXEC | O_NONBLOCK) || pipe2(ch->pout, O_CLOEXEC | O_NONBLOCK))
		goto fail;
	got = size_pipes(ch, want);
	if (got < 0 && errno == EPERM && (max = pipe_max_size()) && max < want)
		got = size_pipes(ch, max);
	if (got < 0)
		goto fail;
	ch->pipe_bytes = (size_t)got;
	return;
fail:
	dmu__info("%s: no pipes of %zu bytes to splice with (%s): reading and writing instead",
		  ch->dev->name, want, strerror(errno));
	close_pipes(ch);
}

/* Exactly len bytes the kernel spliced into pin: all there, or the stream is wrong. */
static enum result pipe_read(struct dmu_channel *ch, void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t n = read(ch->pin[0], p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			dmu__err("%s: protocol error: a spliced request ends %zu bytes early",
				 ch->dev->name, len);
			ch->last_errno = EPROTO;
			return RS_BROKEN;
		}
		p += n;
		len -= (size_t)n;
	}
	return RS_OK;
}

/* Empty pout after a reply that could not be completed (into the buffer, discarded). */
static void drain_out(struct dmu_channel *ch)
{
	while (read(ch->pout[0], ch->data, ch->cap) > 0)
		;
}

/* Where the backend keeps a request's bytes: 0 and *fd, or -EOPNOTSUPP, or an error. */
static int locate(const struct ctx *x, const struct request *rq, int *fd, loff_t *off)
{
	uint64_t o = 0;
	int err;

	if (!rq->len)
		return -EOPNOTSUPP;
	err = x->ops->locate(x->arg, rq->type == DM_USER_REQ_MAP_WRITE, rq->offset, rq->len,
			     fd, &o);
	if (!err && o > (uint64_t)INT64_MAX - rq->len)
		err = -EOVERFLOW;
	*off = (loff_t)o;
	return err;
}

/*
 * WRITE: its payload from pin to the backend's descriptor, or through the
 * buffer and the write callback.  All of it leaves pin, whatever happens,
 * so that the next request starts where it should.
 */
static enum result do_write_spliced(const struct ctx *x, struct request *rq, int *err)
{
	struct dmu_channel *ch = x->ch;
	uint64_t done = 0;
	int fd = -1;
	loff_t off;

	*err = x->ops->write ? preflush(x, rq, refuse_change(ch, rq)) : -EOPNOTSUPP;
	if (!*err) {
		int e = locate(x, rq, &fd, &off);

		if (e && e != -EOPNOTSUPP)
			*err = e;
		if (e)
			fd = -1;
	}
	while (fd >= 0 && !*err && done < rq->len) {
		ssize_t n = splice(ch->pin[0], NULL, fd, &off, rq->len - done, SPLICE_F_MOVE);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EINVAL && !done)
			break;		/* O_DIRECT and these pages: the buffer */
		if (n <= 0)
			*err = n < 0 ? -errno : -EIO;
		else
			done += (uint64_t)n;
	}
	/* The rest: through the buffer, or only out of the pipe after a failure. */
	while (done < rq->len) {
		uint64_t left = rq->len - done;
		size_t chunk = left < ch->cap ? (size_t)left : ch->cap;
		enum result r = pipe_read(ch, ch->data, chunk);

		if (r != RS_OK)
			return r;
		if (!*err)
			*err = x->ops->write(x->arg, ch->data, chunk, rq->offset + done);
		done += chunk;
	}
	*err = fua(x, rq, *err);
	rq->status = dmu__status_for(*err);
	return RS_OK;
}

/* Move exactly len bytes from pout to the control device. */
static enum result splice_out(struct dmu_channel *ch, size_t len)
{
	while (len) {
		ssize_t n = splice(ch->pout[0], NULL, ch->fd, NULL, len, SPLICE_F_MOVE);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return dmu__fd_failed(ch, errno);
		if (n == 0)
			return dmu__fd_failed(ch, EIO);
		dmu__m_wrote(&ch->m);
		len -= (size_t)n;
	}
	return RS_OK;
}

/*
 * READ: header and data through pout to the control device, in one
 * splice(), once the data are all in the pipe (so a failure of the
 * backend's descriptor is an ERROR reply, not a broken stream); or, when
 * the backend will not locate them, as do_read().
 */
static enum result do_read_spliced(const struct ctx *x, struct request *rq, int *err)
{
	struct dmu_channel *ch = x->ch;
	uint64_t done = 0;
	int fd = -1, e;
	loff_t off;

	if (!x->ops->read || !rq->in_range || rq->len + MSG_SIZE + 2 * PAGE > ch->pipe_bytes)
		return do_read(x, rq, err);
	e = locate(x, rq, &fd, &off);
	if (e == -EOPNOTSUPP)
		return do_read(x, rq, err);
	if (e) {
		*err = e;
		rq->status = dmu__status_for(e);
		return RS_OK;
	}
	dmu__set_status(rq->msg, DM_USER_RESP_SUCCESS);
	if (write(ch->pout[1], rq->msg, MSG_SIZE) != (ssize_t)MSG_SIZE) {
		*err = -errno;
		drain_out(ch);
		rq->status = dmu__status_for(*err);
		return RS_OK;
	}
	while (done < rq->len) {
		ssize_t n = splice(fd, &off, ch->pout[1], NULL, rq->len - done, SPLICE_F_MOVE);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* 0: the descriptor ends inside the device */
			*err = n < 0 ? -errno : -EIO;
			drain_out(ch);
			if (*err == -EINVAL && !done)
				return do_read(x, rq, err);
			rq->status = dmu__status_for(*err);
			return RS_OK;
		}
		done += (uint64_t)n;
	}
	rq->status = DM_USER_RESP_SUCCESS;
	rq->sent = true;
	enum result r = splice_out(ch, MSG_SIZE + (size_t)rq->len);

	if (r == RS_OK)
		DTRACE_PROBE3(dmuser, reply_sent, ch->dev->devt, rq->seq, rq->status);
	return r;
}

static int write_zeroes(const struct ctx *x, const struct request *rq)
{
	bool may_unmap = !(rq->flags & DM_USER_REQ_MAP_FLAG_NOUNMAP);

	if (x->ops->write_zeroes)
		return x->ops->write_zeroes(x->arg, rq->offset, rq->len, may_unmap);
	if (!x->ops->write)
		return -EOPNOTSUPP;
	for (uint64_t done = 0; done < rq->len;) {
		size_t n = rq->len - done < ZERO_CHUNK ? (size_t)(rq->len - done) : ZERO_CHUNK;
		int err = x->ops->write(x->arg, zero_chunk, n, rq->offset + done);

		if (err)
			return err;
		done += n;
	}
	return 0;
}

/* DISCARD, WRITE_ZEROES and SECURE_ERASE: no payload either way. */
static void do_zeroing(const struct ctx *x, struct request *rq, int *err)
{
	*err = preflush(x, rq, refuse_change(x->ch, rq));
	if (!*err) {
		switch (rq->type) {
		case DM_USER_REQ_MAP_DISCARD:
			*err = x->ops->discard ?
			       x->ops->discard(x->arg, rq->offset, rq->len) : -EOPNOTSUPP;
			break;
		case DM_USER_REQ_MAP_WRITE_ZEROES:
			*err = write_zeroes(x, rq);
			break;
		default:
			*err = x->ops->secure_erase ?
			       x->ops->secure_erase(x->arg, rq->offset, rq->len) : -EOPNOTSUPP;
			break;
		}
	}
	*err = fua(x, rq, *err);
	rq->status = dmu__status_for(*err);
}

/* Carry out one request and set its reply status; RS_OK unless the descriptor failed. */
static enum result dispatch(const struct ctx *x, struct request *rq, int *err)
{
	*err = 0;
	switch (rq->type) {
	case DM_USER_REQ_MAP_READ:
		return x->ch->pin[0] >= 0 && rq->len >= SPLICE_MIN ? do_read_spliced(x, rq, err) :
		       do_read(x, rq, err);
	case DM_USER_REQ_MAP_WRITE:
		if (rq->len >= SPLICE_MIN)
			x->ch->large_write = true;
		return x->ch->in_pipe ? do_write_spliced(x, rq, err) : do_write(x, rq, err);
	case DM_USER_REQ_MAP_FLUSH:
		*err = flush(x);
		rq->status = dmu__status_for(*err);
		return RS_OK;
	case DM_USER_REQ_MAP_DISCARD:
	case DM_USER_REQ_MAP_WRITE_ZEROES:
	case DM_USER_REQ_MAP_SECURE_ERASE:
		do_zeroing(x, rq, err);
		return RS_OK;
	default:
		*err = -EOPNOTSUPP;
		rq->status = DM_USER_RESP_UNSUPPORTED;
		return RS_OK;
	}
}

/*
 * One request, whichever way it was read: carry it out and gather its
 * reply (or account for it at once if its reply has left already, or the
 * descriptor failed: its reply then counts as an ERROR, as the kernel
 * never sees it).
 */
static enum result serve_request(const struct ctx *x, struct request *rq)
{
	struct dmu_channel *ch = x->ch;
	enum result r = RS_OK;
	int err = 0;

	if (ch->npending == MAX_REPLIES)
		r = send_pending(ch);
	if (r == RS_OK) {
		DTRACE_PROBE3(dmuser, backend_submitted, ch->dev->devt, rq->seq, rq->type);
		r = dispatch(x, rq, &err);
		DTRACE_PROBE3(dmuser, backend_done, ch->dev->devt, rq->seq, err);
	}
	if (err)
		report(ch, rq, err);
	if (r != RS_OK || rq->sent) {
		dmu__m_end(&ch->m, dmu__mop(rq->type),
			   r == RS_OK ? rq->status : DM_USER_RESP_ERROR, rq->len,
			   dmu__now_ns() - ch->read_ns);
		return r;
	}
	queue_reply(ch, rq);
	return RS_OK;
}

bool dmu__in_range(const struct dmu_device *dev, uint64_t sector, uint64_t len)
{
	uint64_t size = atomic_load_explicit(&dev->size, memory_order_relaxed);

	if (sector < dev->dev_start)
		return false;
	sector -= dev->dev_start;
	return sector <= size / 512 && len <= size - sector * 512;
}

/*
 * A request past the size the handle knows: the table may have grown
 * since (another program reloaded it).  Ask the backend, once per such
 * request, and raise the size if the storage grew; it is never lowered
 * here.
 */
static bool in_range_or_grown(const struct ctx *x, uint64_t sector, uint64_t len)
{
	struct dmu_device *dev = x->ch->dev;
	uint64_t now, known;

	if (dmu__in_range(dev, sector, len))
		return true;
	if (!x->ops->probe_size || x->ops->probe_size(x->arg, &now))
		return false;
	now &= ~(uint64_t)511;
	known = atomic_load(&dev->size);
	while (now > known && !atomic_compare_exchange_weak(&dev->size, &known, now))
		;
	return dmu__in_range(dev, sector, len);
}

/* The request whose header is at msg, with after bytes read after it. */
static struct request parse_at(const struct ctx *x, unsigned char *msg, size_t after)
{
	struct dmu_channel *ch = x->ch;
	struct dm_user_message m;

	memcpy(&m, msg, MSG_SIZE);

	struct request rq = {
		.msg = msg,
		.payload = msg + MSG_SIZE,
		.seq = m.seq,
		.type = m.type,
		.flags = m.flags,
		.offset = m.sector * 512,
		.len = m.len,
	};

	if (rq.type == DM_USER_REQ_MAP_WRITE)
		rq.have = rq.len < after ? (size_t)rq.len : after;
	rq.in_range = in_range_or_grown(x, m.sector, rq.len);
	DTRACE_PROBE5(dmuser, request_received, ch->dev->devt, rq.seq, rq.type, rq.offset, rq.len);
	return rq;
}

/* The request whose header is at offset off of the got bytes read. */
static struct request parse(const struct ctx *x, size_t off, size_t got)
{
	return parse_at(x, (unsigned char *)x->ch->msg + off, got - off - MSG_SIZE);
}

/*
 * Check that the got bytes of a read() divide into requests as the
 * protocol says, and count them: back to back, only the first incomplete
 * (and then alone); without batching, exactly one.
 */
bool dmu__frame(const struct dmu_channel *ch, const unsigned char *buf, size_t got,
		unsigned *count)
{
	size_t off = 0;
	unsigned n = 0;

	while (off < got) {
		size_t after = got - off;
		struct dm_user_message m;

		if (after < MSG_SIZE) {
			dmu__err("%s: protocol error: %zu bytes of a header after %u requests",
				 ch->dev->name, after, n);
			return false;
		}
		memcpy(&m, buf + off, MSG_SIZE);
		after -= MSG_SIZE;
		n++;

		uint64_t payload = m.type == DM_USER_REQ_MAP_WRITE ? m.len : 0;
		if (payload > after && n > 1) {
			dmu__err("%s: protocol error: request %u of a read() has %zu of its %llu payload bytes",
				 ch->dev->name, n, after, (unsigned long long)payload);
			return false;
		}
		if (payload > after)
			break;		/* the rest comes with the next reads */
		if (payload < after && !ch->batching) {
			dmu__err("%s: protocol error: %zu payload bytes after a type %llu request of %llu bytes",
				 ch->dev->name, after, (unsigned long long)m.type,
				 (unsigned long long)m.len);
			return false;
		}
		off += MSG_SIZE + (size_t)payload;
	}
	*count = n;
	return true;
}

/*
 * Serve what one splice() brings, *taken requests; or, with *read_instead,
 * nothing: a module without splice (EINVAL: the channel reads from now on)
 * or a request larger than the pipe (EMSGSIZE, after a reload raised
 * max_io_len: this once).
 */
static enum result serve_once_spliced(const struct ctx *x, unsigned *taken,
				      bool *read_instead)
{
	struct dmu_channel *ch = x->ch;
	ssize_t n = splice(ch->fd, NULL, ch->pin[1], NULL, ch->pipe_bytes, SPLICE_F_NONBLOCK);
	enum result r = RS_OK;
	unsigned count = 0;
	size_t got, off = 0;

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return RS_AGAIN;
	if (n < 0 && (errno == EINVAL || errno == EMSGSIZE)) {
		if (errno == EINVAL) {
			dmu__info("%s: the module cannot splice (target before 1.6.0): reading instead",
				  ch->dev->name);
			close_pipes(ch);
		}
		*read_instead = true;
		return RS_OK;
	}
	if (n < 0)
		return dmu__fd_failed(ch, errno);
	if (n == 0) {
		ch->last_errno = ENOTBLK;
		return RS_GONE;
	}
	dmu__m_read(&ch->m);
	ch->read_ns = dmu__now_ns();
	got = (size_t)n;
	while (r == RS_OK && off < got) {
		/* The ring holds the pending replies' headers and this one. */
		unsigned char *msg = (unsigned char *)&ch->hdrs[ch->hdr_next];
		uint64_t bytes;

		ch->hdr_next = (ch->hdr_next + 1) % (MAX_REPLIES + 1);

		if (got - off < MSG_SIZE) {
			dmu__err("%s: protocol error: a splice of %zu bytes ends in a partial header",
				 ch->dev->name, got);
			ch->last_errno = EPROTO;
			r = RS_BROKEN;
			break;
		}
		r = pipe_read(ch, msg, MSG_SIZE);
		if (r != RS_OK)
			break;

		struct request rq = parse_at(x, msg, 0);

		bytes = MSG_SIZE + (rq.type == DM_USER_REQ_MAP_WRITE ? rq.len : 0);
		if (bytes > got - off || (!ch->batching && bytes != got)) {
			dmu__err("%s: protocol error: a splice of %zu bytes does not end after request %u (%llu bytes)",
				 ch->dev->name, got, count + 1, (unsigned long long)bytes);
			ch->last_errno = EPROTO;
			r = RS_BROKEN;
			break;
		}
		count++;
		ch->inflight = count;
		dmu__m_received(&ch->m, 1);
		r = serve_request(x, &rq);
		off += (size_t)bytes;
	}
	*taken = count;
	if (r == RS_OK)
		r = send_pending(ch);
	else
		retire_pending(ch, 0);
	ch->inflight = 0;
	dmu__m_idle(&ch->m);
	return r;
}

/* Serve what one read() (or splice()) brings: *taken requests. */
static enum result serve_once(const struct ctx *x, unsigned *taken)
{
	struct dmu_channel *ch = x->ch;
	size_t got = 0;
	unsigned count;
	enum result r;

	/*
	 * Which way to take requests: by splice after a round that had a
	 * large WRITE (its payload then reaches the file with one copy),
	 * else by read(), which takes a batch of small ones in one call
	 * where splice needs a read() of the pipe per header.
	 */
	ch->large_write = false;
	if (ch->pin[0] >= 0 && ch->splice_in) {
		bool read_instead = false;

		ch->in_pipe = true;
		r = serve_once_spliced(x, taken, &read_instead);
		ch->in_pipe = false;
		if (!read_instead) {
			if (r != RS_AGAIN)
				ch->splice_in = ch->large_write;
			return r;
		}
	}
	r = receive(ch, &got);

	if (r != RS_OK)
		return r;
	if (!dmu__frame(ch, (const unsigned char *)ch->msg, got, &count)) {
		ch->last_errno = EPROTO;
		return RS_BROKEN;
	}
	ch->read_ns = dmu__now_ns();
	dmu__m_received(&ch->m, count);
	ch->inflight = count;
	*taken = count;

	for (size_t off = 0; r == RS_OK && off < got;) {
		struct request rq = parse(x, off, got);

		r = serve_request(x, &rq);
		off += MSG_SIZE + rq.have;
	}
	if (r == RS_OK)
		r = send_pending(ch);
	else
		retire_pending(ch, 0);
	/* Answered, or left to the kernel with the broken stream. */
	ch->inflight = 0;
	dmu__m_idle(&ch->m);
	ch->splice_in = ch->large_write;
	return r;
}

/* Wait for a request or a stop; 0, or -errno if poll() itself failed. */
static int wait_readable(struct dmu_channel *ch)
{
	struct pollfd p[3] = {
		{ .fd = ch->fd, .events = POLLIN },
		{ .fd = ch->stop_fd, .events = POLLIN },
		{ .fd = ch->dev->stop_fd, .events = POLLIN },
	};

	if (poll(p, 3, -1) < 0 && errno != EINTR)
		return -errno;
	return 0;
}

DMU_API int dmu_channel_run(struct dmu_channel *ch, const struct dmu_ops *ops, void *arg)
{
	struct dmu_ops o;

	if (ch->depth)
		return -EINVAL;
	OPTS_COPY(o, ops);

	struct ctx x = { .ch = ch, .ops = &o, .arg = arg };

	if (o.locate && !ch->splice_tried) {
		ch->splice_tried = true;
		open_pipes(ch);
	}
	/*
	 * Busy polling (poll_ns): after a read() that brought one request,
	 * read again without waiting until then.  One at a time is the light
	 * load whose every request would otherwise cost a wake-up; a read
	 * that brought several found a queue, and its reader sleeps as usual
	 * when it runs dry, so that the next read gathers a batch again.
	 */
	uint64_t spin_until = 0;
	bool served = false;

	while (!stopping(ch)) {
		unsigned taken = 0;
		int err;

		switch (serve_once(&x, &taken)) {
		case RS_OK:
			served = taken == 1;
			spin_until = 0;
			break;
		case RS_AGAIN:
			if (ch->poll_ns) {
				uint64_t now = dmu__now_ns();

				if (served)
					spin_until = now + ch->poll_ns;
				served = false;
				if (now < spin_until)
					break;
			}
			err = wait_readable(ch);
			if (err)
				return err;
			break;
		case RS_GONE:
			return -ENOTBLK;
		case RS_BROKEN:
			dmu__warn("%s: channel broken: %s", ch->dev->name,
				  strerror(ch->last_errno ? ch->last_errno : EIO));
			return -(ch->last_errno ? ch->last_errno : EIO);
		}
	}
	return 0;
}
