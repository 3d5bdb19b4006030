// SPDX-License-Identifier: GPL-2.0
/*
 * The NBD backend (daemon/backend_nbd.c) against a real NBD server: nbdkit
 * (Debian's nbdkit) with the memory plugin and the log filter, on a unix
 * socket in a temporary directory.  The test binds and listens on the
 * socket itself and hands it to nbdkit by socket activation (LISTEN_FDS),
 * so it accepts connections before nbdkit has even started: no waiting
 * for the server.  Requests go through a dmuserd worker (worker.c, the
 * asynchronous loop) from a fake kernel (a SOCK_SEQPACKET socketpair, as
 * in test_serve.c), and the log filter's file says which NBD commands,
 * with which flags, the server saw.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/dm-user.h>

#include "backend.h"
#include "backend_nbd.h"
#include "log.h"
#include "serve.h"
#include "test.h"

#define SRV_SIZE (1024 * 1024)
#define CAP (64 * 1024)
#define MSG sizeof(struct dm_user_message)

struct srv {
	pid_t pid;
	char dir[128], sock[192], log[192], uri[256];
	int tcp_port;		/* > 0: TCP on 127.0.0.1 (srv_init), not s->sock */
};

/*
 * nbdkit -f --filter=log [--filter=F ...] PLUGIN [KEY=VALUE ...], logging
 * to s->log, on a socket we listen on.  extra: the --filter= words, then
 * their KEY=VALUE parameters.  plugin: its name and parameters; NULL: the
 * memory plugin, 1 MiB.
 */
static void srv_spawn(struct srv *s, const char *const *extra, const char *const *plugin);

/*
 * A server's directory, log and URI: on the unix socket s->sock, or with
 * tcp_port > 0 on 127.0.0.1:tcp_port (nbd://).
 */
static void srv_init(struct srv *s, int tcp_port)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	struct sockaddr_un a;

	if (access("/usr/sbin/nbdkit", X_OK) && access("/usr/bin/nbdkit", X_OK))
		SKIP("nbdkit is not installed (Debian package nbdkit)");
	s->tcp_port = tcp_port;
	snprintf(s->dir, sizeof(s->dir), "%s/dmu-nbd-XXXXXX", tmp);
	REQUIRE(mkdtemp(s->dir) != NULL);
	snprintf(s->sock, sizeof(s->sock), "%s/sock", s->dir);
	snprintf(s->log, sizeof(s->log), "%s/log", s->dir);
	if (tcp_port)
		snprintf(s->uri, sizeof(s->uri), "nbd://127.0.0.1:%d/", tcp_port);
	else
		snprintf(s->uri, sizeof(s->uri), "nbd+unix:///?socket=%s", s->sock);
	REQUIRE(strlen(s->sock) < sizeof(a.sun_path));
}

static void srv_start_plugin(struct srv *s, const char *const *extra,
			     const char *const *plugin)
{
	srv_init(s, 0);
	srv_spawn(s, extra, plugin);
}

/*
 * Listen on s->sock (a new socket: a killed server's is gone) and start
 * nbdkit on it.  Again after srv_kill(): a server restarted at the same
 * address, as an administrator would.
 */
static void srv_spawn(struct srv *s, const char *const *extra, const char *const *plugin)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char logfile[256];
	const char *argv[32];
	unsigned n = 0;
	int fd;

	snprintf(logfile, sizeof(logfile), "logfile=%s", s->log);
	if (s->tcp_port) {
		struct sockaddr_in in = { .sin_family = AF_INET,
					  .sin_port = htons((uint16_t)s->tcp_port),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		int one = 1;

		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		REQUIRE(fd >= 0);
		REQUIRE(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
		REQUIRE(bind(fd, (struct sockaddr *)&in, sizeof(in)) == 0);
	} else {
		strcpy(a.sun_path, s->sock);
		unlink(s->sock);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		REQUIRE(fd >= 0);
		REQUIRE(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	}
	REQUIRE(listen(fd, 16) == 0);

	argv[n++] = "nbdkit";
	argv[n++] = "-f";
	argv[n++] = "--exit-with-parent";
	argv[n++] = "--filter=log";
	for (const char *const *e = extra; e && *e; e++)
		if (!strncmp(*e, "--", 2))
			argv[n++] = *e;
	if (!plugin) {
		argv[n++] = "memory";
		argv[n++] = "size=1M";
	}
	for (; plugin && *plugin; plugin++)
		argv[n++] = *plugin;
	argv[n++] = logfile;
	for (const char *const *e = extra; e && *e; e++)
		if (strncmp(*e, "--", 2))
			argv[n++] = *e;
	argv[n] = NULL;

	s->pid = fork();
	REQUIRE(s->pid >= 0);
	if (s->pid == 0) {
		char pid[16];

		if (fd == 3)
			fcntl(3, F_SETFD, 0);	/* keep it across exec */
		else
			dup2(fd, 3);		/* without CLOEXEC */
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		setenv("LISTEN_PID", pid, 1);
		setenv("LISTEN_FDS", "1", 1);
		execvp("nbdkit", (char **)argv);
		_exit(127);
	}
	close(fd);
}

static void srv_start(struct srv *s, const char *const *extra)
{
	srv_start_plugin(s, extra, NULL);
}

/* Kill the server (SIGKILL: no goodbye to its clients) and wait for it. */
static void srv_kill(struct srv *s)
{
	if (s->pid > 0) {
		kill(s->pid, SIGKILL);
		waitpid(s->pid, NULL, 0);
		s->pid = 0;
	}
}

static void srv_remove(struct srv *s)
{
	srv_kill(s);
	unlink(s->log);
	unlink(s->sock);
	rmdir(s->dir);
}

/* The log filter's lines that contain every one of the words. */
static unsigned log_count(struct srv *s, const char *w1, const char *w2, const char *w3)
{
	FILE *f = fopen(s->log, "r");
	char line[1024];
	unsigned n = 0;

	REQUIRE(f != NULL);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, w1) && (!w2 || strstr(line, w2)) && (!w3 || strstr(line, w3)) &&
		     !strstr(line, "return=");
	fclose(f);
	return n;
}

/* The number (from 1) of the first log line with both words; 0: none. */
static unsigned log_line(struct srv *s, const char *w1, const char *w2)
{
	FILE *f = fopen(s->log, "r");
	char line[1024];
	unsigned n = 0, found = 0;

	REQUIRE(f != NULL);
	while (!found && fgets(line, sizeof(line), f)) {
		n++;
		if (strstr(line, w1) && strstr(line, w2))
			found = n;
	}
	fclose(f);
	return found;
}

/* ---- a worker serving the backend, behind a fake kernel ---------------- */

struct rig {
	struct srv srv;
	const struct dmu_backend_type *type;
	struct dmu_backend *b;
	struct dmu_device *dev;
	struct dmu_pool pool;
	int kernel;
	/* what each seq asked for, to frame the replies (a READ's carries data) */
	uint64_t req_type[64], req_len[64];
};

static bool rig_read_only;	/* the worker refuses changes (--read-only) */

static void rig_attach(struct rig *r);

static void rig_start_plugin(struct rig *r, const char *const *filters,
			     const char *const *plugin)
{
	memset(r, 0, sizeof(*r));
	srv_start_plugin(&r->srv, filters, plugin);
	rig_attach(r);
}

/* The backend opened on r->srv's URI, served by a worker behind a fake kernel. */
static void rig_attach(struct rig *r)
{
	int sv[2];

	r->type = dmu_backend_find(r->srv.uri);
	REQUIRE(r->type != NULL);
	CHECK_STR(r->type->name, "nbd");

	struct dmu_backend_args a = { .uri = r->srv.uri, .workers = 1 };
	REQUIRE_EQ(r->type->open(&a, &r->b), 0);
	REQUIRE_EQ(r->b->size, SRV_SIZE);
	REQUIRE(r->b->ops->async != NULL);

	DMU_OPTS(dmu_channel_opts, o, .buffer_size = CAP, .no_io_flusher = true,
		 .async_depth = r->b->ops->async->depth);
	struct dmu_serve_ctx ctx = { .backend = dmu_backend_for_worker(r->b, 0),
				     .read_only = rig_read_only };

	REQUIRE(dmu_device_new("nbd0", r->b->size, NULL, &r->dev) == 0);
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	r->kernel = sv[0];
	REQUIRE(dmu_pool_init(&r->pool, 1) == 0);
	REQUIRE(dmu_worker_open_fd(&r->pool.workers[0], r->dev, sv[1], &o, &ctx) == 0);
	REQUIRE(dmu_pool_start(&r->pool) == 0);
}

static void rig_start(struct rig *r, const char *const *filters)
{
	rig_start_plugin(r, filters, NULL);
}

static void rig_stop(struct rig *r)
{
	dmu_pool_join(&r->pool);
	CHECK_EQ(atomic_load(&r->pool.workers[0].exit), DMU_WORKER_STOPPED);
	dmu_pool_free(&r->pool);
	CHECK_EQ(dmu_device_free(r->dev), 0);
	r->type->close(r->b);
	close(r->kernel);
	srv_remove(&r->srv);
}

static void send_req(struct rig *r, uint64_t seq, uint64_t type, uint64_t flags,
		     uint64_t off, uint64_t len, const void *payload)
{
	static unsigned char rec[MSG + CAP];
	struct dm_user_message m = { seq, type, flags, off / 512, len };
	size_t plen = payload ? (size_t)len : 0;

	REQUIRE(seq < 64);
	r->req_type[seq] = type;
	r->req_len[seq] = len;
	memcpy(rec, &m, MSG);
	if (plen)
		memcpy(rec + MSG, payload, plen);
	REQUIRE(send(r->kernel, rec, MSG + plen, 0) == (ssize_t)(MSG + plen));
}

/*
 * Collect at least n replies (several may share a record: the library's
 * writev; all of a record's are taken), their status into status[seq] and
 * a READ's data into data[seq].
 */
static void collect(struct rig *r, int n, uint64_t *status, unsigned char (*data)[CAP])
{
	static unsigned char rec[64 * (MSG + CAP)];

	while (n > 0) {
		ssize_t got = recv(r->kernel, rec, sizeof(rec), 0);
		size_t at = 0;

		REQUIRE(got >= (ssize_t)MSG);
		while (at + MSG <= (size_t)got) {
			struct dm_user_message m;

			memcpy(&m, rec + at, MSG);
			at += MSG;
			REQUIRE(m.seq < 64);
			status[m.seq] = m.type;
			if (r->req_type[m.seq] == DM_USER_REQ_MAP_READ && m.type == DM_USER_RESP_SUCCESS) {
				REQUIRE(at + r->req_len[m.seq] <= (size_t)got);
				if (data)
					memcpy(data[m.seq], rec + at, (size_t)r->req_len[m.seq]);
				at += (size_t)r->req_len[m.seq];
			}
			n--;
		}
		REQUIRE_EQ(at, (size_t)got);
	}
}

/* One request, its reply's status; a READ's data into data. */
static uint64_t round_trip(struct rig *r, uint64_t seq, uint64_t type, uint64_t flags,
			   uint64_t off, uint64_t len, const void *payload, void *data)
{
	static uint64_t status[64];
	static unsigned char buf[64][CAP];

	status[seq] = 99;
	send_req(r, seq, type, flags, off, len, payload);
	collect(r, 1, status, buf);
	if (data)
		memcpy(data, buf[seq], (size_t)len);
	return status[seq];
}

static void pattern(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 31 + seed * 7 + 1);
}

/* ---- the tests ---------------------------------------------------------- */

TEST(nbd_scheme_table)
{
	const struct dmu_backend_type *t;

	t = dmu_backend_find("file:/tmp/x");
	REQUIRE(t != NULL);
	CHECK_STR(t->name, "file");
	t = dmu_backend_find("nbd://localhost/e");
	REQUIRE(t != NULL);
	CHECK_STR(t->name, "nbd");
	t = dmu_backend_find("nbd+unix:///e?socket=/run/s");
	REQUIRE(t != NULL);
	CHECK_STR(t->name, "nbd");
	t = dmu_backend_find("rbd:pool/image");		/* backend_rbd.c */
	REQUIRE(t != NULL);
	CHECK_STR(t->name, "rbd");
	CHECK(dmu_backend_find("nbdx://h/e") == NULL);
	CHECK(dmu_backend_find("/tmp/x") == NULL);
	CHECK(dmu_backend_find("") == NULL);
}

/* What a call printed to stderr. */
static void capture_start(int *saved, char *path, size_t len)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int fd;

	snprintf(path, len, "%s/dmu-nbd-err-XXXXXX", tmp);
	fd = mkstemp(path);
	REQUIRE(fd >= 0);
	*saved = dup(2);
	dup2(fd, 2);
	close(fd);
	dmu_log_set_quiet(0);
}

static char *capture_end(int saved, const char *path)
{
	static char text[4096];
	FILE *f;
	size_t n;

	dup2(saved, 2);
	close(saved);
	f = fopen(path, "r");
	REQUIRE(f != NULL);
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	unlink(path);
	return text;
}

TEST(nbd_unknown_schemes_are_refused_by_name)
{
	char path[256];
	int saved;

	capture_start(&saved, path, sizeof(path));
	CHECK(dmu_backend_find("ftp://x/y") == NULL);
	char *text = capture_end(saved, path);

	CHECK(strstr(text, "'ftp://x/y'") != NULL);
}

/* A URI libnbd cannot parse: a usage error (-2) naming the URI, no connection tried. */
TEST(nbd_bad_uri_is_a_usage_error_naming_it)
{
	static const char *const bad[] = {
		"nbd+unix:///export",		/* no socket= */
		"nbd://[zz/export",		/* not a URI */
	};
	char path[256];
	int saved;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dmu_backend_args a = { .uri = bad[i], .workers = 2 };
		struct dmu_backend *b = NULL;
		const struct dmu_backend_type *t = dmu_backend_find(bad[i]);

		REQUIRE(t != NULL);
		capture_start(&saved, path, sizeof(path));
		int err = t->open(&a, &b);
		char *text = capture_end(saved, path);

		CHECK_EQ(err, -2);
		if (!strstr(text, "invalid --backend") || !strstr(text, bad[i]))
			t_fail(__FILE__, __LINE__, "the message for %s: %s", bad[i], text);
	}
}

/* No server on the socket: a runtime error (-1) that says so. */
TEST(nbd_no_server_is_an_error_at_open)
{
	struct dmu_backend_args a = { .uri = "nbd+unix:///?socket=/nonexistent/dmu.sock",
				      .workers = 1 };
	struct dmu_backend *b = NULL;
	char path[256];
	int saved;

	capture_start(&saved, path, sizeof(path));
	int err = dmu_nbd_backend_open(&a, &b);
	char *text = capture_end(saved, path);

	CHECK_EQ(err, -1);
	CHECK(strstr(text, "cannot connect to --backend nbd+unix:///?socket=/nonexistent/dmu.sock") != NULL);
}

TEST(nbd_size_comes_from_the_export)
{
	struct srv s;
	struct dmu_backend *b;
	struct dmu_backend_args a = { .workers = 3 };

	srv_start(&s, NULL);
	a.uri = s.uri;
	REQUIRE_EQ(dmu_nbd_backend_open(&a, &b), 0);
	CHECK_EQ(b->size, SRV_SIZE);
	/* one connection per worker, each its own instance */
	CHECK(dmu_backend_for_worker(b, 0) == b);
	CHECK(dmu_backend_for_worker(b, 1) != b);
	CHECK(dmu_backend_for_worker(b, 2) != dmu_backend_for_worker(b, 1));
	dmu_nbd_backend_close(b);

	a.size = 512 * 1024;		/* a smaller --size exposes the start */
	REQUIRE_EQ(dmu_nbd_backend_open(&a, &b), 0);
	CHECK_EQ(b->size, 512 * 1024);
	dmu_nbd_backend_close(b);
	a.size = 2 * SRV_SIZE;		/* an export cannot grow */
	CHECK_EQ(dmu_nbd_backend_open(&a, &b), -1);
	a.size = 0;
	a.direct = true;		/* --direct is the file backend's */
	CHECK_EQ(dmu_nbd_backend_open(&a, &b), -2);
	srv_remove(&s);
}

TEST(nbd_write_read_round_trip)
{
	static unsigned char p[CAP], back[CAP];
	struct rig r;

	rig_start(&r, NULL);
	pattern(p, sizeof(p), 1);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 4096, CAP, p, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_READ, 0, 4096, CAP, NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p, sizeof(p)) == 0);
	/* the last sector of the device */
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_WRITE, 0, SRV_SIZE - 512, 512, p + 7, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 4, DM_USER_REQ_MAP_READ, 0, SRV_SIZE - 512, 512, NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p + 7, 512) == 0);
	CHECK_EQ(log_count(&r.srv, "Write ", "count=0x10000", NULL), 1);
	CHECK_EQ(log_count(&r.srv, "Read ", "count=0x10000", NULL), 1);
	rig_stop(&r);
}

/* Many requests in flight on one connection, each answered with its own data. */
TEST(nbd_many_requests_in_flight)
{
	static unsigned char p[16][CAP], data[64][CAP];
	uint64_t status[64];
	struct rig r;

	rig_start(&r, NULL);
	for (unsigned i = 0; i < 16; i++) {
		pattern(p[i], 8192, i + 10);
		send_req(&r, i, DM_USER_REQ_MAP_WRITE, 0, (uint64_t)i * 8192, 8192, p[i]);
	}
	memset(status, 0xff, sizeof(status));
	collect(&r, 16, status, NULL);
	for (unsigned i = 0; i < 16; i++)
		CHECK_EQ(status[i], DM_USER_RESP_SUCCESS);
	/* read them back in reverse, all at once */
	for (unsigned i = 0; i < 16; i++)
		send_req(&r, 20 + i, DM_USER_REQ_MAP_READ, 0, (uint64_t)(15 - i) * 8192, 8192, NULL);
	collect(&r, 16, status, data);
	for (unsigned i = 0; i < 16; i++) {
		CHECK_EQ(status[20 + i], DM_USER_RESP_SUCCESS);
		if (memcmp(data[20 + i], p[15 - i], 8192))
			t_fail(__FILE__, __LINE__, "read %u: not the data of write %u", 20 + i, 15 - i);
	}
	rig_stop(&r);
}

/*
 * Out of order: a READ the server holds for 300 ms (the delay filter) does
 * not hold up the WRITE sent after it on the same connection, whose reply
 * comes first.  Were requests served one at a time, the READ's would.
 */
TEST(nbd_replies_come_in_the_order_the_server_answers)
{
	static const char *const filters[] = { "--filter=delay", "delay-read=300ms", NULL };
	static unsigned char p[4096];
	static uint64_t status[64];
	struct rig r;

	rig_start(&r, filters);
	pattern(p, sizeof(p), 8);
	send_req(&r, 1, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL);
	send_req(&r, 2, DM_USER_REQ_MAP_WRITE, 0, 8192, 4096, p);
	status[1] = status[2] = 99;
	collect(&r, 1, status, NULL);
	CHECK_EQ(status[2], DM_USER_RESP_SUCCESS);	/* the WRITE's, first */
	CHECK_EQ(status[1], 99);
	if (status[1] == 99)
		collect(&r, 1, status, NULL);
	CHECK_EQ(status[1], DM_USER_RESP_SUCCESS);
	rig_stop(&r);
}

/* --read-only: changes are refused before they reach the server. */
TEST(nbd_read_only_refuses_changes)
{
	static unsigned char p[4096];
	struct rig r;

	rig_read_only = true;
	rig_start(&r, NULL);
	pattern(p, sizeof(p), 9);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p, NULL),
		 DM_USER_RESP_ERROR);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_DISCARD, 0, 0, 4096, NULL, NULL),
		 DM_USER_RESP_ERROR);
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_WRITE_ZEROES, 0, 0, 4096, NULL, NULL),
		 DM_USER_RESP_ERROR);
	CHECK_EQ(round_trip(&r, 4, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 5, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(log_count(&r.srv, "Write ", NULL, NULL), 0);
	CHECK_EQ(log_count(&r.srv, "Trim ", NULL, NULL), 0);
	CHECK_EQ(log_count(&r.srv, "Zero ", NULL, NULL), 0);
	rig_stop(&r);
}

/* FLUSH, PREFLUSH and FUA reach the server as NBD_CMD_FLUSH and the FUA flag. */
TEST(nbd_flush_and_fua_reach_the_server)
{
	static unsigned char p[4096];
	struct rig r;

	rig_start(&r, NULL);
	pattern(p, sizeof(p), 3);
	/* a flush, as the kernel sends it: FLUSH with the PREFLUSH flag */
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_FLUSH, DM_USER_REQ_MAP_FLAG_PREFLUSH, 0, 0,
			    NULL, NULL), DM_USER_RESP_SUCCESS);
	CHECK_EQ(log_count(&r.srv, "Flush ", NULL, NULL), 1);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 0, 4096, p,
			    NULL), DM_USER_RESP_SUCCESS);
	CHECK_EQ(log_count(&r.srv, "Write ", "fua=1", NULL), 1);
	CHECK_EQ(log_count(&r.srv, "Flush ", NULL, NULL), 1);	/* FUA is native: no flush */
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_PREFLUSH, 8192,
			    4096, p, NULL), DM_USER_RESP_SUCCESS);
	CHECK_EQ(log_count(&r.srv, "Flush ", NULL, NULL), 2);
	CHECK_EQ(log_count(&r.srv, "Write ", "fua=0", NULL), 1);
	/* the PREFLUSH's flush was answered before the write went out */
	unsigned flushed = log_line(&r.srv, "...Flush id=3 ", "return=0");
	unsigned written = log_line(&r.srv, "Write id=4 ", "offset=0x2000");
	CHECK(flushed > 0 && written > flushed);
	rig_stop(&r);
}

/*
 * A server with flush but without FUA: the write, then NBD_CMD_FLUSH once
 * it is answered.  (nbdkit 1.32's fua filter has no fuamode=none: the
 * eval plugin, a file in its $tmpdir, says can_fua none.)
 */
TEST(nbd_fua_without_server_fua_is_write_then_flush)
{
	static const char *const plugin[] = {
		"eval",
		"get_size=truncate -s 1M $tmpdir/disk; echo 1048576",
		"pread=dd if=$tmpdir/disk skip=$4 count=$3 iflag=skip_bytes,count_bytes status=none",
		"pwrite=dd of=$tmpdir/disk seek=$4 conv=notrunc oflag=seek_bytes status=none",
		"can_write=exit 0", "can_flush=exit 0", "flush=exit 0", "can_fua=echo none",
		NULL,
	};
	static unsigned char p[4096], back[4096];
	struct rig r;

	rig_start_plugin(&r, NULL, plugin);
	pattern(p, sizeof(p), 4);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 0, 4096, p,
			    NULL), DM_USER_RESP_SUCCESS);
	CHECK_EQ(log_count(&r.srv, "Write ", "fua=0", NULL), 1);
	CHECK_EQ(log_count(&r.srv, "Write ", "fua=1", NULL), 0);
	CHECK_EQ(log_count(&r.srv, "Flush ", NULL, NULL), 1);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p, sizeof(p)) == 0);
	rig_stop(&r);
}

/* DISCARD is NBD_CMD_TRIM; WRITE_ZEROES is NBD_CMD_WRITE_ZEROES, NO_HOLE with NOUNMAP. */
TEST(nbd_discard_and_write_zeroes_map_to_trim_and_zero)
{
	static unsigned char p[CAP], back[CAP], zero[CAP];
	struct rig r;

	rig_start(&r, NULL);
	pattern(p, sizeof(p), 5);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, CAP, p, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_DISCARD, 0, 0, 8192, NULL, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(log_count(&r.srv, "Trim ", "offset=0x0 ", "count=0x2000"), 1);
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_WRITE_ZEROES, 0, 8192, 8192, NULL, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(log_count(&r.srv, "Zero ", "offset=0x2000", " trim=1 "), 1);
	CHECK_EQ(round_trip(&r, 4, DM_USER_REQ_MAP_WRITE_ZEROES, DM_USER_REQ_MAP_FLAG_NOUNMAP,
			    16384, 8192, NULL, NULL), DM_USER_RESP_SUCCESS);
	CHECK_EQ(log_count(&r.srv, "Zero ", "offset=0x4000", " trim=0 "), 1);
	/* the memory plugin's trim zeroes: all three ranges read back as zeroes */
	CHECK_EQ(round_trip(&r, 5, DM_USER_REQ_MAP_READ, 0, 0, CAP, NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, zero, 24576) == 0);
	CHECK(memcmp(back + 24576, p + 24576, CAP - 24576) == 0);
	CHECK_EQ(log_count(&r.srv, "Write ", NULL, NULL), 1);	/* none to emulate */
	rig_stop(&r);
}

/* A server without WRITE_ZEROES: zeroes written, as the file backend does. */
TEST(nbd_write_zeroes_without_server_zero_writes_zeroes)
{
	static const char *const filters[] = { "--filter=nozero", "zeromode=none", NULL };
	static unsigned char p[CAP], back[CAP], zero[CAP];
	struct rig r;

	rig_start(&r, filters);
	pattern(p, sizeof(p), 6);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, CAP, p, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_WRITE_ZEROES, 0, 4096, 8192, NULL, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(log_count(&r.srv, "Zero ", NULL, NULL), 0);
	CHECK_EQ(log_count(&r.srv, "Write ", "offset=0x1000", "count=0x2000"), 1);
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_READ, 0, 0, CAP, NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p, 4096) == 0);
	CHECK(memcmp(back + 4096, zero, 8192) == 0);
	CHECK(memcmp(back + 12288, p + 12288, CAP - 12288) == 0);
	rig_stop(&r);
}

/*
 * The server killed: the requests after it fail with ERROR at once (no
 * hang: the test's alarm would end it), the reason is logged once, and
 * the worker still stops cleanly.
 */
TEST(nbd_server_gone_is_an_error_not_a_hang)
{
	static unsigned char p[4096];
	uint64_t status[64];
	char path[256];
	struct rig r;
	int saved;

	rig_start(&r, NULL);
	pattern(p, sizeof(p), 7);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p, NULL),
		 DM_USER_RESP_SUCCESS);
	capture_start(&saved, path, sizeof(path));
	srv_kill(&r.srv);
	for (unsigned i = 0; i < 8; i++)
		send_req(&r, 10 + i, i % 2 ? DM_USER_REQ_MAP_READ : DM_USER_REQ_MAP_WRITE, 0, 0,
			 4096, i % 2 ? NULL : p);
	memset(status, 0xff, sizeof(status));
	collect(&r, 8, status, NULL);
	CHECK_EQ(round_trip(&r, 20, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL, NULL),
		 DM_USER_RESP_ERROR);
	dmu_pool_join(&r.pool);		/* the worker stops, it does not hang */
	char *text = capture_end(saved, path);

	for (unsigned i = 0; i < 8; i++)
		CHECK_EQ(status[10 + i], DM_USER_RESP_ERROR);
	if (!strstr(text, "nbd: connection 0 to ") || !strstr(text, r.srv.uri) ||
	    !strstr(text, "lost"))
		t_fail(__FILE__, __LINE__, "no message about the lost server: \"%s\"", text);
	CHECK(strstr(strstr(text, "lost") + 1, "lost") == NULL);	/* once */
	rig_stop(&r);
}

/*
 * The server killed while a write is in flight (the delay filter holds
 * it): the write fails with ERROR, and the loss is logged once, whichever
 * of dmuserd's calls into libnbd finds the socket dead.
 */
TEST(nbd_server_gone_mid_request_is_reported)
{
	static const char *const filters[] = { "--filter=delay", "wdelay=30", NULL };
	static unsigned char p[4096];
	uint64_t status[64];
	char path[256];
	struct rig r;
	int saved;

	rig_start(&r, filters);
	pattern(p, sizeof(p), 8);
	capture_start(&saved, path, sizeof(path));
	send_req(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p);
	for (unsigned i = 0; i < 3000 && !log_count(&r.srv, "Write ", NULL, NULL); i++)
		usleep(10000);	/* polled: the log is the only sign it arrived */
	CHECK_EQ(log_count(&r.srv, "Write ", NULL, NULL), 1);
	srv_kill(&r.srv);
	memset(status, 0xff, sizeof(status));
	collect(&r, 1, status, NULL);
	CHECK_EQ(status[1], DM_USER_RESP_ERROR);
	send_req(&r, 2, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p);
	collect(&r, 1, status, NULL);
	CHECK_EQ(status[2], DM_USER_RESP_ERROR);
	dmu_pool_join(&r.pool);
	char *text = capture_end(saved, path);

	if (!strstr(text, "nbd: connection 0 to ") || !strstr(text, "lost"))
		t_fail(__FILE__, __LINE__, "no message about the lost server: \"%s\"", text);
	else
		CHECK(strstr(strstr(text, "lost") + 1, "lost") == NULL);	/* once */
	rig_stop(&r);
}

/*
 * The worker parked in a signal handler until this pipe is written: the
 * server's hangup and a new request then wait for it together, and the
 * worker takes the request first (its loop's order), so libnbd finds the
 * socket dead while it sends the command, not while it reads.
 */
static int park_pipe[2], parked_pipe[2];

static void park(int sig)
{
	char c;

	(void)sig;
	if (write(parked_pipe[1], "p", 1) != 1)
		abort();
	while (read(park_pipe[0], &c, 1) < 0 && errno == EINTR)
		;
}

/* The server lost between two requests, noticed first by the next one. */
TEST(nbd_server_gone_found_by_a_send_is_reported)
{
	struct sigaction sa = { .sa_handler = park }, old;
	static unsigned char p[4096];
	uint64_t status[64];
	char path[256];
	struct rig r;
	int saved;

	char c;

	REQUIRE(pipe(park_pipe) == 0 && pipe(parked_pipe) == 0);
	REQUIRE(sigaction(SIGUSR1, &sa, &old) == 0);	/* no SA_RESTART: poll ends EINTR */
	rig_start(&r, NULL);
	pattern(p, sizeof(p), 9);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p, NULL),
		 DM_USER_RESP_SUCCESS);
	capture_start(&saved, path, sizeof(path));
	REQUIRE(pthread_kill(r.pool.workers[0].thread, SIGUSR1) == 0);
	REQUIRE(read(parked_pipe[0], &c, 1) == 1);	/* in the handler */
	srv_kill(&r.srv);
	send_req(&r, 2, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p);
	REQUIRE(write(park_pipe[1], "x", 1) == 1);
	memset(status, 0xff, sizeof(status));
	collect(&r, 1, status, NULL);
	CHECK_EQ(status[2], DM_USER_RESP_ERROR);
	dmu_pool_join(&r.pool);
	char *text = capture_end(saved, path);

	if (!strstr(text, "nbd: connection 0 to ") || !strstr(text, "lost"))
		t_fail(__FILE__, __LINE__, "no message about the lost server: \"%s\"", text);
	else
		CHECK(strstr(strstr(text, "lost") + 1, "lost") == NULL);	/* once */
	rig_stop(&r);
	sigaction(SIGUSR1, &old, NULL);
	close(park_pipe[0]);
	close(park_pipe[1]);
	close(parked_pipe[0]);
	close(parked_pipe[1]);
}

/* ---- reconnecting within the window ------------------------------------ */

static uint64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/*
 * A server whose data outlives it: nbdkit's file plugin on a 1 MiB file
 * in the server's directory, so a restarted server serves the same bytes.
 */
struct file_rig {
	struct rig r;
	char file[256], arg[272];
	const char *plugin[3];
};

static void file_rig_start(struct file_rig *f, uint32_t reconnect_ms)
{
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	int fd;

	snprintf(f->file, sizeof(f->file), "%s/dmu-nbd-disk-XXXXXX", tmp);
	fd = mkstemp(f->file);
	REQUIRE(fd >= 0);
	REQUIRE(ftruncate(fd, SRV_SIZE) == 0);
	close(fd);
	snprintf(f->arg, sizeof(f->arg), "file=%s", f->file);
	f->plugin[0] = "file";
	f->plugin[1] = f->arg;
	f->plugin[2] = NULL;
	rig_start_plugin(&f->r, NULL, f->plugin);
	REQUIRE(f->r.b->ops->set_reconnect_ms != NULL);
	REQUIRE(f->r.b->ops->counters != NULL);
	f->r.b->ops->set_reconnect_ms(f->r.b, reconnect_ms);
}

static void file_rig_restart(struct file_rig *f)
{
	srv_spawn(&f->r.srv, NULL, f->plugin);
}

static void file_rig_stop(struct file_rig *f)
{
	rig_stop(&f->r);
	unlink(f->file);
}

/* len bytes at off of the backing file itself, as the server left it. */
static void file_read(const struct file_rig *f, void *buf, size_t len, off_t off)
{
	int fd = open(f->file, O_RDONLY);

	REQUIRE(fd >= 0);
	REQUIRE(pread(fd, buf, len, off) == (ssize_t)len);
	close(fd);
}

static struct dmu_backend_counters counters(struct rig *r)
{
	struct dmu_backend_counters c;

	r->b->ops->counters(r->b, &c);
	return c;
}

/* Wait (deadline: ms) until pred holds for the backend's counters. */
static bool wait_counters(struct rig *r, bool (*pred)(const struct dmu_backend_counters *),
			  unsigned ms)
{
	uint64_t end = mono_ms() + ms;

	for (;;) {
		struct dmu_backend_counters c = counters(r);

		if (pred(&c))
			return true;
		if (mono_ms() >= end)
			return false;
		poll(NULL, 0, 5);	/* the worker thread moves; we look again */
	}
}

static bool one_down(const struct dmu_backend_counters *c)
{
	return c->disconnected == 1;
}

static bool reconnected(const struct dmu_backend_counters *c)
{
	return c->reconnects >= 1 && c->disconnected == 0;
}

/* No reply is waiting on the fake kernel now. */
static bool no_reply(struct rig *r)
{
	struct pollfd p = { .fd = r->kernel, .events = POLLIN };

	return poll(&p, 1, 0) == 0;
}

/*
 * The server killed and started again (same file, same socket) within the
 * window: the requests sent while it was away are held, not failed, then
 * answered SUCCESS on the new connection; what was written before and
 * during the outage reads back, from the device and from the file.
 */
TEST(nbd_reconnect_within_window_loses_nothing)
{
	static unsigned char p1[8192], p2[8192], back[8192], disk[8192];
	static unsigned char data[64][CAP];
	uint64_t status[64];
	struct file_rig f;
	char path[256];
	int saved;

	file_rig_start(&f, 10000);
	pattern(p1, sizeof(p1), 11);
	pattern(p2, sizeof(p2), 12);
	CHECK_EQ(round_trip(&f.r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, sizeof(p1), p1, NULL),
		 DM_USER_RESP_SUCCESS);
	capture_start(&saved, path, sizeof(path));
	srv_kill(&f.r.srv);
	/* the worker sees EOF and holds; then requests arrive while it is down */
	REQUIRE(wait_counters(&f.r, one_down, 5000));
	send_req(&f.r, 2, DM_USER_REQ_MAP_WRITE, 0, 65536, sizeof(p2), p2);
	send_req(&f.r, 3, DM_USER_REQ_MAP_READ, 0, 0, sizeof(p1), NULL);
	send_req(&f.r, 4, DM_USER_REQ_MAP_FLUSH, DM_USER_REQ_MAP_FLAG_PREFLUSH, 0, 0, NULL);
	CHECK(no_reply(&f.r));
	CHECK_EQ(counters(&f.r).reconnects, 0);
	file_rig_restart(&f);
	memset(status, 0xff, sizeof(status));
	collect(&f.r, 3, status, data);
	CHECK_EQ(status[2], DM_USER_RESP_SUCCESS);
	CHECK_EQ(status[3], DM_USER_RESP_SUCCESS);
	CHECK_EQ(status[4], DM_USER_RESP_SUCCESS);
	CHECK(memcmp(data[3], p1, sizeof(p1)) == 0);
	CHECK_EQ(round_trip(&f.r, 5, DM_USER_REQ_MAP_READ, 0, 65536, sizeof(p2), NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p2, sizeof(p2)) == 0);
	file_read(&f, disk, sizeof(disk), 0);
	CHECK(memcmp(disk, p1, sizeof(p1)) == 0);
	file_read(&f, disk, sizeof(disk), 65536);
	CHECK(memcmp(disk, p2, sizeof(p2)) == 0);

	struct dmu_backend_counters c = counters(&f.r);

	CHECK_EQ(c.reconnects, 1);
	CHECK(c.reconnect_attempts >= 1);
	CHECK_EQ(c.requests_replayed, 3);
	CHECK_EQ(c.requests_failed, 0);
	CHECK_EQ(c.disconnected, 0);
	dmu_pool_join(&f.r.pool);
	char *text = capture_end(saved, path);

	if (!strstr(text, "lost") || !strstr(text, "reconnecting for up to 10000 ms") ||
	    !strstr(text, "back after") || !strstr(text, "replaying 3 requests"))
		t_fail(__FILE__, __LINE__, "no messages about the reconnect: \"%s\"", text);
	CHECK(strstr(text, "EIO") == NULL);
	file_rig_stop(&f);
}

/*
 * A write just sent reaches the server (whose delay filter sits on it for
 * 10 s); the server is killed with it in flight, nothing is answered, and
 * the server starts again at the same address without the filter.
 */
static void restart_with_write_held(struct rig *r)
{
	static const char *const plain[] = { NULL };
	uint64_t end = mono_ms() + 5000;

	while (!log_count(&r->srv, "Write ", NULL, NULL) && mono_ms() < end)
		poll(NULL, 0, 5);
	REQUIRE(log_count(&r->srv, "Write ", NULL, NULL) >= 1);
	srv_kill(&r->srv);
	CHECK(no_reply(r));
	srv_spawn(&r->srv, plain, NULL);
}

/*
 * Also a server killed with requests in flight (held in the server by the
 * delay filter): they are replayed, and the write lands.
 */
TEST(nbd_reconnect_replays_requests_in_flight)
{
	static const char *const filters[] = { "--filter=delay", "wdelay=10", NULL };
	static unsigned char p[CAP], back[CAP];
	uint64_t status[64];
	struct rig r;

	rig_start(&r, filters);	/* memory plugin: a restart loses the data, */
	r.b->ops->set_reconnect_ms(r.b, 10000);	/* but not the requests */
	pattern(p, sizeof(p), 21);
	send_req(&r, 1, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 0, CAP, p);
	restart_with_write_held(&r);
	memset(status, 0xff, sizeof(status));
	collect(&r, 1, status, NULL);
	CHECK_EQ(status[1], DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_READ, 0, 0, CAP, NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p, CAP) == 0);
	CHECK_EQ(counters(&r).requests_replayed, 1);
	rig_stop(&r);
}

/*
 * nbd://HOST:PORT/ over TCP, the server on 127.0.0.1 in a network
 * namespace of the test's own (its forked process: unshare, lo up): a
 * round trip, then the server killed with a write held in it (the delay
 * filter) and started again on the same port within the window: the
 * write is replayed on the new TCP connection and lands, and the backend
 * counts one reconnect.
 */
TEST(nbd_tcp_round_trip_and_reconnect)
{
	static const char *const filters[] = { "--filter=delay", "wdelay=10", NULL };
	static unsigned char p[CAP], back[CAP];
	uint64_t status[64];
	struct rig r;

	REQUIRE(unshare(CLONE_NEWNET) == 0);
	REQUIRE_EQ(system("ip link set lo up"), 0);
	/* the rig on TCP: a fixed port, free in a fresh namespace */
	memset(&r, 0, sizeof(r));
	srv_init(&r.srv, 10809);
	srv_spawn(&r.srv, filters, NULL);
	rig_attach(&r);
	CHECK_STR(dmu_backend_find(r.srv.uri)->name, "nbd");
	r.b->ops->set_reconnect_ms(r.b, 10000);

	pattern(p, sizeof(p), 31);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_READ, 0, 0, CAP, NULL, back),
		 DM_USER_RESP_SUCCESS);
	send_req(&r, 2, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 0, CAP, p);
	restart_with_write_held(&r);
	memset(status, 0xff, sizeof(status));
	collect(&r, 1, status, NULL);
	CHECK_EQ(status[2], DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_READ, 0, 0, CAP, NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p, CAP) == 0);
	CHECK_EQ(counters(&r).reconnects, 1);
	CHECK_EQ(counters(&r).requests_replayed, 1);
	rig_stop(&r);
}

/*
 * The server away longer than the window: the held requests fail with
 * EIO once the window has passed (not before, not much later), the
 * reason is logged, a request after that fails at once; the failed write
 * is never sent to the server that comes back later; and once it is
 * back, requests are served again.
 */
TEST(nbd_reconnect_window_passes_eio_never_replayed)
{
	static unsigned char p1[4096], p2[4096], back[4096], disk[4096];
	const unsigned window = 300, slack = 700;
	uint64_t status[64], t0, t1;
	struct file_rig f;
	char path[256];
	int saved;

	file_rig_start(&f, window);
	pattern(p1, sizeof(p1), 31);
	pattern(p2, sizeof(p2), 32);
	CHECK_EQ(round_trip(&f.r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, sizeof(p1), p1, NULL),
		 DM_USER_RESP_SUCCESS);
	capture_start(&saved, path, sizeof(path));
	t0 = mono_ms();
	srv_kill(&f.r.srv);
	send_req(&f.r, 2, DM_USER_REQ_MAP_WRITE, 0, 0, sizeof(p2), p2);
	send_req(&f.r, 3, DM_USER_REQ_MAP_READ, 0, 0, sizeof(p1), NULL);
	memset(status, 0xff, sizeof(status));
	collect(&f.r, 2, status, NULL);
	t1 = mono_ms();
	CHECK_EQ(status[2], DM_USER_RESP_ERROR);
	CHECK_EQ(status[3], DM_USER_RESP_ERROR);
	if (t1 - t0 < window || t1 - t0 > window + slack)
		t_fail(__FILE__, __LINE__, "held requests failed after %" PRIu64 " ms, not in [%u, %u]",
		       t1 - t0, window, window + slack);
	/* after the window, at once (the alarm would catch a hang) */
	t0 = mono_ms();
	CHECK_EQ(round_trip(&f.r, 4, DM_USER_REQ_MAP_WRITE, 0, 0, sizeof(p2), p2, NULL),
		 DM_USER_RESP_ERROR);
	CHECK(mono_ms() - t0 < 200);
	CHECK_EQ(counters(&f.r).requests_failed, 2);
	CHECK_EQ(counters(&f.r).disconnected, 1);

	/* back later: served again; the failed writes never reach it */
	file_rig_restart(&f);
	REQUIRE(wait_counters(&f.r, reconnected, 5000));
	CHECK_EQ(round_trip(&f.r, 5, DM_USER_REQ_MAP_READ, 0, 0, sizeof(back), NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p1, sizeof(p1)) == 0);
	file_read(&f, disk, sizeof(disk), 0);
	CHECK(memcmp(disk, p1, sizeof(p1)) == 0);
	CHECK_EQ(counters(&f.r).requests_replayed, 0);
	dmu_pool_join(&f.r.pool);
	char *text = capture_end(saved, path);

	if (!strstr(text, "not back within 300 ms") || !strstr(text, "2 held requests fail with EIO"))
		t_fail(__FILE__, __LINE__, "no message about the window: \"%s\"", text);
	file_rig_stop(&f);
}

/*
 * Attempts are logged once per second at most: a server away for 1.5 s
 * under a 10 ms-to-1 s backoff makes several attempts, and at most two
 * "reconnect attempt" lines.
 */
TEST(nbd_reconnect_attempts_logged_at_most_once_a_second)
{
	static unsigned char p[4096];
	uint64_t status[64];
	struct file_rig f;
	char path[256];
	int saved;

	file_rig_start(&f, 1500);
	pattern(p, sizeof(p), 41);
	capture_start(&saved, path, sizeof(path));
	srv_kill(&f.r.srv);
	send_req(&f.r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, sizeof(p), p);
	memset(status, 0xff, sizeof(status));
	collect(&f.r, 1, status, NULL);
	CHECK_EQ(status[1], DM_USER_RESP_ERROR);
	dmu_pool_join(&f.r.pool);
	char *text = capture_end(saved, path);
	unsigned lines = 0;

	for (const char *t = text; (t = strstr(t, "reconnect attempt")); t++)
		lines++;
	CHECK(counters(&f.r).reconnect_attempts >= 5);
	CHECK(lines >= 1);
	CHECK(lines <= 2);
	file_rig_stop(&f);
}
