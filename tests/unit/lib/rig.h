/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fake kernel: a SOCK_SEQPACKET socketpair.  Like the control device,
 * a seqpacket socket never merges two writes into one read, so each record
 * the test sends is what one kernel read() returns: a request, or a piece
 * of one, or (batching) several back to back.  The library's writev() of
 * several replies arrives as one record, so records count its write calls.
 *
 * A socket answers ENOTTY to DM_USER_IOC_SET_FLAGS, as a module without
 * batching does.  The tests that batch play the module's side of the ioctl:
 * this test binary defines ioctl(), which the library's call resolves to.
 * The same way it fakes the rest of the system the library talks to: the
 * monotonic clock, the control node's open() and libdevmapper (below), so
 * no host test touches the real device-mapper.
 *
 * The library is used through its public header only; <linux/dm-user.h>
 * is here to play the kernel's side of the protocol.
 */
#ifndef DMU_RIG_H
#define DMU_RIG_H

#include <jansson.h>
#include <linux/dm-user.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dmuser.h"

#define MSG sizeof(struct dm_user_message)
#define DEV_SIZE (1024 * 1024)
#define CAP (16 * 1024)

/* The module's side of DM_USER_IOC_SET_FLAGS. */
extern bool fake_ioctl;		/* answer it here (else: the real ioctl, ENOTTY) */
extern int fake_ioctl_result;	/* 0 or -errno */
extern unsigned fake_ioctl_calls;

/*
 * The fake device-mapper (fake_dm.c): the one dm device there is, for
 * dmu_device_attach() and the target's status in dmu_metrics_render().
 */
struct fake_dm {
	const char *name;	/* NULL: no dm device at all */
	const char *table;	/* its table's parameters after "user" */
	uint64_t sectors;	/* its table's length */
	const char *status;	/* the target's status line; NULL: the status fails */
	bool read_only;
	unsigned status_reads;
};
extern struct fake_dm fake_dm;

/*
 * The fake clock: while fake_clock is set, CLOCK_MONOTONIC reads
 * fake_clock_ns (this binary defines clock_gettime(), which the library's
 * call resolves to), so latencies and uptime are exactly what a test
 * makes them.  The memory backend advances it by mem.advance_ns a call.
 */
extern bool fake_clock;
extern _Atomic uint64_t fake_clock_ns;

/*
 * The fake control node: while fake_node is set, open() of a path under
 * /dev/dm-user/ returns one end of a new socketpair and puts the other,
 * the kernel's, in fake_node_k (the fake kernel's side of a reopen).
 */
extern bool fake_node;
extern int fake_node_k;
extern unsigned fake_node_opens;

/* An in-memory backend that logs each call: 'R', 'W', 'F', 'D', 'Z', 'S'. */
struct mem {
	unsigned char data[DEV_SIZE];
	char log[256];
	unsigned nlog;
	int fail[8];		/* by enum dmu_req_type: what the callback returns */
	uint64_t advance_ns;	/* each call advances the fake clock by this */
	unsigned delay_ms;	/* each call takes at least this long (the real clock) */
	_Atomic int tid;	/* the thread of the last read or write call */
};

extern const struct dmu_ops mem_ops;

struct rig_cfg {
	bool batch;		/* the fake kernel grants batching */
	unsigned batch_mode;	/* DMU_BATCH_* */
	unsigned depth;		/* async_depth */
	bool read_only;
	size_t buffer;		/* 0: CAP */
	uint32_t poll_us;	/* busy polling */
};

struct rig {
	int k;			/* the test's end: plays the kernel */
	struct dmu_device *dev;
	struct dmu_channel *ch;
	struct mem *mem;
	pthread_t thread;
	int result;		/* of dmu_channel_run on the thread */
	bool running;
	const struct dmu_ops *ops;	/* rig_serve's; NULL: mem_ops */
};

void rig_open(struct rig *r, const struct rig_cfg *cfg);
/* A second channel on the same device; its fake-kernel end in *k. */
struct dmu_channel *rig_open_channel(struct rig *r, const struct rig_cfg *cfg, int *k);
void rig_close(struct rig *r);

/* Serve with dmu_channel_run(mem_ops) on a thread; rig_join returns its result. */
void rig_serve(struct rig *r);
int rig_join(struct rig *r);

/* A request as one record: header, then a WRITE's payload (if given). */
void send_req(int k, uint64_t seq, uint64_t type, uint64_t flags, uint64_t sector,
	      uint64_t len, const void *payload);
/* Requests back to back in one record (batching). */
struct req { uint64_t seq, type, flags, sector, len; const void *payload; };
void send_batch(int k, const struct req *reqs, unsigned n);

/* One record from the library, waiting up to 5 s; its length. */
size_t recv_record(int k, unsigned char *buf, size_t cap);
/* No record arrives within ms milliseconds. */
bool no_record(int k, int ms);

/* The header of the reply at *off in a record; advances *off past it and data_len bytes. */
struct dm_user_message reply_at(const unsigned char *rec, size_t *off, size_t data_len);

unsigned char *pattern(size_t len, unsigned seed);

/* Sleep ms milliseconds of the real clock (through EINTR). */
void sleep_ms(unsigned ms);

/* The integer at a dotted path of a JSON document ("ops.read.bytes"); REQUIREd. */
uint64_t jget(json_t *doc, const char *path);
/*
 * Run a shell command on a temporary file holding text: in cmd_fmt "%1$s"
 * is the tree's root ($DMU_ROOT), "%2$s" the file (or "%s ... %s" in
 * that order).  Its exit status.
 */
int check_with(const char *cmd_fmt, const char *text);

#endif
