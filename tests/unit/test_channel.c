// SPDX-License-Identifier: GPL-2.0
/*
 * The protocol, against a fake kernel: a SOCK_SEQPACKET socketpair.  Like
 * the control device, a seqpacket socket never merges two writes into one
 * read, so each record the test sends is what one kernel read() would
 * return: "header + payload" in one record, or the header and then the
 * payload in pieces; with batching, several requests back to back.  (A
 * record is never split either, so pieces must not straddle the channel's
 * buffer: the tests keep them to divisors of it.)  The daemon's writev()
 * of several replies arrives as one record, so the records counted are
 * its write calls.
 *
 * A socket answers ENOTTY to DM_USER_IOC_SET_FLAGS, as a kernel without
 * batching does; the tests that batch play the kernel's side of the ioctl
 * with fake_set_flags().
 */
#include <errno.h>
#include <linux/sockios.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "channel.h"
#include "fake_backend.h"
#include "test.h"

#define DEV_SIZE (1024 * 1024)
#define CAP (16 * 1024)

struct rig {
	int kernel;		/* the test's end: plays the kernel */
	struct fake_backend fb;
	struct dmu_metrics metrics;
	struct dmu_channel ch;
	pthread_t thread;
	enum dmu_serve_result result;
};

/* The kernel's side of DM_USER_IOC_SET_FLAGS, as a test wants it. */
static int flags_result;	/* what it returns: 0 or -errno */
static unsigned flags_calls;
static uint64_t flags_asked;

static int fake_set_flags(int fd, uint64_t flags)
{
	(void)fd;
	flags_calls++;
	flags_asked = flags;
	return flags_result;
}

struct rig_opts {
	bool read_only;
	unsigned delay_us;
	bool batch;
	int (*set_flags)(int fd, uint64_t flags);	/* NULL: the real ioctl */
	int sock_type;					/* 0: SOCK_SEQPACKET */
	size_t mem_align;				/* the backend's */
};

static void rig_init_opts(struct rig *r, const struct rig_opts *o)
{
	int sv[2];

	REQUIRE(socketpair(AF_UNIX, o->sock_type ? o->sock_type : SOCK_SEQPACKET, 0, sv) == 0);
	r->kernel = sv[0];
	fake_backend_init(&r->fb, DEV_SIZE);
	r->fb.base.mem_align = o->mem_align;
	REQUIRE(dmu_metrics_init(&r->metrics, 1) == 0);
	struct dmu_channel_config cfg = {
		.backend = &r->fb.base,
		.metrics = &r->metrics.thread[0],
		.capacity = CAP,
		.read_only = o->read_only,
		.batch = o->batch,
		.inject_delay_us = o->delay_us,
		.set_flags = o->set_flags,
	};
	REQUIRE(dmu_channel_init(&r->ch, sv[1], &cfg) == 0);
}

static void rig_init_cfg(struct rig *r, bool read_only, unsigned delay_us)
{
	struct rig_opts o = { .read_only = read_only, .delay_us = delay_us };

	rig_init_opts(r, &o);
}

static void rig_init(struct rig *r)
{
	rig_init_cfg(r, false, 0);
}

/* A channel the kernel lets batch. */
static void rig_init_batch(struct rig *r)
{
	struct rig_opts o = { .batch = true, .set_flags = fake_set_flags };

	flags_result = 0;
	rig_init_opts(r, &o);
}

static void send_record(struct rig *r, const void *buf, size_t len)
{
	REQUIRE(send(r->kernel, buf, len, 0) == (ssize_t)len);
}

/*
 * Send a request.  piece == 0: header and payload in one record; otherwise
 * the header alone, then the payload in records of `piece` bytes.
 */
static void send_request(struct rig *r, uint64_t seq, uint64_t type, uint64_t flags,
			 uint64_t sector, uint64_t len, const void *payload, size_t piece)
{
	size_t plen = payload ? (size_t)len : 0;
	unsigned char *buf = malloc(DMU_MSG_SIZE + plen);
	struct dm_user_message m = { seq, type, flags, sector, len };

	memcpy(buf, &m, DMU_MSG_SIZE);
	if (plen)
		memcpy(buf + DMU_MSG_SIZE, payload, plen);
	if (!piece) {
		send_record(r, buf, DMU_MSG_SIZE + plen);
	} else {
		send_record(r, buf, DMU_MSG_SIZE);
		for (size_t off = 0; off < plen; off += piece)
			send_record(r, buf + DMU_MSG_SIZE + off,
				    plen - off < piece ? plen - off : piece);
	}
	free(buf);
}

/* Read a reply: the header, and data_len bytes of data after it. */
static void recv_reply(struct rig *r, struct dm_user_message *hdr, void *data,
		       size_t data_len, unsigned *records)
{
	size_t want = DMU_MSG_SIZE + data_len, got = 0;
	unsigned char *buf = malloc(want + 1);

	*records = 0;
	while (got < want) {
		ssize_t n = recv(r->kernel, buf + got, want + 1 - got, 0);

		REQUIRE(n > 0);
		got += (size_t)n;
		(*records)++;
	}
	REQUIRE_EQ(got, want);
	memcpy(hdr, buf, DMU_MSG_SIZE);
	if (data_len)
		memcpy(data, buf + DMU_MSG_SIZE, data_len);
	free(buf);
}

static void *serve_thread(void *arg)
{
	struct rig *r = arg;

	r->result = dmu_channel_serve(&r->ch);
	return NULL;
}

/* Serve one request on a thread: large transfers need both ends running. */
static void serve_async(struct rig *r)
{
	REQUIRE(pthread_create(&r->thread, NULL, serve_thread, r) == 0);
}

static enum dmu_serve_result serve_wait(struct rig *r)
{
	pthread_join(r->thread, NULL);
	return r->result;
}

/* Send a header-only request, serve it, read the header-only reply. */
static struct dm_user_message round_trip(struct rig *r, uint64_t seq, uint64_t type,
					 uint64_t flags, uint64_t sector, uint64_t len)
{
	struct dm_user_message reply;
	unsigned records;

	send_request(r, seq, type, flags, sector, len, NULL, 0);
	CHECK_EQ(dmu_channel_serve(&r->ch), DMU_CH_OK);
	recv_reply(r, &reply, NULL, 0, &records);
	return reply;
}

static unsigned char *pattern(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len);

	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 13 + seed + i / 4096);
	return p;
}

static const struct dmu_op_counters *op_metrics(struct rig *r, enum dmu_op op)
{
	return &r->metrics.thread[0].op[op];
}

TEST(channel_read_returns_data_and_echoes_header)
{
	struct rig r;
	struct dm_user_message reply;
	unsigned char data[4096];
	unsigned records;

	rig_init(&r);
	send_request(&r, 0xdeadbeefcafe0001ull, DM_USER_REQ_MAP_READ,
		     DM_USER_REQ_MAP_FLAG_SYNC, 8, sizeof(data), NULL, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	recv_reply(&r, &reply, data, sizeof(data), &records);

	CHECK_EQ(reply.seq, 0xdeadbeefcafe0001ull);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(reply.flags, DM_USER_REQ_MAP_FLAG_SYNC);
	CHECK_EQ(reply.sector, 8);
	CHECK_EQ(reply.len, sizeof(data));
	CHECK(memcmp(data, r.fb.mem + 8 * 512, sizeof(data)) == 0);
	CHECK_EQ(records, 1);	/* header and data leave in one write() */
	CHECK_EQ(r.fb.calls[F_READ], 1);
	CHECK_EQ(r.fb.log[0].off, 4096);
	CHECK_EQ(r.fb.log[0].len, 4096);
}

TEST(channel_write_in_one_read)
{
	struct rig r;
	unsigned char *p = pattern(8192, 1);

	rig_init(&r);
	send_request(&r, 42, DM_USER_REQ_MAP_WRITE, 0, 16, 8192, p, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);

	struct dm_user_message reply;
	unsigned records;
	recv_reply(&r, &reply, NULL, 0, &records);
	CHECK_EQ(reply.seq, 42);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(r.fb.mem + 16 * 512, p, 8192) == 0);
	CHECK_EQ(r.fb.calls[F_WRITE], 1);
	CHECK_EQ(r.fb.calls[F_FLUSH], 0);
	free(p);
}

TEST(channel_write_header_then_payload_in_pieces)
{
	struct rig r;
	unsigned char *p = pattern(8192, 2);

	rig_init(&r);
	send_request(&r, 43, DM_USER_REQ_MAP_WRITE, 0, 3, 8192, p, 512);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);

	struct dm_user_message reply;
	unsigned records;
	recv_reply(&r, &reply, NULL, 0, &records);
	CHECK_EQ(reply.seq, 43);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(r.fb.mem + 3 * 512, p, 8192) == 0);
	free(p);
}

TEST(channel_write_larger_than_buffer)
{
	struct rig r;
	size_t len = 4 * CAP + 4096;
	unsigned char *p = pattern(len, 3);

	rig_init(&r);
	serve_async(&r);
	send_request(&r, 44, DM_USER_REQ_MAP_WRITE, 0, 0, len, p, 4096);
	CHECK_EQ(serve_wait(&r), DMU_CH_OK);

	struct dm_user_message reply;
	unsigned records;
	recv_reply(&r, &reply, NULL, 0, &records);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(r.fb.mem, p, len) == 0);
	CHECK_EQ(r.fb.calls[F_WRITE], 5);	/* a buffer at a time */
	CHECK_EQ(op_metrics(&r, DMU_OP_WRITE)->bytes, len);
	free(p);
}

TEST(channel_read_larger_than_buffer)
{
	struct rig r;
	size_t len = 2 * CAP + 8192;
	unsigned char *data = malloc(len);
	struct dm_user_message reply;
	unsigned records;

	rig_init(&r);
	serve_async(&r);
	send_request(&r, 45, DM_USER_REQ_MAP_READ, 0, 10, len, NULL, 0);
	recv_reply(&r, &reply, data, len, &records);
	CHECK_EQ(serve_wait(&r), DMU_CH_OK);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(reply.len, len);
	CHECK(memcmp(data, r.fb.mem + 10 * 512, len) == 0);
	CHECK_EQ(records, 3);
	free(data);
}

TEST(channel_flush_calls_backend_flush)
{
	struct rig r;

	rig_init(&r);
	struct dm_user_message reply = round_trip(&r, 7, DM_USER_REQ_MAP_FLUSH, 0, 0, 0);
	CHECK_EQ(reply.seq, 7);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(r.fb.calls[F_FLUSH], 1);
	CHECK_EQ(r.metrics.thread[0].backend_flushes, 1);
	CHECK_EQ(op_metrics(&r, DMU_OP_FLUSH)->requests, 1);
}

TEST(channel_fua_write_flushes_after_writing)
{
	struct rig r;
	unsigned char *p = pattern(4096, 4);

	rig_init(&r);
	send_request(&r, 8, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 0, 4096, p, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	REQUIRE_EQ(r.fb.nlog, 2);
	CHECK_EQ(r.fb.log[0].op, F_WRITE);
	CHECK_EQ(r.fb.log[1].op, F_FLUSH);
	free(p);
}

TEST(channel_preflush_write_flushes_before_writing)
{
	struct rig r;
	unsigned char *p = pattern(4096, 5);

	rig_init(&r);
	send_request(&r, 9, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_PREFLUSH, 0, 4096, p, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	REQUIRE_EQ(r.fb.nlog, 2);
	CHECK_EQ(r.fb.log[0].op, F_FLUSH);
	CHECK_EQ(r.fb.log[1].op, F_WRITE);
	free(p);
}

/* dm sends an empty flush as a zero-length WRITE with PREFLUSH. */
TEST(channel_empty_preflush_write_only_flushes)
{
	struct rig r;

	rig_init(&r);
	struct dm_user_message reply = round_trip(&r, 10, DM_USER_REQ_MAP_WRITE,
						  DM_USER_REQ_MAP_FLAG_PREFLUSH, 0, 0);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(r.fb.calls[F_FLUSH], 1);
	CHECK_EQ(r.fb.calls[F_WRITE], 0);
}

TEST(channel_discard_punches_the_range)
{
	struct rig r;

	rig_init(&r);
	struct dm_user_message reply = round_trip(&r, 11, DM_USER_REQ_MAP_DISCARD, 0, 64, 65536);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	REQUIRE_EQ(r.fb.calls[F_DISCARD], 1);
	CHECK_EQ(r.fb.log[0].off, 64 * 512);
	CHECK_EQ(r.fb.log[0].len, 65536);
	CHECK_EQ(op_metrics(&r, DMU_OP_DISCARD)->bytes, 65536);
}

TEST(channel_write_zeroes_honours_nounmap)
{
	struct rig r;

	rig_init(&r);
	struct dm_user_message reply = round_trip(&r, 12, DM_USER_REQ_MAP_WRITE_ZEROES, 0, 0, 4096);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	reply = round_trip(&r, 13, DM_USER_REQ_MAP_WRITE_ZEROES,
			   DM_USER_REQ_MAP_FLAG_NOUNMAP, 8, 4096);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	REQUIRE_EQ(r.fb.calls[F_WRITE_ZEROES], 2);
	CHECK(r.fb.log[0].may_unmap);
	CHECK(!r.fb.log[1].may_unmap);
}

TEST(channel_secure_erase_zeroes)
{
	struct rig r;

	rig_init(&r);
	struct dm_user_message reply = round_trip(&r, 14, DM_USER_REQ_MAP_SECURE_ERASE, 0, 2, 1024);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(r.fb.calls[F_SECURE_ERASE], 1);
	static const unsigned char zeroes[1024];
	CHECK(memcmp(r.fb.mem + 1024, zeroes, 1024) == 0);
}

TEST(channel_unknown_ops_are_unsupported)
{
	static const uint64_t types[] = {
		DM_USER_REQ_MAP_WRITE_SAME, DM_USER_REQ_MAP_ZONE_OPEN,
		DM_USER_REQ_MAP_ZONE_CLOSE, DM_USER_REQ_MAP_ZONE_FINISH,
		DM_USER_REQ_MAP_ZONE_APPEND, DM_USER_REQ_MAP_ZONE_RESET,
		DM_USER_REQ_MAP_ZONE_RESET_ALL, 99, UINT64_MAX,
	};
	struct rig r;

	rig_init(&r);
	for (unsigned i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		struct dm_user_message reply = round_trip(&r, 100 + i, types[i], 0, 0, 4096);

		CHECK_EQ(reply.seq, 100 + i);
		CHECK_EQ(reply.type, DM_USER_RESP_UNSUPPORTED);
	}
	CHECK_EQ(r.fb.nlog, 0);
	CHECK_EQ(op_metrics(&r, DMU_OP_OTHER)->requests, 9);
	CHECK_EQ(op_metrics(&r, DMU_OP_OTHER)->errors, 0);
	CHECK_EQ(r.metrics.thread[0].replies[DM_USER_RESP_UNSUPPORTED], 9);
}

TEST(channel_backend_error_fails_that_request_only)
{
	struct rig r;
	unsigned char *p = pattern(4096, 6);
	struct dm_user_message reply;
	unsigned char data[4096];
	unsigned records;

	rig_init(&r);
	fake_backend_fail_next(&r.fb, F_WRITE, -EIO);
	send_request(&r, 20, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	recv_reply(&r, &reply, NULL, 0, &records);
	CHECK_EQ(reply.seq, 20);
	CHECK_EQ(reply.type, DM_USER_RESP_ERROR);

	/* The channel goes on serving. */
	send_request(&r, 21, DM_USER_REQ_MAP_READ, 0, 0, sizeof(data), NULL, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	recv_reply(&r, &reply, data, sizeof(data), &records);
	CHECK_EQ(reply.seq, 21);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);

	CHECK_EQ(op_metrics(&r, DMU_OP_WRITE)->errors, 1);
	CHECK_EQ(op_metrics(&r, DMU_OP_WRITE)->bytes, 0);
	CHECK_EQ(op_metrics(&r, DMU_OP_READ)->errors, 0);
	free(p);
}

/* ENOSPC part way through a large write: the rest of the payload is still
 * consumed, so the next request is read from the right place. */
TEST(channel_enospc_mid_write_drains_payload)
{
	struct rig r;
	size_t len = 3 * CAP;
	unsigned char *p = pattern(len, 7);

	rig_init(&r);
	fake_backend_fail_next(&r.fb, F_WRITE, -ENOSPC);
	serve_async(&r);
	send_request(&r, 30, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 0, len, p, 4096);
	CHECK_EQ(serve_wait(&r), DMU_CH_OK);

	struct dm_user_message reply;
	unsigned records;
	recv_reply(&r, &reply, NULL, 0, &records);
	/* ENOSPC has its own status, so the writer sees ENOSPC, not EIO. */
	CHECK_EQ(reply.type, DM_USER_RESP_NOSPC);
	CHECK_EQ(r.metrics.thread[0].replies[DM_USER_RESP_NOSPC], 1);
	CHECK_EQ(op_metrics(&r, DMU_OP_WRITE)->errors, 1);
	CHECK_EQ(r.fb.calls[F_WRITE], 1);	/* no more writes after the failure */
	CHECK_EQ(r.fb.calls[F_FLUSH], 0);	/* no FUA flush for a failed write */

	reply = round_trip(&r, 31, DM_USER_REQ_MAP_FLUSH, 0, 0, 0);
	CHECK_EQ(reply.seq, 31);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	free(p);
}

TEST(channel_read_error_sends_no_data)
{
	struct rig r;

	rig_init(&r);
	fake_backend_fail_next(&r.fb, F_READ, -EIO);
	struct dm_user_message reply = round_trip(&r, 40, DM_USER_REQ_MAP_READ, 0, 0, 4096);
	CHECK_EQ(reply.seq, 40);
	CHECK_EQ(reply.type, DM_USER_RESP_ERROR);
	CHECK_EQ(op_metrics(&r, DMU_OP_READ)->errors, 1);
}

TEST(channel_failed_flush_is_an_error)
{
	struct rig r;

	rig_init(&r);
	fake_backend_fail_next(&r.fb, F_FLUSH, -EIO);
	struct dm_user_message reply = round_trip(&r, 41, DM_USER_REQ_MAP_FLUSH, 0, 0, 0);
	CHECK_EQ(reply.type, DM_USER_RESP_ERROR);
}

TEST(channel_out_of_range_is_an_error)
{
	struct rig r;
	unsigned char *p = pattern(8192, 8);

	rig_init(&r);
	struct dm_user_message reply = round_trip(&r, 50, DM_USER_REQ_MAP_READ, 0,
						  DEV_SIZE / 512 - 1, 1024);
	CHECK_EQ(reply.type, DM_USER_RESP_ERROR);
	reply = round_trip(&r, 51, DM_USER_REQ_MAP_DISCARD, 0, UINT64_MAX / 256, 512);
	CHECK_EQ(reply.type, DM_USER_RESP_ERROR);

	unsigned records;
	send_request(&r, 52, DM_USER_REQ_MAP_WRITE, 0, DEV_SIZE / 512 - 8, 8192, p, 1024);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	recv_reply(&r, &reply, NULL, 0, &records);
	CHECK_EQ(reply.type, DM_USER_RESP_ERROR);
	CHECK_EQ(r.fb.nlog, 0);

	/* The last two sectors are in range. */
	unsigned char data[1024];
	send_request(&r, 53, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512 - 2, sizeof(data), NULL, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	recv_reply(&r, &reply, data, sizeof(data), &records);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	free(p);
}

TEST(channel_out_of_range_probes_the_size_once)
{
	struct rig r;

	rig_init(&r);
	struct dm_user_message reply = round_trip(&r, 54, DM_USER_REQ_MAP_READ, 0,
						  DEV_SIZE / 512, 512);
	CHECK_EQ(reply.type, DM_USER_RESP_ERROR);
	CHECK_EQ(r.fb.probes, 1);	/* asked once; the storage has not grown */
	CHECK_EQ(r.fb.base.size, DEV_SIZE);

	/* In range: nobody asks. */
	reply = round_trip(&r, 55, DM_USER_REQ_MAP_FLUSH, 0, 0, 0);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	reply = round_trip(&r, 56, DM_USER_REQ_MAP_DISCARD, 0, 0, 4096);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(r.fb.probes, 1);
}

/* dmuserd --resize grew the device (and first its storage) after start-up. */
TEST(channel_serves_a_device_that_grew)
{
	struct rig r;
	unsigned char *p = pattern(4096, 10), back[4096];
	unsigned records;

	rig_init(&r);
	r.fb.base.size = DEV_SIZE / 2;		/* what the daemon started with */
	send_request(&r, 60, DM_USER_REQ_MAP_WRITE, 0, DEV_SIZE / 512 - 8, 4096, p, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	struct dm_user_message reply;
	recv_reply(&r, &reply, NULL, 0, &records);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(r.fb.probes, 1);
	CHECK_EQ(r.fb.base.size, DEV_SIZE);	/* raised, for every worker */

	send_request(&r, 61, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512 - 8, 4096, NULL, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	recv_reply(&r, &reply, back, sizeof(back), &records);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(back, p, sizeof(back)) == 0);
	CHECK_EQ(r.fb.probes, 1);		/* now in range: not asked again */

	/* Beyond the storage too: still an error, and the size stays. */
	reply = round_trip(&r, 62, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512, 512);
	CHECK_EQ(reply.type, DM_USER_RESP_ERROR);
	CHECK_EQ(r.fb.probes, 2);
	CHECK_EQ(r.fb.base.size, DEV_SIZE);

	/* A storage that shrank does not shrink the device. */
	r.fb.storage_size = DEV_SIZE / 4;
	reply = round_trip(&r, 63, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512, 512);
	CHECK_EQ(reply.type, DM_USER_RESP_ERROR);
	CHECK_EQ(r.fb.base.size, DEV_SIZE);
	free(p);
}

TEST(channel_read_only_refuses_changes)
{
	struct rig r;
	unsigned char *p = pattern(4096, 9);
	unsigned records;

	rig_init_cfg(&r, true, 0);
	struct dm_user_message reply;
	send_request(&r, 60, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, p, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	recv_reply(&r, &reply, NULL, 0, &records);
	CHECK_EQ(reply.type, DM_USER_RESP_ERROR);
	CHECK_EQ(round_trip(&r, 61, DM_USER_REQ_MAP_DISCARD, 0, 0, 4096).type, DM_USER_RESP_ERROR);
	CHECK_EQ(round_trip(&r, 62, DM_USER_REQ_MAP_WRITE_ZEROES, 0, 0, 4096).type, DM_USER_RESP_ERROR);
	CHECK_EQ(round_trip(&r, 63, DM_USER_REQ_MAP_SECURE_ERASE, 0, 0, 4096).type, DM_USER_RESP_ERROR);
	CHECK_EQ(round_trip(&r, 64, DM_USER_REQ_MAP_FLUSH, 0, 0, 0).type, DM_USER_RESP_SUCCESS);
	CHECK_EQ(r.fb.calls[F_WRITE] + r.fb.calls[F_DISCARD] + r.fb.calls[F_WRITE_ZEROES] +
		 r.fb.calls[F_SECURE_ERASE], 0);

	unsigned char data[512];
	send_request(&r, 65, DM_USER_REQ_MAP_READ, 0, 0, sizeof(data), NULL, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	recv_reply(&r, &reply, data, sizeof(data), &records);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
	free(p);
}

TEST(channel_payload_after_a_read_request_breaks_the_channel)
{
	struct rig r;
	unsigned char junk[512] = { 0 };

	rig_init(&r);
	send_request(&r, 70, DM_USER_REQ_MAP_READ, 0, 0, 512, junk, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_BROKEN);
	CHECK_EQ(r.ch.last_errno, EPROTO);
}

TEST(channel_eof_means_gone)
{
	struct rig r;

	rig_init(&r);
	close(r.kernel);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_GONE);
}

TEST(channel_closed_mid_request_is_broken)
{
	struct rig r;
	struct dm_user_message m = { 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096 };

	rig_init(&r);
	send_record(&r, &m, sizeof(m));		/* payload never comes */
	shutdown(r.kernel, SHUT_WR);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_BROKEN);
	CHECK_EQ(r.ch.last_errno, EPIPE);
}

TEST(channel_header_in_pieces)
{
	struct rig r;
	struct dm_user_message m = { 77, DM_USER_REQ_MAP_FLUSH, 0, 0, 0 };
	unsigned char *b = (unsigned char *)&m;
	struct dm_user_message reply;
	unsigned records;

	rig_init(&r);
	send_record(&r, b, 8);
	send_record(&r, b + 8, 30);
	send_record(&r, b + 38, 2);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	recv_reply(&r, &reply, NULL, 0, &records);
	CHECK_EQ(reply.seq, 77);
	CHECK_EQ(reply.type, DM_USER_RESP_SUCCESS);
}

static void on_usr1(int sig)
{
	(void)sig;
}

static void catch_usr1(void)
{
	struct sigaction sa = { .sa_handler = on_usr1 };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);	/* no SA_RESTART */
}

TEST(channel_signal_while_idle_is_reported)
{
	struct rig r;

	rig_init(&r);
	catch_usr1();
	r.result = DMU_CH_OK;
	serve_async(&r);
	/* A signal may land before the read() starts: repeat until it returns. */
	while (pthread_kill(r.thread, SIGUSR1) == 0 &&
	       pthread_tryjoin_np(r.thread, NULL) == EBUSY)
		usleep(1000);
	CHECK_EQ(r.result, DMU_CH_INTERRUPTED);
}

TEST(channel_metrics_count_requests_bytes_and_latency)
{
	struct rig r;
	unsigned char *p = pattern(8192, 10);
	struct dm_user_message reply;
	unsigned char data[4096];
	unsigned records;

	rig_init(&r);
	send_request(&r, 1, DM_USER_REQ_MAP_WRITE, 0, 0, 8192, p, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	recv_reply(&r, &reply, NULL, 0, &records);
	send_request(&r, 2, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL, 0);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
	recv_reply(&r, &reply, data, sizeof(data), &records);

	struct dmu_metrics_snapshot s;
	dmu_metrics_snapshot(&r.metrics, &s);
	CHECK_EQ(s.op[DMU_OP_WRITE].requests, 1);
	CHECK_EQ(s.op[DMU_OP_WRITE].bytes, 8192);
	CHECK_EQ(s.op[DMU_OP_READ].requests, 1);
	CHECK_EQ(s.op[DMU_OP_READ].bytes, 4096);
	CHECK_EQ(s.op[DMU_OP_READ].latency_count, 1);
	CHECK_EQ(s.op[DMU_OP_WRITE].latency_count, 1);
	CHECK(s.op[DMU_OP_READ].latency_sum_ns > 0);
	CHECK_EQ(s.in_flight, 0);
	CHECK_EQ(s.replies[DM_USER_RESP_SUCCESS], 2);
	CHECK_EQ(s.channel_reads, 2);		/* one request per read() */
	CHECK_EQ(s.channel_requests_read, 2);
	CHECK_EQ(s.channel_writes, 2);
	CHECK_EQ(s.channels_batched, 0);
	free(p);
}

TEST(channel_inject_delay_adds_latency)
{
	struct rig r;

	rig_init_cfg(&r, false, 20000);
	round_trip(&r, 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0);
	CHECK(op_metrics(&r, DMU_OP_FLUSH)->latency_sum_ns >= 20000000u);
}

/* ---- batching ---------------------------------------------------------- */

/* Append a request (and a WRITE's payload) at buf + at; returns the new end. */
static size_t put_request(unsigned char *buf, size_t at, uint64_t seq, uint64_t type,
			  uint64_t flags, uint64_t sector, uint64_t len, const void *payload)
{
	struct dm_user_message m = { seq, type, flags, sector, len };

	memcpy(buf + at, &m, DMU_MSG_SIZE);
	at += DMU_MSG_SIZE;
	if (payload) {
		memcpy(buf + at, payload, (size_t)len);
		at += (size_t)len;
	}
	return at;
}

/* Receive exactly len bytes of replies into buf; returns the records (write calls). */
static unsigned recv_replies(struct rig *r, unsigned char *buf, size_t len)
{
	unsigned char *tmp = malloc(len + 1);
	size_t got = 0;
	unsigned records = 0;

	while (got < len) {
		ssize_t n = recv(r->kernel, tmp + got, len + 1 - got, 0);

		REQUIRE(n > 0);
		got += (size_t)n;
		records++;
	}
	REQUIRE_EQ(got, len);
	memcpy(buf, tmp, len);
	free(tmp);
	return records;
}

static bool nothing_more_sent(struct rig *r)
{
	char c;

	return recv(r->kernel, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* The reply header at *p; *p moves past it. */
static struct dm_user_message next_reply(const unsigned char **p)
{
	struct dm_user_message m;

	memcpy(&m, *p, DMU_MSG_SIZE);
	*p += DMU_MSG_SIZE;
	return m;
}

/* A reply's seq and status (m is evaluated once: it may be next_reply()). */
#define CHECK_REPLY(m, seq_, status_)				\
	do {							\
		struct dm_user_message m_ = (m);		\
								\
		CHECK_EQ(m_.seq, (seq_));			\
		CHECK_EQ(m_.type, (status_));			\
	} while (0)

TEST(channel_batch_asks_the_kernel)
{
	struct rig r;

	flags_calls = 0;
	rig_init_batch(&r);
	CHECK_EQ(flags_calls, 1);
	CHECK_EQ(flags_asked, DM_USER_CHANNEL_BATCH);
	CHECK(r.ch.batching);
	CHECK(r.ch.reply_data != NULL);
	CHECK_EQ(r.metrics.thread[0].batched, 1);
}

/*
 * Several requests of every kind in one read(): carried out in order (the
 * READ after the WRITE sees its data, the FLUSH comes after the WRITE), and
 * all answered with one writev() in that order.
 */
TEST(channel_batch_serves_a_read_of_several_requests_with_one_writev)
{
	struct rig r;
	unsigned char *w = pattern(8192, 11);
	unsigned char req[8 * DMU_MSG_SIZE + 8192];
	size_t n = 0;

	rig_init_batch(&r);
	n = put_request(req, n, 1, DM_USER_REQ_MAP_READ, DM_USER_REQ_MAP_FLAG_SYNC, 8, 4096, NULL);
	n = put_request(req, n, 2, DM_USER_REQ_MAP_WRITE, 0, 64, 8192, w);
	n = put_request(req, n, 3, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	n = put_request(req, n, 4, DM_USER_REQ_MAP_READ, 0, 64, 8192, NULL);
	n = put_request(req, n, 5, DM_USER_REQ_MAP_DISCARD, 0, 128, 4096, NULL);
	n = put_request(req, n, 6, DM_USER_REQ_MAP_ZONE_OPEN, 0, 0, 4096, NULL);
	n = put_request(req, n, 7, DM_USER_REQ_MAP_READ, 0, DEV_SIZE / 512, 512, NULL);
	send_record(&r, req, n);
	unsigned char before[4096];
	memcpy(before, r.fb.mem + 8 * 512, sizeof(before));
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);

	size_t want = 7 * DMU_MSG_SIZE + 4096 + 8192;
	unsigned char *rep = malloc(want);
	CHECK_EQ(recv_replies(&r, rep, want), 1);	/* one writev() */
	CHECK(nothing_more_sent(&r));

	const unsigned char *p = rep;
	struct dm_user_message m = next_reply(&p);
	CHECK_REPLY(m, 1, DM_USER_RESP_SUCCESS);
	CHECK_EQ(m.flags, DM_USER_REQ_MAP_FLAG_SYNC);	/* echoed */
	CHECK_EQ(m.sector, 8);
	CHECK_EQ(m.len, 4096);
	CHECK(memcmp(p, before, 4096) == 0);
	p += 4096;
	m = next_reply(&p);
	CHECK_REPLY(m, 2, DM_USER_RESP_SUCCESS);
	CHECK_EQ(m.len, 8192);
	m = next_reply(&p);
	CHECK_REPLY(m, 3, DM_USER_RESP_SUCCESS);
	m = next_reply(&p);
	CHECK_REPLY(m, 4, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(p, w, 8192) == 0);			/* what request 2 wrote */
	p += 8192;
	m = next_reply(&p);
	CHECK_REPLY(m, 5, DM_USER_RESP_SUCCESS);
	m = next_reply(&p);
	CHECK_REPLY(m, 6, DM_USER_RESP_UNSUPPORTED);
	m = next_reply(&p);
	CHECK_REPLY(m, 7, DM_USER_RESP_ERROR);		/* out of range: no data */
	CHECK_EQ((size_t)(p - rep), want);

	static const enum fake_op order[] = { F_READ, F_WRITE, F_FLUSH, F_READ, F_DISCARD };
	REQUIRE_EQ(r.fb.nlog, 5);
	for (unsigned i = 0; i < 5; i++)
		CHECK_EQ(r.fb.log[i].op, order[i]);
	CHECK(memcmp(r.fb.mem + 64 * 512, w, 8192) == 0);

	struct dmu_metrics_snapshot s;
	dmu_metrics_snapshot(&r.metrics, &s);
	CHECK_EQ(s.channel_reads, 1);
	CHECK_EQ(s.channel_requests_read, 7);
	CHECK_EQ(s.channel_writes, 1);
	CHECK_EQ(s.in_flight, 0);
	CHECK_EQ(s.op[DMU_OP_READ].requests, 3);
	CHECK_EQ(s.op[DMU_OP_READ].bytes, 4096 + 8192);
	CHECK_EQ(s.op[DMU_OP_READ].errors, 1);
	CHECK_EQ(s.op[DMU_OP_READ].latency_count, 3);
	CHECK_EQ(s.op[DMU_OP_WRITE].bytes, 8192);
	CHECK_EQ(s.op[DMU_OP_FLUSH].requests, 1);
	CHECK_EQ(s.op[DMU_OP_OTHER].requests, 1);
	CHECK_EQ(s.replies[DM_USER_RESP_SUCCESS], 5);
	CHECK_EQ(s.backend_flushes, 1);
	free(rep);
	free(w);
}

/* A FUA write in a batch: durable (flushed) before the batch's replies leave. */
TEST(channel_batch_fua_flushes_before_the_replies)
{
	struct rig r;
	unsigned char *w = pattern(4096, 12);
	unsigned char req[3 * DMU_MSG_SIZE + 2 * 4096];
	size_t n = 0;

	rig_init_batch(&r);
	n = put_request(req, n, 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, w);
	n = put_request(req, n, 2, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_FUA, 8, 4096, w);
	n = put_request(req, n, 3, DM_USER_REQ_MAP_WRITE, DM_USER_REQ_MAP_FLAG_PREFLUSH, 16, 0, NULL);
	send_record(&r, req, n);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);

	static const enum fake_op order[] = { F_WRITE, F_WRITE, F_FLUSH, F_FLUSH };
	REQUIRE_EQ(r.fb.nlog, 4);
	for (unsigned i = 0; i < 4; i++)
		CHECK_EQ(r.fb.log[i].op, order[i]);

	unsigned char rep[3 * DMU_MSG_SIZE];
	const unsigned char *p = rep;
	CHECK_EQ(recv_replies(&r, rep, sizeof(rep)), 1);
	for (uint64_t seq = 1; seq <= 3; seq++)
		CHECK_REPLY(next_reply(&p), seq, DM_USER_RESP_SUCCESS);
	free(w);
}

/*
 * The replies of a batch exceed the socket's send buffer, so the writev()
 * waits for the test to read; a signal then makes it return short.  The
 * channel must go on from where it stopped: every reply arrives whole.
 */
TEST(channel_batch_short_writev_is_completed)
{
	struct rig r;
	struct rig_opts o = { .batch = true, .set_flags = fake_set_flags,
			      .sock_type = SOCK_STREAM };
	unsigned char *w = pattern(4096, 13);
	unsigned char req[6 * DMU_MSG_SIZE + 4096];
	int small = 4096;
	size_t n = 0;

	flags_result = 0;
	rig_init_opts(&r, &o);
	catch_usr1();
	REQUIRE(setsockopt(r.ch.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) == 0);
	n = put_request(req, n, 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, w);
	n = put_request(req, n, 2, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	for (uint64_t i = 0; i < 4; i++)	/* 4 x 4096: the whole reply buffer */
		n = put_request(req, n, 3 + i, DM_USER_REQ_MAP_READ, 0, 100 + 8 * i, 4096, NULL);
	send_record(&r, req, n);
	serve_async(&r);

	/* Bytes queued and not read: the writev() has begun and cannot end. */
	int queued = 0;
	for (unsigned i = 0; i < 5000 && queued == 0; i++) {
		REQUIRE(ioctl(r.ch.fd, SIOCOUTQ, &queued) == 0);
		if (!queued)
			usleep(1000);
	}
	REQUIRE(queued > 0);
	REQUIRE(pthread_kill(r.thread, SIGUSR1) == 0);

	size_t want = 6 * DMU_MSG_SIZE + 4 * 4096;
	unsigned char *rep = malloc(want);
	recv_replies(&r, rep, want);
	CHECK_EQ(serve_wait(&r), DMU_CH_OK);

	const unsigned char *p = rep;
	CHECK_REPLY(next_reply(&p), 1, DM_USER_RESP_SUCCESS);
	CHECK_REPLY(next_reply(&p), 2, DM_USER_RESP_SUCCESS);
	for (uint64_t i = 0; i < 4; i++) {
		struct dm_user_message m = next_reply(&p);

		CHECK_REPLY(m, 3 + i, DM_USER_RESP_SUCCESS);
		CHECK_EQ(m.sector, 100 + 8 * i);
		CHECK(memcmp(p, r.fb.mem + m.sector * 512, 4096) == 0);
		p += 4096;
	}
	CHECK(nothing_more_sent(&r));
	/* The signal cut the writev() short; a second one sent the rest. */
	CHECK(r.metrics.thread[0].channel_writes >= 2);
	CHECK_EQ(r.metrics.thread[0].replies[DM_USER_RESP_SUCCESS], 6);
	CHECK_EQ(r.metrics.thread[0].replies[DM_USER_RESP_ERROR], 0);
	free(rep);
	free(w);
}

/* More READ data than the reply buffer holds: sent in as many writev()s as needed. */
TEST(channel_batch_reads_beyond_the_reply_buffer)
{
	struct rig r;
	unsigned char req[6 * DMU_MSG_SIZE];
	size_t n = 0;

	rig_init_batch(&r);
	for (uint64_t i = 0; i < 6; i++)	/* 6 x 4096 > CAP */
		n = put_request(req, n, 10 + i, DM_USER_REQ_MAP_READ, 0, 8 * i, 4096, NULL);
	send_record(&r, req, n);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);

	size_t want = 6 * (DMU_MSG_SIZE + 4096);
	unsigned char *rep = malloc(want);
	CHECK_EQ(recv_replies(&r, rep, want), 2);	/* CAP / 4096 = 4 replies, then 2 */
	const unsigned char *p = rep;
	for (uint64_t i = 0; i < 6; i++) {
		CHECK_REPLY(next_reply(&p), 10 + i, DM_USER_RESP_SUCCESS);
		CHECK(memcmp(p, r.fb.mem + i * 4096, 4096) == 0);
		p += 4096;
	}
	CHECK_EQ(r.metrics.thread[0].channel_writes, 2);
	free(rep);
}

/* More requests than one writev() takes (DMU_CHANNEL_MAX_REPLIES). */
TEST(channel_batch_more_replies_than_one_writev_takes)
{
	enum { N = DMU_CHANNEL_MAX_REPLIES + 44 };
	struct rig r;
	unsigned char req[N * DMU_MSG_SIZE];
	size_t n = 0;

	REQUIRE(sizeof(req) <= DMU_MSG_SIZE + CAP);
	rig_init_batch(&r);
	for (uint64_t i = 0; i < N; i++)
		n = put_request(req, n, 1000 + i, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	send_record(&r, req, n);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);

	unsigned char rep[N * DMU_MSG_SIZE];
	const unsigned char *p = rep;
	CHECK_EQ(recv_replies(&r, rep, sizeof(rep)), 2);
	for (uint64_t i = 0; i < N; i++)
		CHECK_REPLY(next_reply(&p), 1000 + i, DM_USER_RESP_SUCCESS);
	CHECK_EQ(r.fb.calls[F_FLUSH], N);
	CHECK_EQ(r.metrics.thread[0].channel_requests_read, N);
	CHECK_EQ(r.metrics.thread[0].in_flight, 0);
}

/*
 * A READ larger than the buffer streams; the replies gathered before it
 * leave first, so the stream is never interleaved.
 */
TEST(channel_batch_large_read_streams_after_earlier_replies)
{
	struct rig r;
	size_t len = 2 * CAP + 8192;
	unsigned char req[3 * DMU_MSG_SIZE];
	size_t n = 0;

	rig_init_batch(&r);
	n = put_request(req, n, 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	n = put_request(req, n, 2, DM_USER_REQ_MAP_READ, 0, 16, len, NULL);
	n = put_request(req, n, 3, DM_USER_REQ_MAP_READ, 0, 0, 4096, NULL);
	send_record(&r, req, n);
	serve_async(&r);

	size_t want = 3 * DMU_MSG_SIZE + 4096 + len;
	unsigned char *rep = malloc(want);
	recv_replies(&r, rep, want);
	CHECK_EQ(serve_wait(&r), DMU_CH_OK);
	const unsigned char *p = rep;
	CHECK_REPLY(next_reply(&p), 1, DM_USER_RESP_SUCCESS);
	struct dm_user_message m = next_reply(&p);
	CHECK_REPLY(m, 2, DM_USER_RESP_SUCCESS);
	CHECK_EQ(m.len, len);
	CHECK(memcmp(p, r.fb.mem + 16 * 512, len) == 0);
	p += len;
	CHECK_REPLY(next_reply(&p), 3, DM_USER_RESP_SUCCESS);
	CHECK(memcmp(p, r.fb.mem, 4096) == 0);
	CHECK_EQ(r.metrics.thread[0].op[DMU_OP_READ].bytes, 4096 + len);
	free(rep);
}

/*
 * A WRITE larger than the buffer comes alone and incomplete, as the kernel
 * fills the buffer; the next reads bring the rest, then the next batch.
 */
TEST(channel_batch_write_larger_than_the_buffer)
{
	struct rig r;
	size_t len = 2 * CAP + 4096;
	unsigned char *w = pattern(len, 14);
	unsigned char *first = malloc(DMU_MSG_SIZE + CAP);

	rig_init_batch(&r);
	put_request(first, 0, 1, DM_USER_REQ_MAP_WRITE, 0, 0, len, NULL);
	memcpy(first + DMU_MSG_SIZE, w, CAP);
	serve_async(&r);
	send_record(&r, first, DMU_MSG_SIZE + CAP);
	send_record(&r, w + CAP, CAP);
	send_record(&r, w + 2 * CAP, 4096);
	CHECK_EQ(serve_wait(&r), DMU_CH_OK);
	CHECK(memcmp(r.fb.mem, w, len) == 0);
	CHECK_EQ(r.fb.calls[F_WRITE], 3);

	unsigned char req[2 * DMU_MSG_SIZE];
	size_t n = put_request(req, 0, 2, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	n = put_request(req, n, 3, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	send_record(&r, req, n);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);

	unsigned char rep[3 * DMU_MSG_SIZE];
	const unsigned char *p = rep;
	CHECK_EQ(recv_replies(&r, rep, sizeof(rep)), 2);
	CHECK_REPLY(next_reply(&p), 1, DM_USER_RESP_SUCCESS);
	CHECK_REPLY(next_reply(&p), 2, DM_USER_RESP_SUCCESS);
	CHECK_REPLY(next_reply(&p), 3, DM_USER_RESP_SUCCESS);
	free(first);
	free(w);
}

/*
 * With O_DIRECT (the backend's mem_align) every payload reaches the backend
 * page aligned, not only the first of a read(); without it none is copied.
 */
TEST(channel_batch_aligns_payloads_for_direct_io)
{
	for (int direct = 0; direct < 2; direct++) {
		struct rig r;
		struct rig_opts o = { .batch = true, .set_flags = fake_set_flags,
				      .mem_align = direct ? 4096 : 0 };
		unsigned char *w = pattern(8192, 15);
		unsigned char req[3 * DMU_MSG_SIZE + 8192];
		size_t n = 0;

		flags_result = 0;
		rig_init_opts(&r, &o);
		n = put_request(req, n, 1, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, w);
		n = put_request(req, n, 2, DM_USER_REQ_MAP_WRITE, 0, 8, 4096, w + 4096);
		n = put_request(req, n, 3, DM_USER_REQ_MAP_READ, 0, 0, 8192, NULL);
		send_record(&r, req, n);
		CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);

		size_t want = 3 * DMU_MSG_SIZE + 8192;
		unsigned char *rep = malloc(want);
		const unsigned char *p = rep;
		recv_replies(&r, rep, want);
		CHECK_REPLY(next_reply(&p), 1, DM_USER_RESP_SUCCESS);
		CHECK_REPLY(next_reply(&p), 2, DM_USER_RESP_SUCCESS);
		CHECK_REPLY(next_reply(&p), 3, DM_USER_RESP_SUCCESS);
		CHECK(memcmp(p, w, 8192) == 0);
		REQUIRE_EQ(r.fb.nlog, 3);
		CHECK(r.fb.log[0].page_aligned);
		CHECK_EQ(r.fb.log[1].page_aligned, direct);
		CHECK(r.fb.log[2].page_aligned);
		free(rep);
		free(w);
	}
}

TEST(channel_batch_incomplete_later_request_breaks_the_channel)
{
	struct rig r;
	unsigned char req[2 * DMU_MSG_SIZE + 100];
	size_t n = 0;

	rig_init_batch(&r);
	n = put_request(req, n, 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	n = put_request(req, n, 2, DM_USER_REQ_MAP_WRITE, 0, 0, 4096, NULL);
	memset(req + n, 0, 100);	/* 100 of its 4096 payload bytes */
	send_record(&r, req, n + 100);
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_BROKEN);
	CHECK_EQ(r.ch.last_errno, EPROTO);
	CHECK_EQ(r.fb.nlog, 0);		/* nothing carried out */

	rig_init_batch(&r);
	n = put_request(req, 0, 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
	send_record(&r, req, n + 20);	/* half a header after it */
	CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_BROKEN);
	CHECK_EQ(r.ch.last_errno, EPROTO);
}

/*
 * A kernel without the extension (a socket, like an older dm-user, answers
 * ENOTTY), or one that refuses it: one request per read(), as before, and
 * a read() of two is the protocol error it always was.
 */
TEST(channel_batch_falls_back_when_the_kernel_does_not_batch)
{
	static const int answers[] = { 1 /* the real ioctl */, -ENOTTY, -EINVAL, -EPERM };

	for (unsigned i = 0; i < sizeof(answers) / sizeof(answers[0]); i++) {
		struct rig r;
		struct rig_opts o = { .batch = true };
		unsigned char data[4096];
		unsigned char req[2 * DMU_MSG_SIZE];
		struct dm_user_message reply;
		unsigned records;

		flags_calls = 0;
		if (answers[i] < 0) {
			o.set_flags = fake_set_flags;
			flags_result = answers[i];
		}
		rig_init_opts(&r, &o);
		CHECK_EQ(flags_calls, answers[i] < 0);
		CHECK(!r.ch.batching);
		CHECK(r.ch.reply_data == NULL);
		CHECK_EQ(r.metrics.thread[0].batched, 0);

		send_request(&r, 1, DM_USER_REQ_MAP_READ, 0, 0, sizeof(data), NULL, 0);
		CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_OK);
		recv_reply(&r, &reply, data, sizeof(data), &records);
		CHECK_REPLY(reply, 1, DM_USER_RESP_SUCCESS);
		CHECK(memcmp(data, r.fb.mem, sizeof(data)) == 0);

		size_t n = put_request(req, 0, 2, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
		n = put_request(req, n, 3, DM_USER_REQ_MAP_FLUSH, 0, 0, 0, NULL);
		send_record(&r, req, n);
		CHECK_EQ(dmu_channel_serve(&r.ch), DMU_CH_BROKEN);
		CHECK_EQ(r.ch.last_errno, EPROTO);
		CHECK_EQ(r.fb.calls[F_FLUSH], 0);
	}
}

/* --no-batch: the kernel is never asked, and reads bring one request. */
TEST(channel_no_batch_does_not_ask)
{
	struct rig r;
	struct rig_opts o = { .batch = false, .set_flags = fake_set_flags };

	flags_calls = 0;
	flags_result = 0;
	rig_init_opts(&r, &o);
	CHECK_EQ(flags_calls, 0);
	CHECK(!r.ch.batching);
	CHECK(r.ch.reply_data == NULL);

	dmu_channel_attach(&r.ch, r.ch.fd);
	CHECK_EQ(flags_calls, 0);
	CHECK(!r.ch.batching);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0).type, DM_USER_RESP_SUCCESS);
}

/* A reopened channel is a new one to the kernel: batching is asked for again. */
TEST(channel_batch_reopen_asks_again)
{
	struct rig r;
	int sv[2];

	flags_calls = 0;
	rig_init_batch(&r);
	REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	close(r.ch.fd);
	close(r.kernel);
	r.kernel = sv[0];

	flags_result = -ENOTTY;		/* say a module without it was loaded meanwhile */
	dmu_channel_attach(&r.ch, sv[1]);
	CHECK_EQ(flags_calls, 2);
	CHECK(!r.ch.batching);
	CHECK_EQ(r.metrics.thread[0].batched, 0);
	CHECK_EQ(round_trip(&r, 1, DM_USER_REQ_MAP_FLUSH, 0, 0, 0).type, DM_USER_RESP_SUCCESS);

	flags_result = 0;
	dmu_channel_attach(&r.ch, sv[1]);
	CHECK_EQ(flags_calls, 3);
	CHECK(r.ch.batching);
	CHECK_EQ(r.metrics.thread[0].batched, 1);
}
