// SPDX-License-Identifier: LGPL-2.1-or-later
/* The blocking loop, dmu_channel_run(), against the fake kernel. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rig.h"
#include "test.h"

static unsigned char rec[4 * CAP + 128 * 1024];

/* Send one request, read its reply (header, data_len bytes of data). */
static struct dm_user_message round_trip(struct rig *r, uint64_t seq, uint64_t type,
					 uint64_t flags, uint64_t sector, uint64_t len,
					 const void *payload, void *data, size_t data_len)
{
	size_t off = 0, n;
	struct dm_user_message m;

	send_req(r->k, seq, type, flags, sector, len, payload);
	n = recv_record(r->k, rec, sizeof(rec));
	/* A spliced reply may come in several writes: the module takes any split. */
	while (n < MSG + data_len)
		n += recv_record(r->k, rec + n, sizeof(rec) - n);
	REQUIRE_EQ(n, MSG + data_len);
	m = reply_at(rec, &off, data_len);
	if (data_len)
		memcpy(data, rec + MSG, data_len);
	return m;
}

TEST(blocking_write_then_read)
{
	struct rig r;
	struct rig_cfg cfg = { 0 };
	unsigned char *p = pattern(8192, 1), got[8192];

	rig_open(&r, &cfg);
	rig_serve(&r);
	struct dm_user_message m = round_trip(&r, 7, DM_USER_REQ_MAP_WRITE, 0, 16, 8192, p,
					      NULL, 0);
	CHECK_EQ(m.seq, 7);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(m.sector, 16);
	CHECK_EQ(m.len, 8192);
	CHECK(memcmp(r.mem->data + 16 * 512, p, 8192) == 0);

	m = round_trip(&r, 8, DM_USER_REQ_MAP_READ, 0, 16, 8192, NULL, got, sizeof(got));
	CHECK_EQ(m.seq, 8);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(got, p, 8192) == 0);

	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	rig_close(&r);
	free(p);
}

/*
 * Batching: several requests in one read() are carried out in the order
 * read and answered in that order, all in one writev().
 */
TEST(blocking_batch_in_order_one_writev)
{
	struct rig r;
	struct rig_cfg cfg = { .batch = true };
	unsigned char *a = pattern(4096, 2), *b = pattern(4096, 3);

	rig_open(&r, &cfg);
	REQUIRE(dmu_channel_batching(r.ch));
	rig_serve(&r);
	struct req q[] = {
		{ 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, a },
		{ 2, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL },
		{ 3, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
		{ 4, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, b },
		{ 5, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL },
	};
	send_batch(r.k, q, 5);
	size_t n = recv_record(r.k, rec, sizeof(rec)), off = 0;

	CHECK_EQ(n, 5 * MSG + 2 * 4096);
	for (unsigned i = 0; i < 5; i++) {
		bool read = q[i].type == DM_USER_REQ_MAP_READ;
		size_t at = off + MSG;
		struct dm_user_message m = reply_at(rec, &off, read ? 4096 : 0);

		CHECK_EQ(m.seq, q[i].seq);
		CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
		/* each READ saw the WRITE before it, not the one after */
		if (i == 1)
			CHECK(memcmp(rec + at, a, 4096) == 0);
		if (i == 4)
			CHECK(memcmp(rec + at, b, 4096) == 0);
	}
	CHECK_STR(r.mem->log, "WRFWR");
	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	rig_close(&r);
	free(a);
	free(b);
}

TEST(blocking_preflush_and_fua_call_flush_around_the_write)
{
	struct rig r;
	struct rig_cfg cfg = { 0 };
	unsigned char *p = pattern(4096, 4);

	rig_open(&r, &cfg);
	rig_serve(&r);
	round_trip(&r, 1, DM_USER_REQ_MAP_WRITE,
		   DM_USER_REQ_MAP_FLAG_PREFLUSH | DM_USER_REQ_MAP_FLAG_FUA, 0, 4096, p, NULL, 0);
	round_trip(&r, 2, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 8, 4096, p, NULL, 0);
	round_trip(&r, 3, DM_USER_REQ_MAP_DISCARD, DM_USER_REQ_MAP_FLAG_PREFLUSH, 8, 4096, NULL,
		   NULL, 0);
	CHECK_STR(r.mem->log, "FWFWFFD");
	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	rig_close(&r);
	free(p);
}

/* A failing callback fails its request only, with the status its errno maps to. */
TEST(blocking_backend_error_on_each_op)
{
	static const struct { uint64_t type; unsigned op; } ops[] = {
		{ DM_USER_REQ_MAP_READ, DMU_REQ_READ },
		{ DM_USER_REQ_MAP_WRITE, DMU_REQ_WRITE },
		{ DM_USER_REQ_MAP_FLUSH, DMU_REQ_FLUSH },
		{ DM_USER_REQ_MAP_DISCARD, DMU_REQ_DISCARD },
		{ DM_USER_REQ_MAP_WRITE_ZEROES, DMU_REQ_WRITE_ZEROES },
		{ DM_USER_REQ_MAP_SECURE_ERASE, DMU_REQ_SECURE_ERASE },
	};
	static const struct { int err; unsigned status; } errs[] = {
		{ -EIO, DM_USER_RESP_ERROR },
		{ -ENOSPC, DM_USER_RESP_NOSPC },
		{ -EOPNOTSUPP, DM_USER_RESP_UNSUPPORTED },
	};
	struct rig r;
	struct rig_cfg cfg = { 0 };
	unsigned char *p = pattern(4096, 5), got[4096];
	uint64_t seq = 1;

	rig_open(&r, &cfg);
	rig_serve(&r);
	for (unsigned i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		for (unsigned e = 0; e < sizeof(errs) / sizeof(errs[0]); e++) {
			uint64_t type = ops[i].type;
			bool write = type == DM_USER_REQ_MAP_WRITE;
			uint64_t len = type == DM_USER_REQ_MAP_FLUSH ? 0 : 4096;

			r.mem->fail[ops[i].op] = errs[e].err;
			struct dm_user_message m = round_trip(&r, seq++, type, 0, 0, len,
							      write ? p : NULL, NULL, 0);
			CHECK_EQ(m.type, errs[e].status);
			r.mem->fail[ops[i].op] = 0;
			/* the channel goes on: the same request now succeeds */
			bool read = type == DM_USER_REQ_MAP_READ;
			m = round_trip(&r, seq++, type, 0, 0, len, write ? p : NULL, got,
				       read ? 4096 : 0);
			CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
		}
	}
	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	rig_close(&r);
	free(p);
}

static int only_read(void *arg, void *buf, size_t len, uint64_t off)
{
	(void)arg;
	(void)off;
	memset(buf, 0xab, len);
	return 0;
}

static unsigned char zero_store[DEV_SIZE];

static int only_write(void *arg, const void *buf, size_t len, uint64_t off)
{
	(void)arg;
	memcpy(zero_store + off, buf, len);
	return 0;
}

struct minimal {
	struct dmu_channel *ch;
	int result;
};

static void *serve_minimal(void *arg)
{
	static const struct dmu_ops ops = {
		.sz = sizeof(ops), .read = only_read, .write = only_write,
	};
	struct minimal *mn = arg;

	mn->result = dmu_channel_run(mn->ch, &ops, NULL);
	return NULL;
}

/*
 * Missing callbacks: discard and secure erase are UNSUPPORTED, flush
 * succeeds (nothing cached), write_zeroes writes zeroes through write; a
 * zone operation is UNSUPPORTED whatever the callbacks.
 */
TEST(blocking_missing_callbacks)
{
	struct rig r;
	struct rig_cfg cfg = { 0 };
	struct minimal mn;
	pthread_t t;

	rig_open(&r, &cfg);
	mn.ch = r.ch;
	memset(zero_store, 0x55, sizeof(zero_store));
	REQUIRE(pthread_create(&t, NULL, serve_minimal, &mn) == 0);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_DISCARD, 0, 0, 4096, NULL, NULL, 0).type,
		 DM_USER_RESP_UNSUPPORTED);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_SECURE_ERASE, 0, 0, 4096, NULL, NULL, 0).type,
		 DM_USER_RESP_UNSUPPORTED);
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL, NULL, 0).type,
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 4, DM_USER_REQ_MAP_WRITE_ZEROES, 0, 8, 200 * 1024, NULL, NULL,
			    0).type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(zero_store[8 * 512 - 1], 0x55);
	CHECK_EQ(zero_store[8 * 512], 0);
	CHECK_EQ(zero_store[8 * 512 + 200 * 1024 - 1], 0);
	CHECK_EQ(zero_store[8 * 512 + 200 * 1024], 0x55);
	CHECK_EQ(round_trip(&r, 5, DM_USER_REQ_MAP_ZONE_OPEN, 0, 0, 0, NULL, NULL, 0).type,
		 DM_USER_RESP_UNSUPPORTED);
	dmu_channel_stop(r.ch);
	pthread_join(t, NULL);
	CHECK_EQ(mn.result, 0);
	rig_close(&r);
}

/*
 * Requests larger than the buffer: a READ's reply is streamed a buffer at
 * a time (header, then pieces), a WRITE's payload is taken in pieces; the
 * data are whole either way.
 */
TEST(blocking_reply_larger_than_buffer)
{
	struct rig r;
	struct rig_cfg cfg = { 0 };
	size_t big = 3 * CAP + 512, off = 0;
	unsigned char *p = pattern(big, 6), *got = malloc(big + MSG);

	rig_open(&r, &cfg);
	rig_serve(&r);
	/* the WRITE's header alone, then its payload in buffer-sized records */
	send_req(r.k, 1, DM_USER_REQ_MAP_WRITE, 0, 0, big, NULL);
	for (size_t o = 0; o < big; o += CAP)
		REQUIRE(send(r.k, p + o, big - o < CAP ? big - o : CAP, 0) > 0);
	size_t n = recv_record(r.k, rec, sizeof(rec));
	CHECK_EQ(n, MSG);
	CHECK_EQ(reply_at(rec, &off, 0).type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(r.mem->data, p, big) == 0);

	send_req(r.k, 2, DM_USER_REQ_MAP_READ, 0, 0, big, NULL);
	size_t have = 0;
	unsigned records = 0;
	while (have < MSG + big) {
		have += recv_record(r.k, got + have, MSG + big - have);
		records++;
	}
	struct dm_user_message m;
	memcpy(&m, got, MSG);
	CHECK_EQ(m.seq, 2);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(got + MSG, p, big) == 0);
	CHECK(records >= 4);	/* header + first buffer, then three more pieces */
	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	rig_close(&r);
	free(p);
	free(got);
}

TEST(blocking_read_only_and_out_of_range)
{
	struct rig r;
	struct rig_cfg cfg = { .read_only = true };
	unsigned char *p = pattern(4096, 7), got[4096];

	rig_open(&r, &cfg);
	rig_serve(&r);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p, NULL, 0).type,
		 DM_USER_RESP_ERROR);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_DISCARD, 0, 0, 4096, NULL, NULL, 0).type,
		 DM_USER_RESP_ERROR);
	CHECK_EQ(r.mem->nlog, 0);	/* no callback ran */
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL, got, 4096).type,
		 DM_USER_RESP_SUCCESS);
	/* the last 4 KiB, then 4 KiB that end past the device */
	CHECK_EQ(round_trip(&r, 4, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512 - 8, 4096, NULL, got,
			    4096).type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(round_trip(&r, 5, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512 - 4, 4096, NULL, NULL,
			    0).type, DM_USER_RESP_ERROR);
	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	rig_close(&r);
	free(p);
}

/* A module without batching (a socket answers ENOTTY, as it does). */
TEST(batching_falls_back_on_enotty)
{
	struct rig r;
	struct rig_cfg cfg = { .batch = false };
	unsigned char got[4096];

	fake_ioctl_calls = 0;
	rig_open(&r, &cfg);
	CHECK_EQ(fake_ioctl_calls, 1);	/* asked, through the real ioctl */
	CHECK(!dmu_channel_batching(r.ch));
	rig_serve(&r);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL, got, 4096).type,
		 DM_USER_RESP_SUCCESS);
	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	rig_close(&r);
}

TEST(batching_off_never_asks)
{
	struct rig r;
	struct rig_cfg cfg = { .batch = true, .batch_mode = DMU_BATCH_OFF };

	fake_ioctl_calls = 0;
	rig_open(&r, &cfg);
	CHECK_EQ(fake_ioctl_calls, 0);
	CHECK(!dmu_channel_batching(r.ch));
	rig_close(&r);
}

/* Without batching a read() must bring one request: two in one is a protocol error. */
TEST(blocking_protocol_error_breaks_the_stream)
{
	struct rig r;
	struct rig_cfg cfg = { 0 };
	struct req q[] = {
		{ 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
		{ 2, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL },
	};

	rig_open(&r, &cfg);
	rig_serve(&r);
	send_batch(r.k, q, 2);
	CHECK_EQ(rig_join(&r), -EPROTO);
	rig_close(&r);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A stop wakes an idle loop without a signal: the channel's, then the device's. */
TEST(stop_wakes_an_idle_loop)
{
	struct rig r;
	struct rig_cfg cfg = { 0 };
	struct rig r2;
	double t0;

	rig_open(&r, &cfg);
	rig_serve(&r);
	CHECK(no_record(r.k, 100));	/* idle, blocked in poll() */
	t0 = now_s();
	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	CHECK(now_s() - t0 < 2);

	/* two channels of one device, both stopped by dmu_device_stop */
	memset(&r2, 0, sizeof(r2));
	r2.dev = r.dev;
	r2.mem = r.mem;
	r2.ch = rig_open_channel(&r2, &cfg, &r2.k);
	struct dmu_channel *first = r.ch;
	int first_k = r.k;
	r.ch = rig_open_channel(&r, &cfg, &r.k);
	CHECK_EQ(dmu_channel_close(first), 0);
	close(first_k);
	rig_serve(&r);
	rig_serve(&r2);
	CHECK(no_record(r.k, 100));
	dmu_device_stop(r.dev);
	CHECK_EQ(rig_join(&r), 0);
	CHECK_EQ(rig_join(&r2), 0);
	CHECK_EQ(dmu_device_free(r.dev), -EBUSY);	/* channels still open */
	CHECK_EQ(dmu_channel_close(r2.ch), 0);
	close(r2.k);
	rig_close(&r);
}

/* The serving thread's voluntary context switches: each is a sleep. */
static unsigned long voluntary_switches(int tid)
{
	char path[64], line[128];
	unsigned long v = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	f = fopen(path, "r");
	REQUIRE(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "voluntary_ctxt_switches: %lu", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* The scheduler state of thread tid of this process ('R', 'S', ...). */
static char thread_state(int tid)
{
	char path[64], line[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	f = fopen(path, "r");
	REQUIRE(f);
	p = fgets(line, sizeof(line), f);
	fclose(f);
	REQUIRE(p);
	p = strrchr(line, ')');	/* after "tid (comm)" */
	REQUIRE(p && p[1] == ' ');
	return p[2];
}

/*
 * Busy polling (poll_us): after serving, the loop keeps reading without
 * sleeping for poll_us, so a request that comes within it is taken without
 * a wake-up; once poll_us has passed with nothing, it sleeps in poll().
 * Without it (0), the same gap is a sleep.  A sleep is a voluntary context
 * switch of the serving thread; spinning reads of a non-blocking socket
 * make none.
 */
TEST(blocking_poll_us_takes_a_request_within_it_without_sleeping)
{
	struct rig r;
	struct rig_cfg cfg = { .poll_us = 300000 };
	unsigned char *p = pattern(4096, 3), got[4096];
	unsigned long before, after;
	double t0;
	int tid;

	rig_open(&r, &cfg);
	rig_serve(&r);
	round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 8, 4096, p, NULL, 0);
	tid = atomic_load(&r.mem->tid);
	before = voluntary_switches(tid);
	sleep_ms(30);	/* the gap, well within poll_us */
	struct dm_user_message m = round_trip(&r, 2, DM_USER_REQ_MAP_READ, 0, 8, 4096, NULL,
					      got, sizeof(got));
	after = voluntary_switches(tid);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(got, p, 4096) == 0);
	CHECK_EQ(after, before);	/* it never slept: the read found the request */

	/* Past poll_us with nothing to read, it sleeps, and not before. */
	t0 = now_s();
	while (voluntary_switches(tid) == after && now_s() - t0 < 5)
		sleep_ms(5);
	CHECK(voluntary_switches(tid) > after);
	CHECK(now_s() - t0 >= 0.25);
	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	rig_close(&r);

	/*
	 * Without busy polling the worker sleeps as soon as it has answered:
	 * within the same gap, where the polling one did not for 250 ms.  Seen
	 * in its state: its switch count may have risen before this reads it
	 * (a loaded machine), and then a count taken after the gap says nothing.
	 */
	cfg.poll_us = 0;
	rig_open(&r, &cfg);
	rig_serve(&r);
	round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 8, 4096, p, NULL, 0);
	tid = atomic_load(&r.mem->tid);
	t0 = now_s();
	while (thread_state(tid) != 'S' && now_s() - t0 < 5)
		sleep_ms(1);
	CHECK_EQ(thread_state(tid), 'S');
	CHECK(now_s() - t0 < 0.25);
	m = round_trip(&r, 2, DM_USER_REQ_MAP_READ, 0, 8, 4096, NULL, got, sizeof(got));
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(got, p, 4096) == 0);
	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	rig_close(&r);

	/* More than a second is refused. */
	struct dmu_channel *ch = NULL;
	int sv[2];
	DMU_OPTS(dmu_channel_opts, o, .poll_us = 1000001, .no_io_flusher = true);

	rig_open(&r, &(struct rig_cfg){ 0 });
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	CHECK_EQ(dmu_channel_open_fd(r.dev, sv[1], &o, &ch), -EINVAL);
	CHECK(ch == NULL);
	close(sv[0]);
	rig_close(&r);
	free(p);
}

/* The kernel's end closes (the target went): the loop ends with -ENOTBLK. */
/* ---- splicing: dmu_ops.locate ---- */

static int disk_fd = -1;	/* the device, a page into this file */
static int locate_result;	/* what locate returns besides the place */

static int locate_disk(void *arg, bool write, uint64_t offset, uint64_t len, int *fd,
		       uint64_t *fd_offset)
{
	(void)arg;
	(void)write;
	(void)len;
	*fd = disk_fd;
	*fd_offset = offset + 4096;
	return locate_result;
}

static struct dmu_ops locate_ops(void)
{
	struct dmu_ops o = mem_ops;

	o.locate = locate_disk;
	return o;
}

static bool logged(const struct mem *m, char c)
{
	return memchr(m->log, c, m->nlog) != NULL;
}

/*
 * With locate, large requests move by splice(): a READ of 64 KiB or more
 * comes from the descriptor, and after a round with a WRITE that large the
 * next requests are taken by splice, a WRITE's payload going to the
 * descriptor; neither the read nor the write callback is called for them.
 * The first large WRITE, taken by read(), and a small READ go through the
 * callbacks (the memory backend), as without locate.  The fake kernel's
 * socket splices a record at a time, as the module splices whole requests.
 */
TEST(blocking_locate_splices_large_payloads_to_and_from_the_descriptor)
{
	enum { BIG = 64 * 1024 };
	struct rig r;
	struct rig_cfg cfg = { .buffer = 2 * BIG };
	struct dmu_ops ops = locate_ops();
	unsigned char *p1 = pattern(BIG, 3), *p2 = pattern(BIG, 4), *got = malloc(BIG);
	unsigned char *file = malloc(BIG);
	unsigned w, rd;

	REQUIRE(got && file);
	disk_fd = memfd_create("disk", MFD_CLOEXEC);
	REQUIRE(disk_fd >= 0 && ftruncate(disk_fd, DEV_SIZE + 4096) == 0);
	locate_result = 0;
	rig_open(&r, &cfg);
	r.ops = &ops;
	rig_serve(&r);

	/* Read() takes it: through the callback, into memory. */
	struct dm_user_message m = round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, BIG, p1,
					      NULL, 0);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(r.mem->data, p1, BIG) == 0);
	w = (unsigned)(memchr(r.mem->log, 'W', r.mem->nlog) != NULL);
	CHECK_EQ(w, 1);

	/* The next round is spliced: the payload lands in the file. */
	unsigned nlog = r.mem->nlog;

	m = round_trip(&r, 2, DM_USER_REQ_MAP_WRITE, 0, 256, BIG, p2, NULL, 0);
	CHECK_EQ(m.seq, 2);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	REQUIRE_EQ(pread(disk_fd, file, BIG, 4096 + 256 * 512), (ssize_t)BIG);
	CHECK(memcmp(file, p2, BIG) == 0);
	CHECK_EQ(r.mem->nlog, nlog);

	/* A large READ: from the file, not memory (which has p1 there). */
	m = round_trip(&r, 3, DM_USER_REQ_MAP_READ, 0, 256, BIG, NULL, got, BIG);
	CHECK_EQ(m.seq, 3);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(got, p2, BIG) == 0);
	CHECK_EQ(r.mem->nlog, nlog);

	/* A small READ goes through the callback. */
	m = round_trip(&r, 4, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL, got, 4096);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(got, p1, 4096) == 0);
	rd = (unsigned)(memchr(r.mem->log + nlog, 'R', r.mem->nlog - nlog) != NULL);
	CHECK_EQ(rd, 1);

	/* A flush is served as ever. */
	m = round_trip(&r, 5, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL, NULL, 0);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK(logged(r.mem, 'F'));

	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	rig_close(&r);
	close(disk_fd);
	free(p1);
	free(p2);
	free(got);
	free(file);
}

/*
 * locate's -EOPNOTSUPP: the request goes through the buffer and the
 * callbacks.  Another error fails the request (ERROR), and a WRITE's
 * payload still leaves the pipe: the next request is read whole.  So does
 * a descriptor the splice cannot write (read-only: EBADF).  Each spliced
 * round follows a round with a large WRITE (taken by read(), which does
 * not ask locate).
 */
TEST(blocking_locate_falls_back_or_fails_and_keeps_the_stream)
{
	enum { BIG = 64 * 1024 };
	struct rig r;
	struct rig_cfg cfg = { .buffer = 2 * BIG };
	struct dmu_ops ops = locate_ops();
	unsigned char *p = pattern(BIG, 5), *got = malloc(BIG);
	struct dm_user_message m;
	char path[64];
	int rw;

	REQUIRE(got);
	disk_fd = memfd_create("disk", MFD_CLOEXEC);
	REQUIRE(disk_fd >= 0 && ftruncate(disk_fd, DEV_SIZE + 4096) == 0);
	REQUIRE_EQ(pwrite(disk_fd, p, BIG, 4096 + 8 * 512), (ssize_t)BIG);
	rig_open(&r, &cfg);
	r.ops = &ops;
	rig_serve(&r);

	locate_result = -EOPNOTSUPP;
	m = round_trip(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 512, BIG, p, NULL, 0);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	r.mem->nlog = 0;
	m = round_trip(&r, 2, DM_USER_REQ_MAP_WRITE, 0, 8, BIG, p, NULL, 0);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(r.mem->data + 8 * 512, p, BIG) == 0);
	m = round_trip(&r, 3, DM_USER_REQ_MAP_READ, 0, 8, BIG, NULL, got, BIG);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(got, p, BIG) == 0);
	CHECK(logged(r.mem, 'W') && logged(r.mem, 'R'));

	m = round_trip(&r, 4, DM_USER_REQ_MAP_WRITE, 0, 512, BIG, p, NULL, 0);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	locate_result = -EIO;
	m = round_trip(&r, 5, DM_USER_REQ_MAP_WRITE, 0, 8, BIG, p, NULL, 0);
	CHECK_EQ(m.seq, 5);
	CHECK_EQ(m.type, DM_USER_RESP_ERROR);
	m = round_trip(&r, 6, DM_USER_REQ_MAP_READ, 0, 8, BIG, NULL, NULL, 0);
	CHECK_EQ(m.seq, 6);
	CHECK_EQ(m.type, DM_USER_RESP_ERROR);

	locate_result = 0;
	m = round_trip(&r, 7, DM_USER_REQ_MAP_WRITE, 0, 512, BIG, p, NULL, 0);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	rw = disk_fd;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", rw);
	disk_fd = open(path, O_RDONLY | O_CLOEXEC);
	REQUIRE(disk_fd >= 0);
	m = round_trip(&r, 8, DM_USER_REQ_MAP_WRITE, 0, 8, BIG, p, NULL, 0);
	CHECK_EQ(m.seq, 8);
	CHECK_EQ(m.type, DM_USER_RESP_ERROR);
	/* The stream is whole: the next request is served (from the file). */
	memset(got, 0, BIG);
	m = round_trip(&r, 9, DM_USER_REQ_MAP_READ, 0, 8, BIG, NULL, got, BIG);
	CHECK_EQ(m.seq, 9);
	CHECK_EQ(m.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(got, p, BIG) == 0);

	dmu_channel_stop(r.ch);
	CHECK_EQ(rig_join(&r), 0);
	rig_close(&r);
	close(disk_fd);
	close(rw);
	free(p);
	free(got);
}

TEST(blocking_target_gone)
{
	struct rig r;
	struct rig_cfg cfg = { 0 };

	rig_open(&r, &cfg);
	rig_serve(&r);
	shutdown(r.k, SHUT_RDWR);
	CHECK_EQ(rig_join(&r), -ENOTBLK);
	rig_close(&r);
}

/* ---- probe_size: a device that grew behind the handle's back ------------ */

struct grow {
	struct dmu_channel *ch;
	struct mem *mem;
	uint64_t backend_size;	/* what probe_size says */
	int probe_result;
	unsigned probes;
	int result;
};

static int grow_probe(void *arg, uint64_t *size)
{
	struct grow *g = arg;

	g->probes++;
	*size = g->backend_size;
	return g->probe_result;
}

static int grow_read(void *arg, void *buf, size_t len, uint64_t off)
{
	return mem_ops.read(((struct grow *)arg)->mem, buf, len, off);
}

static void *serve_grow(void *arg)
{
	static const struct dmu_ops ops = {
		.sz = sizeof(ops), .read = grow_read, .probe_size = grow_probe,
	};
	struct grow *g = arg;

	g->result = dmu_channel_run(g->ch, &ops, g);
	return NULL;
}

/*
 * A request past the size the handle knows asks probe_size, once per
 * such request: no growth (or a failed probe) and it fails as before;
 * growth raises the size (rounded down to a sector, never lowered) and
 * the request is served.  Requests within the size never ask.
 */
TEST(blocking_probe_size_serves_a_device_that_grew)
{
	DMU_OPTS(dmu_channel_opts, o, .buffer_size = CAP, .no_io_flusher = true);
	struct grow g = { .backend_size = DEV_SIZE / 2 };
	struct rig r = { 0 };
	pthread_t t;
	int sv[2];

	r.mem = calloc(1, sizeof(*r.mem));
	REQUIRE(r.mem);
	g.mem = r.mem;
	REQUIRE(dmu_device_new("grow0", DEV_SIZE / 2, NULL, &r.dev) == 0);
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	fake_ioctl = false;
	REQUIRE(dmu_channel_open_fd(r.dev, sv[1], &o, &r.ch) == 0);
	r.k = sv[0];
	g.ch = r.ch;
	memset(r.mem->data + DEV_SIZE / 2, 0x77, 4096);
	REQUIRE(pthread_create(&t, NULL, serve_grow, &g) == 0);

	uint64_t past = DEV_SIZE / 2 / 512;
	unsigned char got[4096];

	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL, got, sizeof(got)).type,
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(g.probes, 0);
	CHECK_EQ(round_trip(&r, 2, DM_USER_REQ_MAP_READ, 0, past, 4096, NULL, NULL, 0).type,
		 DM_USER_RESP_ERROR);
	CHECK_EQ(g.probes, 1);
	g.backend_size = DEV_SIZE;
	g.probe_result = -EIO;
	CHECK_EQ(round_trip(&r, 3, DM_USER_REQ_MAP_READ, 0, past, 4096, NULL, NULL, 0).type,
		 DM_USER_RESP_ERROR);
	CHECK_EQ(g.probes, 2);
	CHECK_EQ(dmu_device_size(r.dev), DEV_SIZE / 2);
	g.probe_result = 0;
	g.backend_size = DEV_SIZE + 100;	/* not a whole sector more */
	CHECK_EQ(round_trip(&r, 4, DM_USER_REQ_MAP_READ, 0, past, 4096, NULL, got, sizeof(got)).type,
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(got[0], 0x77);
	CHECK_EQ(g.probes, 3);
	CHECK_EQ(dmu_device_size(r.dev), DEV_SIZE);
	CHECK_EQ(round_trip(&r, 5, DM_USER_REQ_MAP_READ, 0, past, 4096, NULL, got, sizeof(got)).type,
		 DM_USER_RESP_SUCCESS);
	CHECK_EQ(g.probes, 3);
	g.backend_size = 4096;			/* a smaller answer never lowers it */
	CHECK_EQ(round_trip(&r, 6, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512, 512, NULL, NULL, 0).type,
		 DM_USER_RESP_ERROR);
	CHECK_EQ(g.probes, 4);
	CHECK_EQ(dmu_device_size(r.dev), DEV_SIZE);

	dmu_channel_stop(r.ch);
	pthread_join(t, NULL);
	CHECK_EQ(g.result, 0);
	rig_close(&r);
}

/* dmu_device_table: the parameters as dmsetup table prints them. */
TEST(device_table_formats_the_parameters)
{
	DMU_OPTS(dmu_device_opts, o, .control_name = "ctl0", .queue_depth = 32,
		 .recovery_ms = 10000);
	struct dmu_device *dev;
	char buf[128], small[8];

	REQUIRE(dmu_device_new("table0", 1 << 20, NULL, &dev) == 0);
	CHECK_EQ(dmu_device_table(dev, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "0 2048 table0");
	CHECK_EQ(dmu_device_free(dev), 0);

	REQUIRE(dmu_device_new("table1", 1 << 20, &o, &dev) == 0);
	CHECK_EQ(dmu_device_table(dev, buf, sizeof(buf)), 0);
	CHECK_STR(buf, "0 2048 ctl0 4 queue_depth 32 recovery_ms 10000");
	CHECK_EQ(dmu_device_table(dev, small, sizeof(small)), -ENOSPC);
	CHECK_EQ(dmu_device_free(dev), 0);
}
