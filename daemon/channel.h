/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One channel: one open of /dev/dm-user/<name>, served by one thread.
 *
 * dmu_channel_serve() waits for requests and serves what one read()
 * brings: one request, or several where the kernel batches them
 * (DM_USER_CHANNEL_BATCH), each carried out by the backend in turn, their
 * replies sent together.  It knows the wire protocol and nothing else: not
 * the device, not threads, not HTTP.  The descriptor may be anything that
 * behaves like the control device (the unit tests use socketpairs), which
 * is why the channel never opens or closes it.
 *
 * All memory is allocated by dmu_channel_init(); serving a request
 * allocates nothing.
 */
#ifndef DMUSERD_CHANNEL_H
#define DMUSERD_CHANNEL_H

#include <linux/dm-user.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "backend.h"
#include "metrics.h"

#define DMU_MSG_SIZE sizeof(struct dm_user_message)

/*
 * Payload buffer per channel.  Requests larger than this are still served,
 * a buffer at a time.  A large READ is then sent as a SUCCESS header
 * followed by several pieces: if the backend fails after the first piece
 * the reply cannot be turned into an error any more, and the channel
 * reports DMU_CH_BROKEN instead (see below).  2 MiB covers the largest
 * request the block layer sends with default queue limits.
 *
 * A batching channel reads into the same buffer (a header plus this much),
 * and has a second one of the same size for the data of READ replies
 * waiting to be sent.
 */
#define DMU_CHANNEL_DEFAULT_CAPACITY (2u * 1024 * 1024)

/*
 * Replies gathered before they are sent with one writev(): two iovecs each
 * (header, then a READ's data), so always within IOV_MAX (1024 on Linux).
 */
#define DMU_CHANNEL_MAX_REPLIES 256

struct dmu_channel_config {
	struct dmu_backend *backend;
	struct dmu_thread_metrics *metrics;	/* this thread's counters */
	size_t capacity;		/* payload bytes; a multiple of 4096 */
	bool read_only;			/* refuse every request that changes data */
	bool batch;			/* ask for several requests per read() */
	unsigned inject_delay_us;	/* test knob: sleep before each reply */
	/*
	 * Sets the channel flags on fd: 0 or a negative errno.  NULL is
	 * ioctl(DM_USER_IOC_SET_FLAGS); the unit tests play the kernel here.
	 */
	int (*set_flags)(int fd, uint64_t flags);
};

/* A reply waiting to be sent. */
struct dmu_reply {
	unsigned char *msg;		/* the request's header, status in type */
	const unsigned char *data;	/* a successful READ's data, or NULL */
	size_t data_len;
	uint64_t len;			/* the request's, for the metrics */
	enum dmu_op op;
	unsigned status;
};

struct dmu_channel {
	int fd;
	struct dmu_channel_config cfg;
	unsigned char *mem;		/* one aligned allocation */
	struct dm_user_message *msg;	/* header: DMU_MSG_SIZE bytes before data */
	unsigned char *data;		/* page aligned, cfg.capacity bytes */
	unsigned char *reply_data;	/* batching: READ data, cfg.capacity bytes */
	size_t reply_data_used;		/* bytes of it that pending replies hold */
	bool batching;			/* the kernel agreed to DM_USER_CHANNEL_BATCH */
	unsigned npending;
	struct dmu_reply pending[DMU_CHANNEL_MAX_REPLIES];
	struct iovec iov[2 * DMU_CHANNEL_MAX_REPLIES];
	uint64_t read_ns;		/* when the requests in hand were read */
	int last_errno;			/* why the last call did not return OK */
	unsigned logged_errors;		/* backend errors reported so far */
};

enum dmu_serve_result {
	DMU_CH_OK,		/* every request read was answered */
	DMU_CH_INTERRUPTED,	/* a signal arrived while waiting; nothing read */
	DMU_CH_GONE,		/* the target was destroyed (ENOTBLK), or EOF */
	DMU_CH_BROKEN,		/* the stream cannot go on: close the fd, reopen */
};

/* Set up the buffers and serve fd, asking for batching if cfg->batch. */
int dmu_channel_init(struct dmu_channel *c, int fd,
		     const struct dmu_channel_config *cfg);
/*
 * Serve a new open of the control device, after the old one broke: same
 * buffers, a clean stream, batching asked for again (if it was granted
 * before: the buffers for it are sized at init).
 */
void dmu_channel_attach(struct dmu_channel *c, int fd);
void dmu_channel_destroy(struct dmu_channel *c);

enum dmu_serve_result dmu_channel_serve(struct dmu_channel *c);

#endif
