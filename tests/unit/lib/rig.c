// SPDX-License-Identifier: LGPL-2.1-or-later
#include "rig.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test.h"

bool fake_ioctl;
int fake_ioctl_result;
unsigned fake_ioctl_calls;

/* Interposes on libc's ioctl for the library (and everyone in this binary). */
int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (req == DM_USER_IOC_SET_FLAGS && fake_ioctl) {
		fake_ioctl_calls++;
		if (fake_ioctl_result) {
			errno = -fake_ioctl_result;
			return -1;
		}
		return 0;
	}
	if (req == DM_USER_IOC_SET_FLAGS)
		fake_ioctl_calls++;
	return (int)syscall(SYS_ioctl, fd, req, arg);
}

bool fake_clock;
_Atomic uint64_t fake_clock_ns;

/* Interposes on libc's clock_gettime for the library (and this binary). */
int clock_gettime(clockid_t id, struct timespec *ts)
{
	if (fake_clock && id == CLOCK_MONOTONIC) {
		uint64_t ns = atomic_load(&fake_clock_ns);

		ts->tv_sec = (time_t)(ns / 1000000000u);
		ts->tv_nsec = (long)(ns % 1000000000u);
		return 0;
	}
	return (int)syscall(SYS_clock_gettime, id, ts);
}

bool fake_node;
int fake_node_k = -1;
unsigned fake_node_opens;

/* Interposes on libc's open: the control node under /dev/dm-user/. */
int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;

	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (fake_node && !strncmp(path, "/dev/dm-user/", 13)) {
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
			return -1;
		if (flags & O_NONBLOCK)
			fcntl(sv[1], F_SETFL, O_NONBLOCK);
		fake_node_opens++;
		fake_node_k = sv[0];
		return sv[1];
	}
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

/* ---- the memory backend ----------------------------------------------- */

void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void logc(struct mem *m, char c)
{
	atomic_fetch_add(&fake_clock_ns, m->advance_ns);
	/* a backend that takes this long: an input, not a wait for anything */
	if (m->delay_ms)
		sleep_ms(m->delay_ms);
	if (m->nlog < sizeof(m->log) - 1)
		m->log[m->nlog++] = c;
}

static int mem_read(void *arg, void *buf, size_t len, uint64_t off)
{
	struct mem *m = arg;

	logc(m, 'R');
	atomic_store(&m->tid, (int)gettid());
	if (m->fail[DMU_REQ_READ])
		return m->fail[DMU_REQ_READ];
	memcpy(buf, m->data + off, len);
	return 0;
}

static int mem_write(void *arg, const void *buf, size_t len, uint64_t off)
{
	struct mem *m = arg;

	logc(m, 'W');
	atomic_store(&m->tid, (int)gettid());
	if (m->fail[DMU_REQ_WRITE])
		return m->fail[DMU_REQ_WRITE];
	memcpy(m->data + off, buf, len);
	return 0;
}

static int mem_flush(void *arg)
{
	struct mem *m = arg;

	logc(m, 'F');
	return m->fail[DMU_REQ_FLUSH];
}

static int mem_discard(void *arg, uint64_t off, uint64_t len)
{
	struct mem *m = arg;

	logc(m, 'D');
	if (m->fail[DMU_REQ_DISCARD])
		return m->fail[DMU_REQ_DISCARD];
	memset(m->data + off, 0, len);
	return 0;
}

static int mem_write_zeroes(void *arg, uint64_t off, uint64_t len, bool may_unmap)
{
	struct mem *m = arg;

	(void)may_unmap;
	logc(m, 'Z');
	if (m->fail[DMU_REQ_WRITE_ZEROES])
		return m->fail[DMU_REQ_WRITE_ZEROES];
	memset(m->data + off, 0, len);
	return 0;
}

static int mem_secure_erase(void *arg, uint64_t off, uint64_t len)
{
	struct mem *m = arg;

	logc(m, 'S');
	if (m->fail[DMU_REQ_SECURE_ERASE])
		return m->fail[DMU_REQ_SECURE_ERASE];
	memset(m->data + off, 0, len);
	return 0;
}

const struct dmu_ops mem_ops = {
	.sz = sizeof(struct dmu_ops),
	.read = mem_read,
	.write = mem_write,
	.flush = mem_flush,
	.discard = mem_discard,
	.write_zeroes = mem_write_zeroes,
	.secure_erase = mem_secure_erase,
};

/* ---- channels --------------------------------------------------------- */

struct dmu_channel *rig_open_channel(struct rig *r, const struct rig_cfg *cfg, int *k)
{
	DMU_OPTS(dmu_channel_opts, o,
		 .batch = cfg->batch_mode,
		 .buffer_size = cfg->buffer ? cfg->buffer : CAP,
		 .async_depth = cfg->depth,
		 .no_io_flusher = true,
		 .poll_us = cfg->poll_us);
	struct dmu_channel *ch = NULL;
	int sv[2];

	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	fake_ioctl = cfg->batch;
	fake_ioctl_result = 0;
	REQUIRE(dmu_channel_open_fd(r->dev, sv[1], &o, &ch) == 0);
	*k = sv[0];
	return ch;
}

void rig_open(struct rig *r, const struct rig_cfg *cfg)
{
	DMU_OPTS(dmu_device_opts, d, .read_only = cfg->read_only);

	memset(r, 0, sizeof(*r));
	r->mem = calloc(1, sizeof(*r->mem));
	REQUIRE(r->mem);
	REQUIRE(dmu_device_new("unit0", DEV_SIZE, &d, &r->dev) == 0);
	r->ch = rig_open_channel(r, cfg, &r->k);
}

void rig_close(struct rig *r)
{
	CHECK_EQ(dmu_channel_close(r->ch), 0);
	CHECK_EQ(dmu_device_free(r->dev), 0);
	close(r->k);
	free(r->mem);
}

static void *serve_main(void *arg)
{
	struct rig *r = arg;

	r->result = dmu_channel_run(r->ch, r->ops ? r->ops : &mem_ops, r->mem);
	return NULL;
}

void rig_serve(struct rig *r)
{
	REQUIRE(pthread_create(&r->thread, NULL, serve_main, r) == 0);
	r->running = true;
}

int rig_join(struct rig *r)
{
	if (r->running)
		pthread_join(r->thread, NULL);
	r->running = false;
	return r->result;
}

/* ---- the kernel's side ------------------------------------------------- */

static size_t put_req(unsigned char *buf, const struct req *q)
{
	struct dm_user_message m = { q->seq, q->type, q->flags, q->sector, q->len };
	size_t plen = q->payload ? (size_t)q->len : 0;

	memcpy(buf, &m, MSG);
	if (plen)
		memcpy(buf + MSG, q->payload, plen);
	return MSG + plen;
}

void send_req(int k, uint64_t seq, uint64_t type, uint64_t flags, uint64_t sector,
	      uint64_t len, const void *payload)
{
	struct req q = { seq, type, flags, sector, len, payload };

	send_batch(k, &q, 1);
}

void send_batch(int k, const struct req *reqs, unsigned n)
{
	size_t total = 0, off = 0;
	unsigned char *buf;

	for (unsigned i = 0; i < n; i++)
		total += MSG + (reqs[i].payload ? (size_t)reqs[i].len : 0);
	buf = malloc(total);
	REQUIRE(buf);
	for (unsigned i = 0; i < n; i++)
		off += put_req(buf + off, &reqs[i]);
	REQUIRE(send(k, buf, total, 0) == (ssize_t)total);
	free(buf);
}

size_t recv_record(int k, unsigned char *buf, size_t cap)
{
	struct pollfd p = { .fd = k, .events = POLLIN };

	REQUIRE(poll(&p, 1, 5000) == 1);
	ssize_t n = recv(k, buf, cap, 0);

	REQUIRE(n > 0);
	return (size_t)n;
}

bool no_record(int k, int ms)
{
	struct pollfd p = { .fd = k, .events = POLLIN };

	return poll(&p, 1, ms) == 0;
}

struct dm_user_message reply_at(const unsigned char *rec, size_t *off, size_t data_len)
{
	struct dm_user_message m;

	memcpy(&m, rec + *off, MSG);
	*off += MSG + data_len;
	return m;
}

unsigned char *pattern(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len);

	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 13 + seed + i / 4096);
	return p;
}

/* ---- checks --------------------------------------------------------- */

uint64_t jget(json_t *doc, const char *path)
{
	json_t *v = doc;
	char buf[128], *save = NULL;

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *k = strtok_r(buf, ".", &save); k && v; k = strtok_r(NULL, ".", &save))
		v = json_object_get(v, k);
	REQUIRE(v && json_is_integer(v));
	return (uint64_t)json_integer_value(v);
}

/* Run a python checker from tests/unit on text; its exit status. */
int check_with(const char *cmd_fmt, const char *text)
{
	char path[] = "/tmp/dmu-libunit-XXXXXX", cmd[1024];
	int fd = mkstemp(path);

	REQUIRE(fd >= 0);
	REQUIRE(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
	close(fd);
	snprintf(cmd, sizeof(cmd), cmd_fmt, getenv("DMU_ROOT") ? getenv("DMU_ROOT") : "../../..",
		 path);
	int status = system(cmd);
	unlink(path);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
