/* SPDX-License-Identifier: GPL-2.0+ WITH Linux-syscall-note */
/*
 * dm-user: the wire protocol between the "user" device-mapper target and the
 * daemon that serves it through /dev/dm-user/<control-name>.
 *
 * The numbers and the layout below are those of the original dm-user series
 * (and of the copies in Android's kernels and bionic).  They never change
 * meaning; extensions get new numbers.
 *
 * Each request and each reply starts with struct dm_user_message, in native
 * endianness.  A WRITE request is followed by len bytes of data; a
 * successful READ reply is followed by len bytes of data.  Either side may be
 * transferred in as many read()/write() calls as the daemon likes.
 */
#ifndef _UAPI_LINUX_DM_USER_H
#define _UAPI_LINUX_DM_USER_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>

/* Request types, kernel to daemon, in dm_user_message.type. */
#define DM_USER_REQ_MAP_READ		0
#define DM_USER_REQ_MAP_WRITE		1
#define DM_USER_REQ_MAP_FLUSH		2
#define DM_USER_REQ_MAP_DISCARD		3
#define DM_USER_REQ_MAP_SECURE_ERASE	4
#define DM_USER_REQ_MAP_WRITE_SAME	5
#define DM_USER_REQ_MAP_WRITE_ZEROES	6
#define DM_USER_REQ_MAP_ZONE_OPEN	7
#define DM_USER_REQ_MAP_ZONE_CLOSE	8
#define DM_USER_REQ_MAP_ZONE_FINISH	9
#define DM_USER_REQ_MAP_ZONE_APPEND	10
#define DM_USER_REQ_MAP_ZONE_RESET	11
#define DM_USER_REQ_MAP_ZONE_RESET_ALL	12

/* Request flags, kernel to daemon, in dm_user_message.flags. */
#define DM_USER_REQ_MAP_FLAG_FAILFAST_DEV	0x00001
#define DM_USER_REQ_MAP_FLAG_FAILFAST_TRANSPORT	0x00002
#define DM_USER_REQ_MAP_FLAG_FAILFAST_DRIVER	0x00004
#define DM_USER_REQ_MAP_FLAG_SYNC		0x00008
#define DM_USER_REQ_MAP_FLAG_META		0x00010
#define DM_USER_REQ_MAP_FLAG_PRIO		0x00020
#define DM_USER_REQ_MAP_FLAG_NOMERGE		0x00040
#define DM_USER_REQ_MAP_FLAG_IDLE		0x00080
#define DM_USER_REQ_MAP_FLAG_INTEGRITY		0x00100
#define DM_USER_REQ_MAP_FLAG_FUA		0x00200
#define DM_USER_REQ_MAP_FLAG_PREFLUSH		0x00400
#define DM_USER_REQ_MAP_FLAG_RAHEAD		0x00800
#define DM_USER_REQ_MAP_FLAG_BACKGROUND		0x01000
#define DM_USER_REQ_MAP_FLAG_NOWAIT		0x02000
#define DM_USER_REQ_MAP_FLAG_CGROUP_PUNT	0x04000
#define DM_USER_REQ_MAP_FLAG_NOUNMAP		0x08000
#define DM_USER_REQ_MAP_FLAG_HIPRI		0x10000
#define DM_USER_REQ_MAP_FLAG_DRV		0x20000
#define DM_USER_REQ_MAP_FLAG_SWAP		0x40000

/* Reply status, daemon to kernel, in dm_user_message.type. */
#define DM_USER_RESP_SUCCESS		0
#define DM_USER_RESP_ERROR		1
#define DM_USER_RESP_UNSUPPORTED	2
/*
 * Extension: the request failed for lack of space; the BIO fails with
 * ENOSPC.  Kernels that predate it fail the BIO with EIO, as for ERROR.
 */
#define DM_USER_RESP_NOSPC		3

/*
 * Extension: channel flags, set on an open control device with
 * ioctl(fd, DM_USER_IOC_SET_FLAGS, &flags), flags being a __u64, and read
 * back with DM_USER_IOC_GET_FLAGS.  Unknown bits fail with EINVAL and change
 * nothing.  A kernel without the extension fails both with ENOTTY, and the
 * channel speaks the original protocol.
 *
 * DM_USER_CHANNEL_BATCH: a read() returns as many requests as fit in the
 * buffer, back to back, each its header then a WRITE's payload; at least one,
 * and only whole requests after the first.  The first may be partial, as
 * without the flag, when the buffer is smaller than it; the next read() goes
 * on with it.  Without the flag a read() never returns more than one request,
 * however large the buffer.  Replies need no flag: a write() may always carry
 * any number of them.
 */
#define DM_USER_IOC_MAGIC	0xfd	/* dm's type; dm's own numbers are < 0x20 */
#define DM_USER_IOC_SET_FLAGS	_IOW(DM_USER_IOC_MAGIC, 0x80, __u64)
#define DM_USER_IOC_GET_FLAGS	_IOR(DM_USER_IOC_MAGIC, 0x81, __u64)

#define DM_USER_CHANNEL_BATCH	_BITULL(0)

struct dm_user_message {
	__u64 seq;	/* chosen by the kernel, echoed by the reply */
	__u64 type;	/* DM_USER_REQ_MAP_* in a request, DM_USER_RESP_* in a reply */
	__u64 flags;	/* DM_USER_REQ_MAP_FLAG_* */
	__u64 sector;	/* in 512-byte units */
	__u64 len;	/* in bytes */
	__u8 buf[];
};

#endif /* _UAPI_LINUX_DM_USER_H */
