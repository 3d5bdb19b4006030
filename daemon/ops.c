// SPDX-License-Identifier: GPL-2.0
#include "ops.h"

#include <errno.h>
#include <time.h>

static struct dmu_backend *enter(void *arg)
{
	struct dmu_serve_ctx *c = arg;
	unsigned us = c->inject_delay_us;
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000 };

	c->calls++;
	while (us && clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
		;
	return c->backend;
}

static bool refused(void *arg)
{
	return ((struct dmu_serve_ctx *)arg)->read_only;
}

static int op_read(void *arg, void *buf, size_t len, uint64_t off)
{
	struct dmu_backend *b = enter(arg);

	return b->ops->read(b, buf, len, off);
}

static int op_write(void *arg, const void *buf, size_t len, uint64_t off)
{
	struct dmu_backend *b = enter(arg);

	return refused(arg) ? -EROFS : b->ops->write(b, buf, len, off);
}

static int op_flush(void *arg)
{
	struct dmu_backend *b = enter(arg);

	return b->ops->flush(b);
}

static int op_discard(void *arg, uint64_t off, uint64_t len)
{
	struct dmu_backend *b = enter(arg);

	return refused(arg) ? -EROFS : b->ops->discard(b, off, len);
}

static int op_write_zeroes(void *arg, uint64_t off, uint64_t len, bool may_unmap)
{
	struct dmu_backend *b = enter(arg);

	return refused(arg) ? -EROFS : b->ops->write_zeroes(b, off, len, may_unmap);
}

static int op_secure_erase(void *arg, uint64_t off, uint64_t len)
{
	struct dmu_backend *b = enter(arg);

	return refused(arg) ? -EROFS : b->ops->secure_erase(b, off, len);
}

/* A request past the size the library knows: the backing file may have grown. */
static int op_probe_size(void *arg, uint64_t *size)
{
	struct dmu_backend *b = ((struct dmu_serve_ctx *)arg)->backend;

	return b->ops->probe_size ? b->ops->probe_size(b, size) : -EOPNOTSUPP;
}

/* Where the backend keeps these bytes, for libdmuser's splice (--no-splice: not asked). */
static int op_locate(void *arg, bool write, uint64_t off, uint64_t len, int *fd,
		     uint64_t *fd_off)
{
	struct dmu_backend *b = enter(arg);

	if (write && refused(arg))
		return -EROFS;
	return b->ops->locate(b, write, off, len, fd, fd_off);
}

const struct dmu_ops dmu_serve_splice_ops = {
	.sz = sizeof(struct dmu_ops),
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.discard = op_discard,
	.write_zeroes = op_write_zeroes,
	.secure_erase = op_secure_erase,
	.probe_size = op_probe_size,
	.locate = op_locate,
};

const struct dmu_ops dmu_serve_ops = {
	.sz = sizeof(struct dmu_ops),
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.discard = op_discard,
	.write_zeroes = op_write_zeroes,
	.secure_erase = op_secure_erase,
	.probe_size = op_probe_size,
};

/* ---- an asynchronous backend (backend.h) ------------------------------- */

static int op_submit(void *arg, struct dmu_req *req)
{
	struct dmu_backend *b = enter(arg);
	unsigned type = dmu_req_type(req);

	if (refused(arg) && type != DMU_REQ_READ && type != DMU_REQ_FLUSH)
		return -EROFS;
	return b->ops->async->submit(b, req);
}

const struct dmu_async_ops dmu_serve_async_ops = {
	.sz = sizeof(struct dmu_async_ops),
	.submit = op_submit,
};
