// SPDX-License-Identifier: GPL-2.0+
/*
 * dmu-hostile: a RAM-disk server for one dm-user target that, between correct
 * answers, sends malformed messages, and checks that the kernel refuses
 * exactly the channel that sent each one.
 *
 *   dmu-hostile CTL SIZE COUNT [SEED] [--ready FILE] [--done FILE]
 *
 * Every real request still gets a correct answer in the end (directly, or
 * after its refused channel is closed and the kernel requeues it, which needs
 * the target's recovery_ms), so fio --verify on the device must pass while
 * this runs.  After COUNT malformed messages it writes --done FILE, prints
 * what it sent and goes on serving until the target goes away (ENOTBLK).
 *
 * Malformed messages:
 *   garbage     40-256 random bytes
 *   short       1-39 bytes of a header, then close()
 *   ioctl       on the serving channel: DM_USER_IOC_SET_FLAGS with unknown
 *               bits (EINVAL), SET or GET_FLAGS with a bad pointer (EFAULT),
 *               an unknown ioctl number (ENOTTY); the channel's flags must
 *               read back unchanged and the channel go on serving
 *   unknown     a well-formed reply for a seq never issued
 *   duplicate   a correct reply sent twice
 *   oversized   a correct reply followed by extra bytes: the write() must
 *               return the length of the correct reply (the bytes the kernel
 *               applied before the bad header), and the channel be refused
 *   wrong       a reply for a request read on another channel
 * Every serving channel's flags must read back 0 when it opens; half of them
 * then set DM_USER_CHANNEL_BATCH (read back) and read each request in pieces
 * smaller than a header, 1-39 bytes, past its header and first payload bytes:
 * no read() may go past the end of the request.
 * Exit status: 0 when the kernel behaved as specified, 1 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <linux/dm-user.h>

#define HDR sizeof(struct dm_user_message)
#define MAX_REQ (8u << 20)
#define FREE_PER_REQUEST 4	/* request-free violations per request */
#define TINY_PAYLOAD 64		/* payload bytes a piecewise reader takes in pieces */

/* Those before UNKNOWN need no request. */
enum kind { GARBAGE, SHORT, IOCTL, UNKNOWN, DUPLICATE, OVERSIZED, WRONG, NKINDS };
static const char *const kind_name[NKINDS] = {
	"garbage", "short", "ioctl", "unknown", "duplicate", "oversized", "wrong",
};

static const char *ctl;
static const char *const usage_text =
	"usage: dmu-hostile CTL SIZE COUNT [SEED] [--ready FILE] [--done FILE]\n";
static uint8_t *disk, *buf;
static uint64_t disk_size, rng;
static unsigned long sent[NKINDS], refused, served, pieced;
static __u64 live_flags;	/* the serving channel's, as set */

static void fail(const char *fmt, const char *arg, int err)
{
	fprintf(stderr, "dmu-hostile: ");
	fprintf(stderr, fmt, arg);
	if (err)
		fprintf(stderr, ": %s", strerror(err));
	fputc('\n', stderr);
	exit(1);
}

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int chan_open(void)
{
	int fd = open(ctl, O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		fail("open %s", ctl, errno);
	return fd;
}

static __u64 get_flags(int fd, const char *what)
{
	__u64 v = ~0ULL;

	if (ioctl(fd, DM_USER_IOC_GET_FLAGS, &v))
		fail("%s: ioctl DM_USER_IOC_GET_FLAGS", what, errno);
	return v;
}

/*
 * A serving channel: its flags read back 0; half the time it then sets
 * DM_USER_CHANNEL_BATCH, which must read back, and reads in pieces.
 */
static int serve_open(void)
{
	int fd = chan_open();
	__u64 v = DM_USER_CHANNEL_BATCH;

	if (get_flags(fd, "new channel"))
		fail("a new channel's flags do not read back 0", NULL, 0);
	live_flags = 0;
	if (rnd() % 2) {
		if (ioctl(fd, DM_USER_IOC_SET_FLAGS, &v))
			fail("ioctl DM_USER_IOC_SET_FLAGS(DM_USER_CHANNEL_BATCH)", NULL, errno);
		if (get_flags(fd, "batched channel") != DM_USER_CHANNEL_BATCH)
			fail("DM_USER_CHANNEL_BATCH does not read back after SET_FLAGS", NULL, 0);
		live_flags = DM_USER_CHANNEL_BATCH;
	}
	return fd;
}

/* A refused channel fails read() and write() with EIO and polls POLLERR. */
static void check_refused(int fd, const char *what)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLOUT };
	struct dm_user_message h = { 0 };

	if (write(fd, &h, HDR) != -1 || errno != EIO)
		fail("%s: write on a refused channel did not fail with EIO", what, 0);
	if (read(fd, buf, HDR) != -1 || errno != EIO)
		fail("%s: read on a refused channel did not fail with EIO", what, 0);
	if (poll(&p, 1, 0) != 1 || !(p.revents & POLLERR))
		fail("%s: a refused channel does not poll POLLERR", what, 0);
	refused++;
	close(fd);
}

/*
 * A write() whose first reply was good and whose next was malformed must
 * return the good reply's length (target 1.4.0 and later) and refuse the
 * channel.
 */
static void expect_partial_refusal(int fd, ssize_t r, size_t applied,
				   enum kind k)
{
	if (r != (ssize_t)applied)
		fail("%s: write of a good then a malformed reply did not return the good one's length",
		     kind_name[k], r < 0 ? errno : 0);
	check_refused(fd, kind_name[k]);
}

/* The malformed write must fail with EINVAL and refuse the channel. */
static void expect_refusal(int fd, ssize_t r, enum kind k)
{
	if (r != -1 || errno != EINVAL)
		fail("%s: malformed reply was not refused with EINVAL", kind_name[k],
		     r < 0 ? errno : 0);
	check_refused(fd, kind_name[k]);
}

static void check_request(const struct dm_user_message *h)
{
	if (h->sector * 512 + h->len > disk_size || h->len > MAX_REQ)
		fail("request out of range", NULL, 0);
}

static size_t request_bytes(const struct dm_user_message *h)
{
	return HDR + (h->type == DM_USER_REQ_MAP_WRITE ? h->len : 0);
}

/*
 * On a batched channel: the request in pieces of 1-39 bytes, each read()
 * asking for a whole piece, up to TINY_PAYLOAD bytes into its payload, then
 * the rest exactly.  Only whole requests may follow the first in a read(),
 * and none fits in a piece, so no read() may go past this request's end.
 * Returns as get_request().
 */
static int get_request_pieces(int fd, struct dm_user_message *h)
{
	uint8_t first[2 * HDR + TINY_PAYLOAD];
	size_t piece = 1 + rnd() % (HDR - 1), got = 0, total = HDR;
	ssize_t r;

	while (got < HDR || (got < total && got < HDR + TINY_PAYLOAD)) {
		r = read(fd, first + got, piece);
		if (r < 0 && got == 0 && errno == EAGAIN)
			return 1;
		if (r < 0 && got == 0 && errno == ENOTBLK)
			return 2;
		if (r <= 0)
			fail("batched piecewise read", NULL, r < 0 ? errno : 0);
		got += r;
		if (got >= HDR) {
			memcpy(h, first, HDR);
			check_request(h);
			total = request_bytes(h);
			if (got > total) {
				fprintf(stderr, "dmu-hostile: batched read() of %zu bytes into a %zu-byte buffer went %zu bytes past the end of request seq %llu (%zu bytes)\n",
					(size_t)r, piece, got - total,
					(unsigned long long)h->seq, total);
				exit(1);
			}
		}
	}
	memcpy(buf, first + HDR, got - HDR);
	for (got -= HDR; got < total - HDR; got += r) {
		r = read(fd, buf + got, total - HDR - got);
		if (r <= 0)
			fail("read payload", NULL, r < 0 ? errno : 0);
	}
	pieced++;
	return 0;
}

/* Reads one whole request if one comes within @ms; 1 if none, 2 if gone. */
static int get_request(int fd, struct dm_user_message *h, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	size_t want, got;
	ssize_t r;

	if (ms && poll(&p, 1, ms) < 0)
		fail("poll", NULL, errno);
	if (live_flags & DM_USER_CHANNEL_BATCH)
		return get_request_pieces(fd, h);
	r = read(fd, h, HDR);
	if (r < 0 && errno == EAGAIN)
		return 1;
	if (r < 0 && errno == ENOTBLK)
		return 2;
	if (r != (ssize_t)HDR)
		fail("read header", NULL, r < 0 ? errno : 0);
	check_request(h);
	want = request_bytes(h) - HDR;
	for (got = 0; got < want; got += r) {
		r = read(fd, buf + got, want - got);
		if (r <= 0)
			fail("read payload", NULL, r < 0 ? errno : 0);
	}
	return 0;
}

/* The correct reply to @h as an iovec pair; applies writes to the disk. */
static size_t make_reply(struct dm_user_message *h, struct dm_user_message *rep,
			 struct iovec iov[2])
{
	uint64_t off = h->sector * 512;

	*rep = *h;
	rep->type = DM_USER_RESP_SUCCESS;
	iov[0] = (struct iovec){ rep, HDR };
	iov[1] = (struct iovec){ buf, 0 };
	switch (h->type) {
	case DM_USER_REQ_MAP_READ:
		memcpy(buf, disk + off, h->len);
		iov[1].iov_len = h->len;
		break;
	case DM_USER_REQ_MAP_WRITE:
		memcpy(disk + off, buf, h->len);
		break;
	case DM_USER_REQ_MAP_DISCARD:
	case DM_USER_REQ_MAP_WRITE_ZEROES:
		memset(disk + off, 0, h->len);
		break;
	case DM_USER_REQ_MAP_FLUSH:
		break;
	default:
		rep->type = DM_USER_RESP_UNSUPPORTED;
	}
	return HDR + iov[1].iov_len;
}

static void answer(int fd, struct dm_user_message *h)
{
	struct dm_user_message rep;
	struct iovec iov[2];
	size_t n = make_reply(h, &rep, iov);

	if (writev(fd, iov, 2) != (ssize_t)n)
		fail("answer", NULL, errno);
	served++;
}

/* @r, @errno of an ioctl that must fail with @err. */
static void expect_ioctl_error(int r, int err, const char *what)
{
	if (r != -1 || errno != err) {
		fprintf(stderr, "dmu-hostile: ioctl: %s: returned %d (%s), expected %s\n",
			what, r, r < 0 ? strerror(errno) : "no error", strerror(err));
		exit(1);
	}
}

/*
 * Abuses the serving channel's ioctls: each must fail as specified, change no
 * flag, and (the caller goes on serving on it) not refuse the channel.
 */
static void ioctl_mischief(int fd)
{
	void *bad = (void *)(uintptr_t)(rnd() % 2 ? 8 : -4096);
	unsigned long cmd;
	__u64 v;

	switch (rnd() % 4) {
	case 0:
		/* The known bit flipped too: applying it before the check shows. */
		v = (live_flags ^ DM_USER_CHANNEL_BATCH) | (rnd() & ~DM_USER_CHANNEL_BATCH) |
		    1ULL << (1 + rnd() % 63);
		expect_ioctl_error(ioctl(fd, DM_USER_IOC_SET_FLAGS, &v), EINVAL,
				   "SET_FLAGS with unknown bits");
		break;
	case 1:
		expect_ioctl_error(ioctl(fd, DM_USER_IOC_SET_FLAGS, bad), EFAULT,
				   "SET_FLAGS with a bad pointer");
		break;
	case 2:
		expect_ioctl_error(ioctl(fd, DM_USER_IOC_GET_FLAGS, bad), EFAULT,
				   "GET_FLAGS with a bad pointer");
		break;
	default:
		/* dm-user's type, any direction, number and size; or a tty's */
		do {
			cmd = _IOC(rnd() % 4, DM_USER_IOC_MAGIC, rnd() % 256,
				   rnd() % (1u << _IOC_SIZEBITS));
		} while (cmd == DM_USER_IOC_SET_FLAGS || cmd == DM_USER_IOC_GET_FLAGS);
		if (rnd() % 8 == 0)
			cmd = TCGETS;
		memset(buf, 0, 1u << _IOC_SIZEBITS);
		expect_ioctl_error(ioctl(fd, cmd, buf), ENOTTY, "an unknown ioctl number");
	}
	if (get_flags(fd, "after a failed ioctl") != live_flags)
		fail("a failed ioctl changed the channel's flags", NULL, 0);
}

/*
 * A malformed message that needs no request: on a channel of its own, or for
 * IOCTL on the serving channel @live.
 */
static void free_mischief(enum kind k, int live)
{
	uint8_t junk[256];
	size_t n, i;
	int fd;

	if (k == IOCTL) {
		ioctl_mischief(live);
		sent[k]++;
		return;
	}
	fd = chan_open();

	if (k == GARBAGE) {
		n = HDR + rnd() % (sizeof(junk) - HDR + 1);
		for (i = 0; i < n; i++)
			junk[i] = rnd();
		/* A fresh channel owns no request, so no seq can match. */
		expect_refusal(fd, write(fd, junk, n), k);
	} else {
		n = 1 + rnd() % (HDR - 1);
		for (i = 0; i < n; i++)
			junk[i] = rnd();
		if (write(fd, junk, n) != (ssize_t)n)
			fail("short: a partial header was not accepted", NULL, errno);
		close(fd);	/* the partial header dies with the channel */
	}
	sent[k]++;
}

/*
 * A malformed message around request @h, just read on channel *fd.  The
 * request still gets its correct answer, on *fd or, once *fd is refused and
 * closed, from the kernel's requeue onto the next channel.
 */
static void request_mischief(int *fd, struct dm_user_message *h, enum kind k)
{
	struct dm_user_message rep;
	uint8_t junk[HDR];
	struct iovec iov[3];
	size_t i, n;
	ssize_t r;
	int other;

	switch (k) {
	case UNKNOWN:
		/* Hold the request: refusing the channel must requeue it. */
		memset(&rep, 0, sizeof(rep));
		rep.seq = (1ULL << 62) | rnd();
		expect_refusal(*fd, write(*fd, &rep, HDR), k);
		break;
	case DUPLICATE:
		answer(*fd, h);
		rep = *h;
		rep.type = DM_USER_RESP_SUCCESS;
		expect_refusal(*fd, write(*fd, &rep, HDR), k);
		break;
	case OVERSIZED:
		n = make_reply(h, &rep, iov);
		for (i = 0; i < HDR; i++)
			junk[i] = rnd();
		iov[2] = (struct iovec){ junk, HDR };
		r = writev(*fd, iov, 3);
		served++;	/* the reply itself completed the request */
		expect_partial_refusal(*fd, r, n, k);
		break;
	default: /* WRONG */
		other = chan_open();
		make_reply(h, &rep, iov);
		expect_refusal(other, writev(other, iov, 2), k);
		answer(*fd, h);	/* the right channel still works */
		sent[k]++;
		return;
	}
	*fd = serve_open();
	sent[k]++;
}

static void touch(const char *path)
{
	int fd;

	if (!path)
		return;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		fail("create %s", path, errno);
	close(fd);
}

int main(int argc, char **argv)
{
	const char *ready = NULL, *done = NULL;
	struct dm_user_message h;
	unsigned long count, total = 0;
	int fd, i, g, k, reported = 0;

	if (argc < 4) {
		fputs(usage_text, stderr);
		return 2;
	}
	ctl = argv[1];
	disk_size = strtoull(argv[2], NULL, 0);
	count = strtoul(argv[3], NULL, 0);
	rng = 0x9e3779b97f4a7c15ULL;
	for (i = 4; i < argc; i++) {
		if (!strcmp(argv[i], "--ready") && i + 1 < argc)
			ready = argv[++i];
		else if (!strcmp(argv[i], "--done") && i + 1 < argc)
			done = argv[++i];
		else
			rng ^= strtoull(argv[i], NULL, 0);
	}
	disk = calloc(1, disk_size);
	buf = malloc(MAX_REQ);
	if (!disk || !buf || !disk_size || disk_size % 512)
		fail("bad SIZE or out of memory", NULL, 0);

	fd = serve_open();
	touch(ready);
	for (;;) {
		/*
		 * Mischief rides on live traffic: each request is, half the time,
		 * the occasion of a request-bound violation; then a few
		 * violations that need no request follow.
		 */
		g = get_request(fd, &h, 100);
		if (g == 2)
			break;
		if (g == 1)
			continue;
		if (total < count && rnd() % 2) {
			request_mischief(&fd, &h, UNKNOWN + rnd() % (NKINDS - UNKNOWN));
			total++;
		} else {
			answer(fd, &h);
		}
		for (i = 0; i < FREE_PER_REQUEST && total < count; i++, total++)
			free_mischief(rnd() % UNKNOWN, fd);
		if (total == count && !reported) {
			printf("dmu-hostile: %lu malformed messages:", total);
			for (k = 0; k < NKINDS; k++)
				printf(" %s %lu", kind_name[k], sent[k]);
			printf("; %lu channels refused; %lu requests served, %lu read in pieces on batched channels\n",
			       refused, served, pieced);
			fflush(stdout);
			touch(done);
			reported = 1;
		}
	}
	if (total < count)
		fail("target went away before all malformed messages were sent", NULL, 0);
	close(fd);
	return 0;
}
