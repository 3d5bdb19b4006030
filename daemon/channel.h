/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One channel: one open of /dev/dm-user/<name>, served by one thread.
 *
 * dmu_channel_serve_one() reads one request, has the backend carry it out
 * and writes the reply.  It knows the wire protocol and nothing else: not
 * the device, not threads, not HTTP.  The descriptor may be anything that
 * behaves like the control device (the unit tests use a SOCK_SEQPACKET
 * socketpair), which is why the channel never opens or closes it.
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
 */
#define DMU_CHANNEL_DEFAULT_CAPACITY (2u * 1024 * 1024)

struct dmu_channel_config {
	struct dmu_backend *backend;
	struct dmu_thread_metrics *metrics;	/* this thread's counters */
	size_t capacity;		/* payload bytes; a multiple of 4096 */
	bool read_only;			/* refuse every request that changes data */
	unsigned inject_delay_us;	/* test knob: sleep before each reply */
};

struct dmu_channel {
	int fd;
	struct dmu_channel_config cfg;
	unsigned char *mem;		/* one aligned allocation */
	struct dm_user_message *msg;	/* header: DMU_MSG_SIZE bytes before data */
	unsigned char *data;		/* page aligned, cfg.capacity bytes */
	int last_errno;			/* why the last call did not return OK */
	unsigned logged_errors;		/* backend errors reported so far */
};

enum dmu_serve_result {
	DMU_CH_OK,		/* one request answered */
	DMU_CH_INTERRUPTED,	/* a signal arrived while waiting; nothing read */
	DMU_CH_GONE,		/* the target was destroyed (ENOTBLK), or EOF */
	DMU_CH_BROKEN,		/* the stream cannot go on: close the fd, reopen */
};

int dmu_channel_init(struct dmu_channel *c, int fd,
		     const struct dmu_channel_config *cfg);
void dmu_channel_destroy(struct dmu_channel *c);

enum dmu_serve_result dmu_channel_serve_one(struct dmu_channel *c);

#endif
