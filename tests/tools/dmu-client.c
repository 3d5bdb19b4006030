// SPDX-License-Identifier: GPL-2.0+
/*
 * dmu-client: a protocol-level test client for the dm-user control device.
 *
 *   dmu-client serve CTL SIZE [options]   serve a RAM disk of SIZE bytes
 *     --piecewise        read the header alone, then the payload 4 KiB at a
 *                        time; write replies the same way (the original
 *                        daemon's pattern)
 *     --batch N          read up to N requests before answering any, and
 *                        answer them in reverse order
 *     --nonblock         O_NONBLOCK + poll() instead of blocking reads
 *     --exit-after N     exit (without answering) after reading N requests
 *     --stall            read requests and never answer them
 *     --delay-ms N       wait N ms before answering each batch
 *     --ready FILE       create FILE once the control device is open
 *     --kbatch           set DM_USER_CHANNEL_BATCH (dies if the kernel refuses)
 *                        and read many requests per read(); answer all those
 *                        of one read() with one writev(), in reverse order
 *     --splice           take requests with splice(2) into a pipe (a WRITE's
 *                        payload by reference), one per call, or with
 *                        --kbatch as many as fit; read them from the pipe;
 *                        answer in reverse order, each reply spliced from a
 *                        pipe (header written, READ data vmspliced).  Dies if
 *                        a splice without --kbatch moves other than exactly
 *                        one whole request, or if one with it ends inside one
 *     --stats FILE       write read() statistics to FILE at exit, and on
 *                        SIGUSR1 (FILE appears once complete, by rename):
 *                          reads R requests Q max_per_read M multi_reads K
 *                        R read() calls that returned data, Q requests read,
 *                        M the most requests one read() began, K the read()
 *                        calls that began more than one
 *
 * Without --kbatch the channel's flags must read back 0 (or the kernel must
 * predate them: ENOTTY), and no read() may return more than one request
 * although the buffer has room for many: the client dies if one does.
 * It exits 0 when the target goes away (read() fails with ENOTBLK).
 * This is a test tool: it is small, strict, and dies on anything unexpected.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <linux/dm-user.h>

#define HDR sizeof(struct dm_user_message)
#define MAX_BATCH 256

static const char *prog = "dmu-client";

static void die(const char *what)
{
	fprintf(stderr, "%s: %s: %s\n", prog, what, strerror(errno));
	exit(1);
}

static void fail(const char *what)
{
	fprintf(stderr, "%s: %s\n", prog, what);
	exit(1);
}

__attribute__((format(printf, 1, 2)))
static void failf(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

struct opts {
	int piecewise;
	int batch;
	int nonblock;
	long exit_after;
	int stall;
	long delay_ms;
	const char *ready;
	int kbatch;
	int splice;
	const char *stats;
};

struct req {
	struct dm_user_message h;
	uint8_t *data;		/* WRITE payload, or READ reply buffer */
};

#define MAX_REQ (8u << 20)

static uint8_t *disk;
static uint64_t disk_size;
static size_t bufsize;		/* per request: min(disk size, MAX_REQ) */

/*
 * read() statistics.  Only the main flow changes them; the SIGUSR1 handler
 * reads them, so they are volatile and written out async-signal-safely.
 */
static volatile unsigned long st_reads, st_requests, st_max, st_multi;
static char stats_path[PATH_MAX], stats_tmp[PATH_MAX];

/* One read() that returned data and began @nreq requests. */
static void count_read(unsigned long nreq)
{
	st_reads++;
	st_requests += nreq;
	if (nreq > st_max)
		st_max = nreq;
	if (nreq > 1)
		st_multi++;
}

static char *put_str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

static char *put_ulong(char *p, unsigned long v)
{
	char d[24];
	int n = 0;

	do {
		d[n++] = '0' + v % 10;
		v /= 10;
	} while (v);
	while (n)
		*p++ = d[--n];
	return p;
}

/* Async-signal-safe: only open, write, rename, close.  0 or -1 (errno). */
static int write_stats(void)
{
	char line[160], *p = line;
	ssize_t r;
	int fd, e;

	p = put_str(p, "reads ");
	p = put_ulong(p, st_reads);
	p = put_str(p, " requests ");
	p = put_ulong(p, st_requests);
	p = put_str(p, " max_per_read ");
	p = put_ulong(p, st_max);
	p = put_str(p, " multi_reads ");
	p = put_ulong(p, st_multi);
	*p++ = '\n';

	fd = open(stats_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	r = write(fd, line, p - line);
	e = errno;
	if (close(fd) || r != p - line) {
		errno = r < 0 ? e : EIO;
		return -1;
	}
	return rename(stats_tmp, stats_path);
}

static void on_usr1(int sig)
{
	int e = errno;

	(void)sig;
	write_stats();	/* the test waits for the file: a failure shows */
	errno = e;
}

/* At a clean exit. */
static void final_stats(void)
{
	if (stats_path[0] && write_stats())
		die(stats_path);
}

static void wait_readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	for (;;) {
		int r = poll(&p, 1, -1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("poll");
		if (p.revents & POLLERR)
			fail("poll: POLLERR on control device");
		return;
	}
}

/* Reads exactly n bytes of one request (a short read ends it early). */
static ssize_t read_some(int fd, void *buf, size_t n, const struct opts *o)
{
	for (;;) {
		ssize_t r = read(fd, buf, n);

		if (r >= 0)
			return r;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN && o->nonblock) {
			wait_readable(fd);
			continue;
		}
		return -1;
	}
}

static void check_request(const struct dm_user_message *h)
{
	if (h->sector * 512 + h->len > disk_size)
		fail("request beyond the end of the disk");
	if (h->len > bufsize && (h->type == DM_USER_REQ_MAP_READ ||
				 h->type == DM_USER_REQ_MAP_WRITE))
		fail("request larger than the buffer");
}

/* Bytes a request takes on the channel: its header and a WRITE's payload. */
static size_t request_bytes(const struct dm_user_message *h)
{
	return HDR + (h->type == DM_USER_REQ_MAP_WRITE ? h->len : 0);
}

/* Returns 0 on a request, 1 when the target is gone. */
static int read_request(int fd, struct req *q, const struct opts *o)
{
	size_t got = 0, want;
	ssize_t r;

	if (o->piecewise) {
		r = read_some(fd, &q->h, HDR, o);
		if (r < 0 && errno == ENOTBLK)
			return 1;
		if (r != (ssize_t)HDR)
			die("read header");
		count_read(1);
	} else {
		/* Header and payload in one call when the buffer holds both. */
		struct iovec iov[2] = {
			{ &q->h, HDR },
			{ q->data, bufsize },
		};

		r = readv(fd, iov, 2);
		while (r < 0 && (errno == EINTR || (errno == EAGAIN && o->nonblock))) {
			if (errno == EAGAIN)
				wait_readable(fd);
			r = readv(fd, iov, 2);
		}
		if (r < 0 && errno == ENOTBLK)
			return 1;
		if (r < (ssize_t)HDR)
			die("read request");
		got = r - HDR;
		/*
		 * The compatibility promise: without DM_USER_CHANNEL_BATCH a
		 * read() returns one request at most, whatever room it has.
		 */
		if (got + HDR > request_bytes(&q->h))
			failf("read() without DM_USER_CHANNEL_BATCH returned %zu bytes, more than one request (%zu: type %llu len %llu), with room for %zu",
			      got + HDR, request_bytes(&q->h),
			      (unsigned long long)q->h.type,
			      (unsigned long long)q->h.len, HDR + bufsize);
		count_read(1);
	}
	check_request(&q->h);
	want = request_bytes(&q->h) - HDR;
	while (got < want) {
		size_t n = want - got;

		if (n > 4096)
			n = 4096;
		r = read_some(fd, q->data + got, n, o);
		if (r <= 0)
			die("read payload");
		count_read(0);
		got += r;
	}
	return 0;
}

static void write_all(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;

	while (n) {
		ssize_t r = write(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("write reply");
		p += r;
		n -= r;
	}
}

/*
 * Carries out request @h (a WRITE's payload at @payload) on the disk and fills
 * in its reply @rep; a READ's data go to @out.  Returns the reply's data length.
 */
static size_t execute(const struct dm_user_message *h, const uint8_t *payload,
		      struct dm_user_message *rep, uint8_t *out)
{
	uint64_t off = h->sector * 512;
	size_t len = 0;

	*rep = *h;
	rep->type = DM_USER_RESP_SUCCESS;
	switch (h->type) {
	case DM_USER_REQ_MAP_READ:
		memcpy(out, disk + off, h->len);
		len = h->len;
		break;
	case DM_USER_REQ_MAP_WRITE:
		memcpy(disk + off, payload, h->len);
		break;
	case DM_USER_REQ_MAP_FLUSH:
		break;
	case DM_USER_REQ_MAP_DISCARD:
	case DM_USER_REQ_MAP_WRITE_ZEROES:
		memset(disk + off, 0, h->len);
		break;
	default:
		rep->type = DM_USER_RESP_UNSUPPORTED;
	}
	return len;
}

static void answer(int fd, struct req *q, const struct opts *o)
{
	struct dm_user_message rep;
	size_t len = execute(&q->h, q->data, &rep, q->data);

	if (o->piecewise) {
		size_t done = 0;

		write_all(fd, &rep, HDR);
		while (done < len) {
			size_t n = len - done > 4096 ? 4096 : len - done;

			write_all(fd, q->data + done, n);
			done += n;
		}
	} else {
		struct iovec iov[2] = { { &rep, HDR }, { q->data, len } };
		ssize_t r = writev(fd, iov, 2);

		if (r != (ssize_t)(HDR + len))
			die("writev reply");
	}
}

static void pause_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Before answering what was read: false to leave it unanswered (--stall). */
static bool may_answer(const struct opts *o)
{
	if (o->stall)
		return false;
	if (o->delay_ms)
		pause_ms(o->delay_ms);
	return true;
}

/* ---- --kbatch: several requests per read() ---- */

struct kreq {
	const uint8_t *payload;	/* a WRITE's, in rbuf */
	size_t out, len;	/* a READ's reply data, in the reply arena */
	struct dm_user_message h;	/* last: it ends in a flexible array */
};

static uint8_t *rbuf;		/* one read()'s worth of requests */
static size_t rbufsize;		/* room for the largest request, or many */

/* Grows *p to hold @need elements of @size bytes. */
static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
	size_t n = *cap ? *cap : 64;

	if (need <= *cap)
		return p;
	while (n < need)
		n *= 2;
	p = realloc(p, n * size);
	if (!p)
		die("realloc");
	*cap = n;
	return p;
}

/* Reads exactly @n more bytes of a first request that came in part. */
static void read_rest(int fd, uint8_t *p, size_t n, const struct opts *o)
{
	while (n) {
		ssize_t r = read_some(fd, p, n, o);

		if (r <= 0)
			die("read the rest of a request");
		count_read(0);
		p += r;
		n -= r;
	}
}

/*
 * One read() on a batched channel, its requests parsed into *kq (payloads left
 * in rbuf).  Returns their number, at least 1, or 0 when the target is gone.
 */
static size_t read_batch(int fd, struct kreq **kq, size_t *cap, const struct opts *o)
{
	struct dm_user_message h;
	size_t got, off, need, n = 0;
	ssize_t r = read_some(fd, rbuf, rbufsize, o);

	if (r < 0 && errno == ENOTBLK)
		return 0;
	if (r <= 0)
		die("read (batched)");
	got = r;
	/*
	 * Only the first request may be partial (it cannot be with this
	 * buffer, but the protocol allows it): the next read() goes on with it.
	 */
	if (got < HDR) {
		read_rest(fd, rbuf + got, HDR - got, o);
		got = HDR;
	}
	memcpy(&h, rbuf, HDR);
	check_request(&h);
	if (got < request_bytes(&h)) {
		read_rest(fd, rbuf + got, request_bytes(&h) - got, o);
		got = request_bytes(&h);
	}
	for (off = 0; off < got; off += need) {
		if (got - off < HDR)
			failf("batched read() of %zu bytes ends in a partial header (%zu bytes) after %zu whole requests",
			      got, got - off, n);
		memcpy(&h, rbuf + off, HDR);
		check_request(&h);
		need = request_bytes(&h);
		if (got - off < need)
			failf("batched read() of %zu bytes ends inside request %zu (seq %llu type %llu, %zu of its %zu bytes): only the first may be partial",
			      got, n + 1, (unsigned long long)h.seq,
			      (unsigned long long)h.type, got - off, need);
		*kq = grow(*kq, cap, n + 1, sizeof(**kq));
		(*kq)[n].h = h;
		(*kq)[n].payload = rbuf + off + HDR;
		n++;
	}
	count_read(n);
	return n;
}

/* All of @iov, in one writev() unless IOV_MAX or a short write forbids. */
static void writev_all(int fd, struct iovec *iov, size_t n)
{
	while (n) {
		ssize_t r = writev(fd, iov, n > IOV_MAX ? IOV_MAX : (int)n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("writev replies");
		while (r > 0) {
			if ((size_t)r >= iov->iov_len) {
				r -= iov->iov_len;
				iov++;
				n--;
			} else {
				iov->iov_base = (uint8_t *)iov->iov_base + r;
				iov->iov_len -= r;
				r = 0;
			}
		}
	}
}

/* Carries out @n requests in the order read; answers them in reverse. */
static void answer_batch(int fd, struct kreq *kq, size_t n)
{
	static struct dm_user_message *reps;
	static struct iovec *iov;
	static uint8_t *data;
	static size_t reps_cap, iov_cap, data_cap;
	size_t i, total = 1, niov = 0;

	for (i = 0; i < n; i++)
		if (kq[i].h.type == DM_USER_REQ_MAP_READ)
			total += kq[i].h.len;
	data = grow(data, &data_cap, total, 1);
	reps = grow(reps, &reps_cap, n, sizeof(*reps));
	iov = grow(iov, &iov_cap, 2 * n, sizeof(*iov));
	for (i = 0, total = 0; i < n; i++) {
		kq[i].out = total;
		kq[i].len = execute(&kq[i].h, kq[i].payload, &reps[i], data + total);
		total += kq[i].len;
	}
	for (i = n; i-- > 0;) {
		iov[niov++] = (struct iovec){ &reps[i], HDR };
		if (kq[i].len)
			iov[niov++] = (struct iovec){ data + kq[i].out, kq[i].len };
	}
	writev_all(fd, iov, niov);
}

static int serve_kbatch(int fd, const struct opts *o)
{
	struct kreq *kq = NULL;
	size_t cap = 0, n;
	long nread = 0;

	rbufsize = HDR + bufsize;
	rbuf = malloc(rbufsize);
	if (!rbuf)
		die("malloc");
	for (;;) {
		n = read_batch(fd, &kq, &cap, o);
		if (!n)
			break;
		nread += n;
		if (o->exit_after && nread >= o->exit_after) {
			final_stats();
			return 0;
		}
		if (may_answer(o))
			answer_batch(fd, kq, n);
	}
	/* The target is gone only once every request was answered. */
	close(fd);
	final_stats();
	return 0;
}

/* ---- --splice: requests and replies through pipes ---- */

#define PIPE_BYTES (4u << 20)	/* a 1 MiB request needs 257 buffers */

static void pipe_sized(int p[2])
{
	if (pipe2(p, O_CLOEXEC))
		die("pipe2");
	if (fcntl(p[1], F_SETPIPE_SZ, PIPE_BYTES) < 0)
		die("fcntl F_SETPIPE_SZ");
}

/* Reads exactly @n bytes from pipe @fd (all there: the splice put them). */
static void pipe_read(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		ssize_t r = read(fd, p, n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("read from the request pipe");
		p += r;
		n -= r;
	}
}

/* Moves exactly @n bytes from pipe @in to the control device @fd. */
static void splice_all(int in, int fd, size_t n)
{
	while (n) {
		ssize_t r = splice(in, NULL, fd, NULL, n, SPLICE_F_MOVE);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			die("splice reply to the control device");
		n -= r;
	}
}

/* A reply spliced from pipe @p: its header written in, its data vmspliced. */
static void answer_spliced(int fd, int p[2], const struct dm_user_message *rep,
			   const uint8_t *data, size_t len)
{
	struct iovec iov = { (void *)data, len };

	if (write(p[1], rep, HDR) != (ssize_t)HDR)
		die("write reply header to the pipe");
	while (iov.iov_len) {
		ssize_t r = vmsplice(p[1], &iov, 1, 0);

		if (r <= 0)
			die("vmsplice reply data");
		iov.iov_base = (uint8_t *)iov.iov_base + r;
		iov.iov_len -= r;
	}
	splice_all(p[0], fd, HDR + len);
}

static int serve_splice(int fd, const struct opts *o)
{
	static struct kreq kq[MAX_BATCH];
	static struct dm_user_message reps[MAX_BATCH];
	int in[2], out[2];
	uint8_t *data;
	long nread = 0;

	pipe_sized(in);
	pipe_sized(out);
	data = malloc(bufsize);
	if (!data)
		die("malloc");
	for (;;) {
		size_t got, off = 0, n = 0, i;
		ssize_t r;

		if (o->nonblock)
			wait_readable(fd);
		r = splice(fd, NULL, in[1], NULL, PIPE_BYTES,
			   o->nonblock ? SPLICE_F_NONBLOCK : 0);
		if (r < 0 && (errno == EINTR || (errno == EAGAIN && o->nonblock)))
			continue;
		if (r < 0 && errno == ENOTBLK)
			break;
		if (r <= 0)
			die("splice from the control device");
		got = r;
		/* Parse the whole requests the pipe now holds, in order. */
		while (off < got) {
			struct kreq *q = &kq[n];

			if (n == MAX_BATCH)
				failf("a splice moved more than %d requests", MAX_BATCH);
			if (got - off < HDR)
				failf("a splice of %zu bytes ends in a partial header", got);
			pipe_read(in[0], &q->h, HDR);
			check_request(&q->h);
			if (got - off < request_bytes(&q->h))
				failf("a splice of %zu bytes ends inside request %zu (%zu of its %zu bytes)",
				      got, n + 1, got - off, request_bytes(&q->h));
			/* A WRITE's payload goes straight to the disk. */
			if (q->h.type == DM_USER_REQ_MAP_WRITE)
				pipe_read(in[0], disk + q->h.sector * 512, q->h.len);
			off += request_bytes(&q->h);
			n++;
		}
		if (!o->kbatch && n != 1)
			failf("a splice without DM_USER_CHANNEL_BATCH moved %zu requests", n);
		count_read(n);
		nread += n;
		if (o->exit_after && nread >= o->exit_after) {
			final_stats();
			return 0;
		}
		if (!may_answer(o))
			continue;
		for (i = n; i-- > 0;) {
			size_t len = 0;

			if (kq[i].h.type == DM_USER_REQ_MAP_WRITE) {
				/* Its payload went to the disk at parse time. */
				reps[i] = kq[i].h;
				reps[i].type = DM_USER_RESP_SUCCESS;
			} else {
				len = execute(&kq[i].h, NULL, &reps[i], data);
			}

			answer_spliced(fd, out, &reps[i], data, len);
		}
	}
	close(fd);
	final_stats();
	return 0;
}

/* ---- channel flags ---- */

static void check_flags(int fd, const struct opts *o)
{
	__u64 want = o->kbatch ? DM_USER_CHANNEL_BATCH : 0, got = ~0ULL;

	if (o->kbatch && ioctl(fd, DM_USER_IOC_SET_FLAGS, &want)) {
		if (errno == ENOTTY)
			fail("--kbatch: ioctl DM_USER_IOC_SET_FLAGS: ENOTTY, this dm-user has no batched reads");
		die("--kbatch: ioctl DM_USER_IOC_SET_FLAGS(DM_USER_CHANNEL_BATCH)");
	}
	if (ioctl(fd, DM_USER_IOC_GET_FLAGS, &got)) {
		if (errno == ENOTTY && !o->kbatch)
			return;	/* a kernel that predates channel flags */
		die("ioctl DM_USER_IOC_GET_FLAGS");
	}
	if (got != want)
		failf("ioctl DM_USER_IOC_GET_FLAGS returned %#llx, expected %#llx",
		      (unsigned long long)got, (unsigned long long)want);
}

static int serve(const char *ctl, const struct opts *o)
{
	static struct req reqs[MAX_BATCH];
	long nread = 0;
	int fd, i, n;

	fd = open(ctl, O_RDWR | O_CLOEXEC | (o->nonblock ? O_NONBLOCK : 0));
	if (fd < 0)
		die(ctl);
	check_flags(fd, o);
	if (o->ready) {
		int r = open(o->ready, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		if (r < 0)
			die(o->ready);
		close(r);
	}
	if (o->splice)
		return serve_splice(fd, o);
	if (o->kbatch)
		return serve_kbatch(fd, o);
	for (i = 0; i < o->batch; i++) {
		reqs[i].data = malloc(bufsize);
		if (!reqs[i].data)
			die("malloc");
	}

	for (;;) {
		for (n = 0; n < o->batch; n++) {
			if (n > 0) {
				/* Take more only if more are waiting now. */
				struct pollfd p = { .fd = fd, .events = POLLIN };

				if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
					break;
			}
			if (read_request(fd, &reqs[n], o))
				goto gone;
			if (o->exit_after && ++nread >= o->exit_after) {
				final_stats();
				return 0;
			}
		}
		if (!may_answer(o))
			continue;
		for (i = n - 1; i >= 0; i--)
			answer(fd, &reqs[i], o);
	}
gone:
	/* The target is gone only once every request was answered. */
	close(fd);
	final_stats();
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: %s serve CTL SIZE [--piecewise] [--batch N] [--nonblock]\n"
		"       [--exit-after N] [--stall] [--delay-ms N] [--ready FILE]\n"
		"       [--kbatch] [--splice] [--stats FILE]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	struct opts o = { .batch = 1 };
	int i;

	if (argc < 4 || strcmp(argv[1], "serve"))
		usage();
	disk_size = strtoull(argv[3], NULL, 0);
	if (!disk_size || disk_size % 512)
		fail("SIZE must be a non-zero multiple of 512");
	for (i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--piecewise"))
			o.piecewise = 1;
		else if (!strcmp(argv[i], "--nonblock"))
			o.nonblock = 1;
		else if (!strcmp(argv[i], "--stall"))
			o.stall = 1;
		else if (!strcmp(argv[i], "--kbatch"))
			o.kbatch = 1;
		else if (!strcmp(argv[i], "--splice"))
			o.splice = 1;
		else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
			o.batch = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--delay-ms") && i + 1 < argc)
			o.delay_ms = atol(argv[++i]);
		else if (!strcmp(argv[i], "--exit-after") && i + 1 < argc)
			o.exit_after = atol(argv[++i]);
		else if (!strcmp(argv[i], "--ready") && i + 1 < argc)
			o.ready = argv[++i];
		else if (!strcmp(argv[i], "--stats") && i + 1 < argc)
			o.stats = argv[++i];
		else
			usage();
	}
	if (o.batch < 1 || o.batch > MAX_BATCH)
		fail("--batch must be 1..256");
	if (o.kbatch && (o.piecewise || o.batch != 1))
		fail("--kbatch batches in the kernel: it takes no --piecewise or --batch");
	if (o.splice && (o.piecewise || o.batch != 1))
		fail("--splice takes no --piecewise or --batch");
	if (o.stats) {
		struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };

		if ((size_t)snprintf(stats_tmp, sizeof(stats_tmp), "%s.tmp", o.stats) >=
		    sizeof(stats_tmp))
			fail("--stats: path too long");
		strcpy(stats_path, o.stats);
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGUSR1, &sa, NULL))
			die("sigaction SIGUSR1");
	}
	bufsize = disk_size < MAX_REQ ? disk_size : MAX_REQ;
	disk = calloc(1, disk_size);
	if (!disk)
		die("calloc");
	return serve(argv[2], &o);
}
