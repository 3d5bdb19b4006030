// SPDX-License-Identifier: GPL-2.0
/*
 * The RBD backend (daemon/backend_rbd.c) against a real Ceph cluster:
 * tests/ceph/cluster.sh's one mon and one OSD (memstore) on 127.0.0.1, in
 * a network namespace of its own.  The first test that needs it starts it
 * (unshare(CLONE_NEWNET), lo up, cluster.sh start) in $TMPDIR/dmu-rbd-PID,
 * PID the runner's; the next ones join that namespace (setns on the mon's
 * /proc/PID/ns/net); one that finds the OSD or the mon dead (the test that
 * kills the OSD) starts a fresh cluster; the runner's test_suite_end()
 * stops it.  Images come from `rbd create`, one per test.  Requests go
 * through a dmuserd worker (worker.c, the asynchronous loop) from a fake
 * kernel (a SOCK_SEQPACKET socketpair), as in test_backend_nbd.c.  Without
 * ceph-mon installed the tests that need a cluster are skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <rados/librados.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/dm-user.h>

#include "backend.h"
#include "backend_rbd.h"
#include "log.h"
#include "serve.h"
#include "test.h"

#define IMG_SIZE (64ull << 20)
#define CAP (64 * 1024)
#define MSG sizeof(struct dm_user_message)
#define START_TIMEOUT_S 90	/* cluster.sh start's own limit */
#define OP_TIMEOUT_S 5		/* rados_osd_op_timeout of the killed-OSD test */

static char dir[256], conf[300];

static const char *tmpdir(void)
{
	return getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
}

static const char *cluster_sh(void)
{
	const char *s = getenv("DMU_CEPH_CLUSTER");

	return s ? s : "../ceph/cluster.sh";
}

static void cluster_dir(pid_t runner)
{
	snprintf(dir, sizeof(dir), "%s/dmu-rbd-%d", tmpdir(), (int)runner);
	snprintf(conf, sizeof(conf), "%s/ceph.conf", dir);
}

/* The pid in DIR/run/NAME.pid if that process lives, else 0. */
static pid_t daemon_pid(const char *name)
{
	char path[400];
	FILE *f;
	int pid = 0;

	snprintf(path, sizeof(path), "%s/run/%s.pid", dir, name);
	f = fopen(path, "r");
	if (!f)
		return 0;
	if (fscanf(f, "%d", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid > 0 && kill(pid, 0) == 0 ? pid : 0;
}

/* sh -c CMD; its exit status (-1: did not exit). */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	fflush(stdout);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Into the cluster's network namespace; the cluster started if none is up. */
static void cluster_up(void)
{
	pid_t mon, osd;
	char ns[64];
	int fd;

	if (access("/usr/bin/ceph-mon", X_OK) || access("/usr/bin/ceph-osd", X_OK))
		SKIP("ceph-mon/ceph-osd are not installed (Debian packages ceph-mon ceph-osd ceph-common)");
	cluster_dir(getppid());
	mon = daemon_pid("mon.a");
	osd = daemon_pid("osd.0");
	if (mon && osd) {
		snprintf(ns, sizeof(ns), "/proc/%d/ns/net", (int)mon);
		fd = open(ns, O_RDONLY | O_CLOEXEC);
		REQUIRE(fd >= 0);
		REQUIRE(setns(fd, CLONE_NEWNET) == 0);
		close(fd);
		return;
	}
	/* none yet, or one a test broke: a fresh one in a fresh namespace */
	run("%s stop %s >/dev/null 2>&1; rm -rf %s", cluster_sh(), dir, dir);
	REQUIRE(unshare(CLONE_NEWNET) == 0);
	REQUIRE_EQ(run("ip link set lo up"), 0);
	unsigned left = alarm(START_TIMEOUT_S + 10);	/* cluster.sh bounds itself */
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	int st = run("CEPH_START_TIMEOUT=%d %s start %s", START_TIMEOUT_S, cluster_sh(), dir);

	clock_gettime(CLOCK_MONOTONIC, &t1);
	alarm(left);	/* the test's own time again, from now */
	REQUIRE_EQ(st, 0);
	printf("    cluster started in %.1f s\n",
	       (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
}

/* The runner, after its last test: stop the cluster (if a test started one). */
void test_suite_end(void)
{
	struct stat st;

	cluster_dir(getpid());
	if (stat(dir, &st))
		return;
	run("%s stop %s >/dev/null 2>&1; rm -rf %s", cluster_sh(), dir, dir);
}

/* The rbd tool, never waiting long for a cluster a test broke. */
#define RBD_CLI "CEPH_ARGS='--client-mount-timeout 10 --rados-osd-op-timeout 10' rbd"

/* A fresh image of IMG_SIZE in pool rbd. */
static void image_create(const char *name)
{
	REQUIRE_EQ(run(RBD_CLI " -c %s create --size %llu rbd/%s", conf, IMG_SIZE >> 20, name), 0);
}

/*
 * A mon command through librados.  Retried (3 times at most) only on
 * EPERM: cluster.sh's mon (auth none) answers about 1 command in 12 so,
 * logging nothing (cluster.sh's mon_cmd); not the code under test.
 */
static int mon_command_once(const char *json, char *out, size_t len);

/* out: the reply (len bytes at most, NUL-terminated); NULL: not wanted */
static int mon_command_out(const char *json, char *out, size_t len)
{
	int r = -EPERM;

	for (unsigned i = 0; i < 3 && r == -EPERM; i++)
		r = mon_command_once(json, out, len);
	return r;
}

static int mon_command(const char *json)
{
	return mon_command_out(json, NULL, 0);
}

static int mon_command_once(const char *json, char *out, size_t len)
{
	const char *cmd[] = { json };
	char *buf = NULL;
	size_t buf_len = 0;
	rados_t c;
	int r;

	if (rados_create(&c, NULL) < 0)
		return -1;
	r = rados_conf_read_file(c, conf);
	if (!r)
		r = rados_conf_set(c, "client_mount_timeout", "10");
	if (!r)
		r = rados_conf_set(c, "rados_mon_op_timeout", "10");
	if (!r)
		r = rados_connect(c);
	if (!r)		/* the maps first: a command sent before fails "wrong fsid" (EPERM) */
		r = rados_wait_for_latest_osdmap(c);
	if (!r)
		r = rados_mon_command(c, cmd, 1, "", 0, &buf, &buf_len, NULL, NULL);
	if (!r && out && len) {
		size_t n = buf_len < len - 1 ? buf_len : len - 1;

		memcpy(out, buf ? buf : "", n);
		out[n] = '\0';
	}
	if (buf)
		rados_buffer_free(buf);
	rados_shutdown(c);
	return r;
}


/* ---- a worker serving the backend, behind a fake kernel ---------------- */

struct rig {
	char uri[512];
	const struct dmu_backend_type *type;
	struct dmu_backend *b;
	struct dmu_device *dev;
	struct dmu_pool pool;
	int kernel;
	bool stopped;
	uint64_t req_type[64], req_len[64];
};

static bool rig_read_only;

/* Serve image (created here) through uri_fmt ("rbd:rbd/%s?conf=CONF" by default). */
static void rig_start_uri(struct rig *r, const char *image, const char *conf_path)
{
	int sv[2];

	memset(r, 0, sizeof(*r));
	cluster_up();
	image_create(image);
	snprintf(r->uri, sizeof(r->uri), "rbd:rbd/%s?conf=%s", image, conf_path ? conf_path : conf);
	r->type = dmu_backend_find(r->uri);
	REQUIRE(r->type != NULL);
	CHECK_STR(r->type->name, "rbd");

	struct dmu_backend_args a = { .uri = r->uri, .workers = 1, .read_only = rig_read_only };
	REQUIRE_EQ(r->type->open(&a, &r->b), 0);
	REQUIRE_EQ(r->b->size, IMG_SIZE);
	REQUIRE(r->b->ops->async != NULL);

	DMU_OPTS(dmu_channel_opts, o, .buffer_size = CAP, .no_io_flusher = true,
		 .async_depth = r->b->ops->async->depth);
	struct dmu_serve_ctx ctx = { .backend = dmu_backend_for_worker(r->b, 0),
				     .read_only = rig_read_only };

	REQUIRE(dmu_device_new("rbd0", r->b->size, NULL, &r->dev) == 0);
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	r->kernel = sv[0];
	REQUIRE(dmu_pool_init(&r->pool, 1) == 0);
	REQUIRE(dmu_worker_open_fd(&r->pool.workers[0], r->dev, sv[1], &o, &ctx) == 0);
	REQUIRE(dmu_pool_start(&r->pool) == 0);
}

static void rig_start(struct rig *r, const char *image)
{
	rig_start_uri(r, image, NULL);
}

static void rig_stop(struct rig *r)
{
	dmu_pool_join(&r->pool);
	CHECK_EQ(atomic_load(&r->pool.workers[0].exit), DMU_WORKER_STOPPED);
	dmu_pool_free(&r->pool);
	CHECK_EQ(dmu_device_free(r->dev), 0);
	r->type->close(r->b);
	close(r->kernel);
}

/* Whether the fake kernel has a reply within ms. */
static bool reply_within(struct rig *r, int ms)
{
	struct pollfd p = { .fd = r->kernel, .events = POLLIN };

	return poll(&p, 1, ms) == 1;
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

/* At least n replies: status[seq], a READ's data into data[seq]; order[] the seqs as they came. */
static unsigned collect_order(struct rig *r, int n, uint64_t *status, unsigned char (*data)[CAP],
			      uint64_t *order)
{
	static unsigned char rec[64 * (MSG + CAP)];
	unsigned got_n = 0;

	while (n > 0) {
		ssize_t got;
		size_t at = 0;

		/* a reply missing says so, rather than the test's alarm */
		if (!reply_within(r, 20000)) {
			t_fail(__FILE__, __LINE__, "%d replies not there within 20 s", n);
			t_abort();
		}
		got = recv(r->kernel, rec, sizeof(rec), 0);

		REQUIRE(got >= (ssize_t)MSG);
		while (at + MSG <= (size_t)got) {
			struct dm_user_message m;

			memcpy(&m, rec + at, MSG);
			at += MSG;
			REQUIRE(m.seq < 64);
			status[m.seq] = m.type;
			if (order)
				order[got_n] = m.seq;
			got_n++;
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
	return got_n;
}

static void collect(struct rig *r, int n, uint64_t *status, unsigned char (*data)[CAP])
{
	collect_order(r, n, status, data, NULL);
}

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

static void capture_start(int *saved, char *path, size_t len)
{
	int fd;

	snprintf(path, len, "%s/dmu-rbd-err-XXXXXX", tmpdir());
	fd = mkstemp(path);
	REQUIRE(fd >= 0);
	*saved = dup(2);
	dup2(fd, 2);
	close(fd);
	dmu_log_set_quiet(0);
}

static char *capture_end(int saved, const char *path)
{
	static char text[8192];
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

static double elapsed_s(const struct timespec *t0)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/*
 * A counter of this process's librbd image (its admin socket,
 * DIR/run/client.admin.PID.asok, `perf dump`): the "librbd-..." section's
 * value of key.
 */
static uint64_t perf_counter(const char *section, const char *key)
{
	char cmd[800], line[4096];
	bool in_section = false;
	uint64_t v = UINT64_MAX;
	FILE *p;

	snprintf(cmd, sizeof(cmd),
		 "ceph --admin-daemon %s/run/client.admin.%d.asok perf dump 2>&1", dir,
		 (int)getpid());
	p = popen(cmd, "r");
	REQUIRE(p != NULL);
	/* pretty-printed JSON: a section starts with `    "name": {` */
	while (fgets(line, sizeof(line), p)) {
		char want[80];

		if (!strncmp(line, "    \"", 5))
			in_section = !strncmp(line + 5, section, strlen(section));
		snprintf(want, sizeof(want), "        \"%s\": ", key);
		if (in_section && !strncmp(line, want, strlen(want)))
			v = strtoull(line + strlen(want), NULL, 10);
	}
	pclose(p);
	if (v == UINT64_MAX)
		t_fail(__FILE__, __LINE__, "no counter %s of %s in the perf dump", key, section);
	return v;
}

static uint64_t librbd_counter(const char *key)
{
	return perf_counter("librbd-", key);
}

/* ---- the tests: no cluster needed --------------------------------------- */

TEST(rbd_scheme_is_built)
{
	const struct dmu_backend_type *t = dmu_backend_find("rbd:pool/image");

	REQUIRE(t != NULL);
	CHECK_STR(t->name, "rbd");
	CHECK(t->open == dmu_rbd_backend_open);
}

/* A URI that is not rbd:POOL/[NS/]IMAGE[?conf=&id=]: a usage error (-2) naming it, no cluster asked. */
TEST(rbd_bad_uri_is_a_usage_error_naming_it)
{
	static const char *const bad[] = {
		"rbd:", "rbd:pool", "rbd:/image", "rbd:pool/", "rbd:pool//image",
		"rbd:a/b/c/d", "rbd:pool/image?", "rbd:pool/image?conf=", "rbd:pool/image?user=x",
		"rbd:pool/image?conf=/x&bad",
	};
	char path[256];
	int saved;

	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct dmu_backend_args a = { .uri = bad[i], .workers = 2 };
		struct dmu_backend *b = NULL;
		struct timespec t0;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		capture_start(&saved, path, sizeof(path));
		int err = dmu_rbd_backend_open(&a, &b);
		char *text = capture_end(saved, path);

		CHECK_EQ(err, -2);
		CHECK(b == NULL);
		CHECK(elapsed_s(&t0) < 1);	/* no connection tried */
		if (!strstr(text, "invalid --backend") || !strstr(text, bad[i]))
			t_fail(__FILE__, __LINE__, "the message for %s: %s", bad[i], text);
	}
	/* --direct is the file backend's */
	struct dmu_backend_args a = { .uri = "rbd:pool/image", .direct = true };
	struct dmu_backend *b = NULL;

	capture_start(&saved, path, sizeof(path));
	CHECK_EQ(dmu_rbd_backend_open(&a, &b), -2);
	capture_end(saved, path);
}

/*
 * No mon on the address the configuration names: a runtime error (-1)
 * that says so, within client_mount_timeout (the backend's 10 s: Ceph's
 * own 300 s would end the test by its alarm).  In a namespace of its own:
 * nothing listens there.
 */
TEST(rbd_unreachable_cluster_is_an_error_in_bounded_time)
{
	char cpath[256], uri[400], path[256];
	struct dmu_backend *b = NULL;
	struct timespec t0;
	FILE *f;
	int saved;

	REQUIRE(unshare(CLONE_NEWNET) == 0);
	REQUIRE_EQ(run("ip link set lo up"), 0);
	snprintf(cpath, sizeof(cpath), "%s/dmu-rbd-conf-%d", tmpdir(), (int)getpid());
	f = fopen(cpath, "w");
	REQUIRE(f != NULL);
	fprintf(f, "[global]\nmon host = v1:127.0.0.1:6789\nauth client required = none\n"
		"log file = /dev/null\nadmin socket = \n");
	fclose(f);
	snprintf(uri, sizeof(uri), "rbd:rbd/image?conf=%s", cpath);
	struct dmu_backend_args a = { .uri = uri, .workers = 1 };

	clock_gettime(CLOCK_MONOTONIC, &t0);
	capture_start(&saved, path, sizeof(path));
	int err = dmu_rbd_backend_open(&a, &b);
	char *text = capture_end(saved, path);
	double took = elapsed_s(&t0);

	unlink(cpath);
	CHECK_EQ(err, -1);
	CHECK(b == NULL);
	printf("    refused after %.1f s\n", took);
	CHECK(took < 20);
	if (!strstr(text, "cannot connect to --backend") || !strstr(text, uri) ||
	    !strstr(text, "client_mount_timeout"))
		t_fail(__FILE__, __LINE__, "the message: %s", text);
}

/* ---- the tests: against the cluster -------------------------------------- */

TEST(rbd_size_comes_from_the_image)
{
	char uri[400], path[256];
	struct dmu_backend *b;
	struct dmu_backend_args a = { .workers = 3 };
	int saved;

	cluster_up();
	image_create("size");
	snprintf(uri, sizeof(uri), "rbd:rbd/size?conf=%s", conf);
	a.uri = uri;
	REQUIRE_EQ(dmu_rbd_backend_open(&a, &b), 0);
	CHECK_EQ(b->size, IMG_SIZE);
	/* an instance per worker, on one image */
	CHECK(dmu_backend_for_worker(b, 0) == b);
	CHECK(dmu_backend_for_worker(b, 1) != b);
	CHECK(dmu_backend_for_worker(b, 2) != dmu_backend_for_worker(b, 1));
	CHECK(dmu_backend_for_worker(b, 3) == NULL);
	dmu_rbd_backend_close(b);

	a.size = 1 << 20;		/* a smaller --size exposes the start */
	REQUIRE_EQ(dmu_rbd_backend_open(&a, &b), 0);
	CHECK_EQ(b->size, 1 << 20);
	dmu_rbd_backend_close(b);
	a.size = 2 * IMG_SIZE;		/* no larger */
	capture_start(&saved, path, sizeof(path));
	CHECK_EQ(dmu_rbd_backend_open(&a, &b), -1);
	char *text = capture_end(saved, path);
	CHECK(strstr(text, "larger than the image rbd/size") != NULL);

	/* no such image, no such pool: runtime errors that say which */
	a.size = 0;
	snprintf(uri, sizeof(uri), "rbd:rbd/nonesuch?conf=%s", conf);
	capture_start(&saved, path, sizeof(path));
	CHECK_EQ(dmu_rbd_backend_open(&a, &b), -1);
	text = capture_end(saved, path);
	CHECK(strstr(text, "cannot open image rbd/nonesuch") != NULL);
	snprintf(uri, sizeof(uri), "rbd:nopool/size?conf=%s", conf);
	capture_start(&saved, path, sizeof(path));
	CHECK_EQ(dmu_rbd_backend_open(&a, &b), -1);
	text = capture_end(saved, path);
	CHECK(strstr(text, "cannot open pool nopool") != NULL);
}

/* rbd:POOL/NAMESPACE/IMAGE: the image of that namespace, not the pool's default one. */
TEST(rbd_namespace_in_the_uri)
{
	char uri[400], path[256];
	struct dmu_backend *b;
	struct dmu_backend_args a = { .uri = uri, .workers = 1 };
	int saved;

	cluster_up();
	REQUIRE_EQ(run(RBD_CLI " -c %s namespace create rbd/ns1", conf), 0);
	REQUIRE_EQ(run(RBD_CLI " -c %s create --size 2 rbd/ns1/nsimg", conf), 0);
	snprintf(uri, sizeof(uri), "rbd:rbd/ns1/nsimg?conf=%s", conf);
	REQUIRE_EQ(dmu_rbd_backend_open(&a, &b), 0);
	CHECK_EQ(b->size, 2 << 20);
	dmu_rbd_backend_close(b);
	snprintf(uri, sizeof(uri), "rbd:rbd/nsimg?conf=%s", conf);	/* not in the default namespace */
	capture_start(&saved, path, sizeof(path));
	CHECK_EQ(dmu_rbd_backend_open(&a, &b), -1);
	char *text = capture_end(saved, path);
	CHECK(strstr(text, "cannot open image rbd/nsimg") != NULL);
}

TEST(rbd_write_read_round_trip)
{
	static unsigned char p[CAP], back[CAP];
	struct rig r;

	rig_start(&r, "rt");
	pattern(p, sizeof(p), 1);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 4096, CAP, p, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_READ, 0, 4096, CAP, NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p, sizeof(p)) == 0);
	/* the last sector of the image, across no object boundary; then one that spans two objects */
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_WRITE, 0, IMG_SIZE - 512, 512, p + 7, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 4, DM_USER_REQ_MAP_READ, 0, IMG_SIZE - 512, 512, NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p + 7, 512) == 0);
	CHECK_EQ(round_trip(&r, 5, DM_USER_REQ_MAP_WRITE, 0, (4 << 20) - 8192, 16384, p + 3, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 6, DM_USER_REQ_MAP_READ, 0, (4 << 20) - 8192, 16384, NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p + 3, 16384) == 0);
	rig_stop(&r);
	/* and through another client: the data is in the cluster */
	char img[400];
	FILE *f;

	snprintf(img, sizeof(img), "%s/rt.img", dir);
	REQUIRE_EQ(run(RBD_CLI " -c %s export rbd/rt %s >/dev/null 2>&1", conf, img), 0);
	f = fopen(img, "r");
	REQUIRE(f != NULL);
	REQUIRE(fseek(f, 4096, SEEK_SET) == 0);
	REQUIRE_EQ(fread(back, 1, CAP, f), CAP);
	CHECK(memcmp(back, p, CAP) == 0);
	fclose(f);
	unlink(img);
}

/*
 * Many requests in flight on one worker, each answered with its own data.
 * 4 KiB each: the replies of one batch go back in one SOCK_SEQPACKET
 * record, which must fit the socket's buffer (32 reads of 8 KiB did not,
 * at times: the worker's send failed and it stopped).
 */
TEST(rbd_many_requests_in_flight)
{
	static unsigned char p[32][CAP], data[64][CAP];
	uint64_t status[64];
	struct rig r;

	rig_start(&r, "many");
	for (unsigned i = 0; i < 32; i++) {
		pattern(p[i], 4096, i + 10);
		/* 32 writes over 8 objects */
		send_req(&r, i, DM_USER_REQ_MAP_WRITE, 0, (uint64_t)(i % 8) * (4 << 20) + (i / 8) * 4096,
			 4096, p[i]);
	}
	memset(status, 0xff, sizeof(status));
	collect(&r, 32, status, NULL);
	for (unsigned i = 0; i < 32; i++)
		CHECK_EQ(status[i], DM_USER_RESP_SUCCESS);
	/* read them back in reverse, all at once */
	for (unsigned i = 0; i < 32; i++) {
		unsigned w = 31 - i;

		send_req(&r, 32 + i, DM_USER_REQ_MAP_READ, 0,
			 (uint64_t)(w % 8) * (4 << 20) + (w / 8) * 4096, 4096, NULL);
	}
	collect(&r, 32, status, data);
	for (unsigned i = 0; i < 32; i++) {
		CHECK_EQ(status[32 + i], DM_USER_RESP_SUCCESS);
		if (memcmp(data[32 + i], p[31 - i], 4096))
			t_fail(__FILE__, __LINE__, "read %u: not the data of write %u", 32 + i, 31 - i);
	}
	rig_stop(&r);
}

/*
 * Out of order: a READ the cluster holds (`ceph osd set pause`: the OSDs
 * take no ops) does not hold up the READ sent after it on the same worker,
 * of an object that does not exist, which librbd answers (zeroes) from
 * its object map without an OSD: its reply comes first; the held READ's
 * once the OSDs resume.  Were requests served one at a time, the second
 * would wait behind the first.
 */
TEST(rbd_replies_come_in_the_order_the_cluster_answers)
{
	static unsigned char p[4096], zero[4096], data[64][CAP];
	uint64_t status[64], order[4];
	struct rig r;

	rig_start(&r, "order");
	pattern(p, sizeof(p), 8);
	/* the exclusive lock and the object map taken, object 2 made */
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 8 << 20, 4096, p, NULL),
		 DM_USER_RESP_SUCCESS);
	REQUIRE_EQ(mon_command("{\"prefix\": \"osd set\", \"key\": \"pause\"}"), 0);
	/*
	 * The pause is the client's (the Objecter holds ops while its OSD map
	 * says so): wait until this process has the map with the flag, by
	 * its epoch, before sending.
	 */
	char out[4096], *e = NULL;
	uint64_t epoch = UINT64_MAX;

	/* from here, a failure unpauses the cluster before it ends the test */
	if (mon_command_out("{\"prefix\": \"osd stat\", \"format\": \"json\"}", out,
			    sizeof(out)) == 0)
		e = strstr(out, "\"epoch\":");
	if (e)
		epoch = strtoull(e + 8, NULL, 10);
	for (int tries = 0; e && perf_counter("objecter", "map_epoch") < epoch && tries < 100; tries++)
		;	/* each a `ceph --admin-daemon` run: ~0.2 s */
	if (!e || perf_counter("objecter", "map_epoch") < epoch) {
		CHECK_EQ(mon_command("{\"prefix\": \"osd unset\", \"key\": \"pause\"}"), 0);
		t_fail(__FILE__, __LINE__, "the OSD map with pause: not seen by this client");
		t_abort();
	}
	status[2] = status[3] = 99;
	send_req(&r, 2, DM_USER_REQ_MAP_READ, 0, 8 << 20, 4096, NULL);
	send_req(&r, 3, DM_USER_REQ_MAP_READ, 0, 12 << 20, 4096, NULL);
	if (!reply_within(&r, 10000)) {
		/* both held: not left paused for the next tests */
		CHECK_EQ(mon_command("{\"prefix\": \"osd unset\", \"key\": \"pause\"}"), 0);
		t_fail(__FILE__, __LINE__, "no reply within 10 s while the OSDs pause");
	}
	collect_order(&r, 1, status, data, order);
	CHECK_EQ(order[0], 3);				/* the second READ's, first */
	CHECK_EQ(status[3], DM_USER_RESP_SUCCESS);
	CHECK(memcmp(data[3], zero, sizeof(zero)) == 0);
	CHECK_EQ(status[2], 99);
	REQUIRE_EQ(mon_command("{\"prefix\": \"osd unset\", \"key\": \"pause\"}"), 0);
	if (status[2] == 99)
		collect(&r, 1, status, data);
	CHECK_EQ(status[2], DM_USER_RESP_SUCCESS);
	CHECK(memcmp(data[2], p, sizeof(p)) == 0);
	rig_stop(&r);
}

/* --read-only: the image opened read-only, changes refused, reads served. */
TEST(rbd_read_only_refuses_changes)
{
	static unsigned char p[4096];
	struct rig r;

	rig_read_only = true;
	rig_start(&r, "ro");
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
	CHECK_EQ(librbd_counter("wr"), 0);	/* none reached librbd */
	rig_stop(&r);
}

/*
 * FLUSH, PREFLUSH and FUA reach librbd as rbd_aio_flush: its "flush"
 * counter (this process's admin socket) counts one for each, and none
 * for a plain write.
 */
TEST(rbd_flush_and_fua_reach_the_cluster)
{
	static unsigned char p[4096];
	uint64_t f0;
	struct rig r;

	rig_start(&r, "flush");
	pattern(p, sizeof(p), 3);
	f0 = librbd_counter("flush");
	uint64_t w0 = librbd_counter("wr");
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(librbd_counter("flush"), f0);
	/* a flush, as the kernel sends it: FLUSH with the PREFLUSH flag: one */
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_FLUSH, DM_USER_REQ_MAP_FLAG_PREFLUSH, 0, 0,
			    NULL, NULL), DM_USER_RESP_SUCCESS);
	CHECK_EQ(librbd_counter("flush"), f0 + 1);
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 8192, 4096, p,
			    NULL), DM_USER_RESP_SUCCESS);
	CHECK_EQ(librbd_counter("flush"), f0 + 2);
	CHECK_EQ(round_trip(&r, 4, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_PREFLUSH, 16384,
			    4096, p, NULL), DM_USER_RESP_SUCCESS);
	CHECK_EQ(librbd_counter("flush"), f0 + 3);
	CHECK_EQ(round_trip(&r, 5, DM_USER_REQ_MAP_SECURE_ERASE, 0, 65536, 65536, NULL, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(librbd_counter("flush"), f0 + 4);
	CHECK_EQ(librbd_counter("wr"), w0 + 3);
	rig_stop(&r);
}

/*
 * DISCARD (rbd_aio_discard), WRITE_ZEROES with and without NOUNMAP
 * (rbd_aio_write_zeroes) and SECURE_ERASE: each range reads back as
 * zeroes, the data around it stays; librbd counted the discards.
 */
TEST(rbd_discard_and_write_zeroes_read_back_as_zeroes)
{
	static unsigned char p[4][CAP], back[CAP], zero[CAP];
	struct rig r;

	rig_start(&r, "zero");
	for (unsigned i = 0; i < 4; i++) {
		pattern(p[i], CAP, 20 + i);
		CHECK_EQ(round_trip(&r, 1 + i, DM_USER_REQ_MAP_WRITE, 0, (uint64_t)i * CAP, CAP,
				    p[i], NULL), DM_USER_RESP_SUCCESS);
	}
	uint64_t d0 = librbd_counter("discard");
	CHECK_EQ(round_trip(&r, 10, DM_USER_REQ_MAP_DISCARD, 0, 0, CAP, NULL, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 11, DM_USER_REQ_MAP_WRITE_ZEROES, 0, CAP + 4096, 8192, NULL, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 12, DM_USER_REQ_MAP_WRITE_ZEROES, DM_USER_REQ_MAP_FLAG_NOUNMAP,
			    2 * CAP + 512, 1024, NULL, NULL), DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 13, DM_USER_REQ_MAP_SECURE_ERASE, 0, 3 * CAP, 4096, NULL, NULL),
		 DM_USER_RESP_SUCCESS);
	CHECK(librbd_counter("discard") > d0);

	CHECK_EQ(round_trip(&r, 20, DM_USER_REQ_MAP_READ, 0, 0, CAP, NULL, back), DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, zero, CAP) == 0);
	CHECK_EQ(round_trip(&r, 21, DM_USER_REQ_MAP_READ, 0, CAP, CAP, NULL, back), DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p[1], 4096) == 0);
	CHECK(memcmp(back + 4096, zero, 8192) == 0);
	CHECK(memcmp(back + 12288, p[1] + 12288, CAP - 12288) == 0);
	CHECK_EQ(round_trip(&r, 22, DM_USER_REQ_MAP_READ, 0, 2 * CAP, CAP, NULL, back), DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p[2], 512) == 0);
	CHECK(memcmp(back + 512, zero, 1024) == 0);
	CHECK(memcmp(back + 1536, p[2] + 1536, CAP - 1536) == 0);
	CHECK_EQ(round_trip(&r, 23, DM_USER_REQ_MAP_READ, 0, 3 * CAP, CAP, NULL, back), DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, zero, 4096) == 0);
	CHECK(memcmp(back + 4096, p[3] + 4096, CAP - 4096) == 0);
	rig_stop(&r);
}

static uint64_t mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* A client's conf with rados_osd_op_timeout OP_TIMEOUT_S, into buf. */
static void fast_conf(char *buf, size_t size)
{
	FILE *f;

	snprintf(buf, size, "%s/fast.conf", dir);
	REQUIRE_EQ(run("cp %s %s", conf, buf), 0);
	f = fopen(buf, "a");
	REQUIRE(f != NULL);
	fprintf(f, "\n[client]\nrados osd op timeout = %d\n", OP_TIMEOUT_S);
	fclose(f);
}

/*
 * SIGSTOP pid, guarded by a child: cont_guarded() has it send SIGCONT; if
 * this test's process ends first, however it ends (a failed REQUIRE
 * _exits), it kills the OSD instead, so that the next test starts a fresh
 * cluster rather than find this one stopped or behind.
 */
static void stop_guarded(pid_t pid, int *guard)
{
	int p[2];
	pid_t child;
	char c = 0;

	REQUIRE(pipe(p) == 0);
	child = fork();
	REQUIRE(child >= 0);
	if (child == 0) {
		close(p[1]);
		if (read(p[0], &c, 1) == 1 && c == 'c')
			kill(pid, SIGCONT);
		else
			kill(pid, SIGKILL);
		_exit(0);
	}
	close(p[0]);
	*guard = p[1];
	REQUIRE_EQ(kill(pid, SIGSTOP), 0);
}

static void cont_guarded(int guard)
{
	REQUIRE_EQ(write(guard, "c", 1), 1);
	close(guard);
	while (wait(NULL) > 0)
		;
}

static uint64_t replayed(struct rig *r)
{
	struct dmu_backend_counters c;

	REQUIRE(r->b->ops->counters != NULL);
	r->b->ops->counters(r->b, &c);
	return c.requests_replayed;
}

/*
 * The reconnect window (set_reconnect_ms): the OSD stopped for longer
 * than the op timeout (5 s here) and less than the window (60 s): a write
 * and a read sent meanwhile time out, are started again (counted in
 * requests_replayed, said once) and, once the OSD goes on, answered
 * SUCCESS, the data read back.  With a window of 0, a request sent to the
 * stopped OSD is answered ERROR after its timeouts (counted in
 * requests_failed), with no retry.
 */
TEST(rbd_stall_within_the_reconnect_window_is_ridden_out)
{
	static unsigned char p[4096], back[4096];
	static unsigned char data[64][CAP];
	uint64_t status[64];
	struct dmu_backend_counters c;
	struct timespec t0;
	char fast[400], path[256];
	struct rig r;
	int saved, guard;
	pid_t osd;

	alarm(180);	/* a cluster's start, timeouts, a loaded machine's OSD */
	cluster_up();
	fast_conf(fast, sizeof(fast));
	rig_start_uri(&r, "window", fast);
	r.b->ops->set_reconnect_ms(r.b, 60000);
	pattern(p, sizeof(p), 9);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p, NULL),
		 DM_USER_RESP_SUCCESS);
	osd = daemon_pid("osd.0");
	REQUIRE(osd > 0);
	capture_start(&saved, path, sizeof(path));
	stop_guarded(osd, &guard);
	send_req(&r, 2, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 8 << 20, 4096, p);
	send_req(&r, 3, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL);
	/* both timed out once and went out again: the stall outlasted a timeout */
	uint64_t end = mono_ms() + (OP_TIMEOUT_S + 20) * 1000;

	while (replayed(&r) < 2 && mono_ms() < end)
		poll(NULL, 0, 50);
	CHECK(replayed(&r) >= 2);
	CHECK(!reply_within(&r, 0));	/* held, not failed */
	cont_guarded(guard);
	/*
	 * Within the window, however slow the OSD is to catch up: on a loaded
	 * machine (make check's guests beside it) a call may time out again
	 * and be started again; collect() waits 20 s a reply.
	 */
	REQUIRE(reply_within(&r, 55000));
	memset(status, 0xff, sizeof(status));
	collect(&r, 2, status, data);
	CHECK_EQ(status[2], DM_USER_RESP_SUCCESS);
	CHECK_EQ(status[3], DM_USER_RESP_SUCCESS);
	CHECK(memcmp(data[3], p, 4096) == 0);
	CHECK_EQ(round_trip(&r, 4, DM_USER_REQ_MAP_READ, 0, 8 << 20, 4096, NULL, back),
		 DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p, 4096) == 0);
	r.b->ops->counters(r.b, &c);
	CHECK_EQ(c.requests_failed, 0);
	char *text = capture_end(saved, path);

	if (!strstr(text, "requests are started again until it answers, for up to 60000 ms"))
		t_fail(__FILE__, __LINE__, "no message about the window: \"%s\"", text);

	/* no window: the timeout's ERROR */
	r.b->ops->set_reconnect_ms(r.b, 0);
	stop_guarded(osd, &guard);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK_EQ(round_trip(&r, 5, DM_USER_REQ_MAP_WRITE, 0, 16 << 20, 4096, p, NULL),
		 DM_USER_RESP_ERROR);
	double took = elapsed_s(&t0);

	cont_guarded(guard);
	printf("    without a window: ERROR after %.1f s\n", took);
	/* a write to a new object is two calls to the OSD in librbd, 2 timeouts */
	CHECK(took < 2 * OP_TIMEOUT_S + 3);
	r.b->ops->counters(r.b, &c);
	CHECK_EQ(c.requests_failed, 1);
	rig_stop(&r);
	/* the next test starts a fresh cluster, not one a stall left behind */
	kill(osd, SIGKILL);
	end = mono_ms() + 10000;
	while (kill(osd, 0) == 0 && mono_ms() < end)
		poll(NULL, 0, 20);	/* init reaps it: not our child */
}

/*
 * The OSD killed (kill -9) under I/O: the reads in flight and the ones
 * after, and the FLUSH after them, fail with ERROR within the timeout
 * (rados_osd_op_timeout, OP_TIMEOUT_S through the configuration here; a
 * write librbd's cache took may succeed, the FLUSH then must not), the
 * reason is logged once, and the worker still stops cleanly.  The next test that needs a
 * cluster starts a fresh one.
 */
TEST(rbd_osd_killed_is_an_error_in_bounded_time)
{
	static unsigned char p[4096];
	char fast[400], path[256];
	uint64_t status[64];
	struct timespec t0;
	struct rig r;
	pid_t osd;
	int saved;

	alarm(60);	/* it waits for timeouts: the op's, and the close's */
	cluster_up();
	fast_conf(fast, sizeof(fast));
	rig_start_uri(&r, "killed", fast);
	pattern(p, sizeof(p), 7);
	/*
	 * The 16 objects written first: a read of an object the object map
	 * says does not exist is answered (zeroes) without asking an OSD.
	 */
	for (unsigned i = 0; i < 16; i++)
		CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, (uint64_t)i * (4 << 20),
				    4096, p, NULL), DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL, NULL),
		 DM_USER_RESP_SUCCESS);
	osd = daemon_pid("osd.0");
	REQUIRE(osd > 0);
	capture_start(&saved, path, sizeof(path));
	memset(status, 0xff, sizeof(status));
	/* reads and writes over 16 objects: 8 in flight as it dies, 8 after */
	for (unsigned i = 0; i < 16; i++) {
		if (i == 8) {
			REQUIRE_EQ(kill(osd, SIGKILL), 0);
			clock_gettime(CLOCK_MONOTONIC, &t0);
		}
		send_req(&r, 10 + i, i % 2 ? DM_USER_REQ_MAP_READ : DM_USER_REQ_MAP_WRITE, 0,
			 (uint64_t)i * (4 << 20) + 8192, 4096, i % 2 ? NULL : p);
	}
	collect(&r, 16, status, NULL);
	double took = elapsed_s(&t0);
	/* a READ after them, with nothing in flight */
	CHECK_EQ(round_trip(&r, 30, DM_USER_REQ_MAP_READ, 0, 8 << 20, 4096, NULL, NULL),
		 DM_USER_RESP_ERROR);
	double took2 = elapsed_s(&t0);
	dmu_pool_join(&r.pool);		/* the worker stops, it does not hang */
	char *text = capture_end(saved, path);

	printf("    16 requests answered %.1f s after the kill, one more %.1f s\n", took, took2);
	/*
	 * The last 8 were sent after the OSD died: ERROR, writes too (no
	 * cache answers them); the first 8 may have been done before.
	 */
	for (unsigned i = 0; i < 16; i++)
		if (i >= 8)
			CHECK_EQ(status[10 + i], DM_USER_RESP_ERROR);
		else
			CHECK(status[10 + i] == DM_USER_RESP_ERROR || status[10 + i] == DM_USER_RESP_SUCCESS);
	CHECK(took < OP_TIMEOUT_S + 5);
	CHECK(took2 - took < OP_TIMEOUT_S + 3);
	if (!strstr(text, "rbd: rbd/killed: the cluster did not answer within rados_osd_op_timeout (5"))
		t_fail(__FILE__, __LINE__, "no message about the lost cluster: \"%s\"", text);
	char *first = strstr(text, "did not answer");
	CHECK(first && !strstr(first + 1, "did not answer"));	/* once */
	/*
	 * The close asks the dead cluster to release the lock and the watch,
	 * each call up to the op timeout (15.1 s, 3 of them, before the
	 * close was bounded): it gives up after one.
	 */
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	capture_start(&saved, path, sizeof(path));
	rig_stop(&r);
	double closed = elapsed_s(&t1);
	text = capture_end(saved, path);
	printf("    closed in %.1f s\n", closed);
	CHECK(closed < OP_TIMEOUT_S + 2);
	if (closed >= OP_TIMEOUT_S - 1 &&
	    !strstr(text, "closing the image did not finish within 5 s"))
		t_fail(__FILE__, __LINE__, "a slow close, and no message about it: \"%s\"", text);
}
