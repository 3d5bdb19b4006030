// SPDX-License-Identifier: GPL-2.0
#include "fake_backend.h"

#include <stdlib.h>
#include <string.h>

static struct fake_backend *to_fake(struct dmu_backend *b)
{
	return (struct fake_backend *)b;
}

/*
 * Record the call (buf: that of a read or write, else NULL); returns the
 * injected error, if this call is to fail.
 */
static int record(struct dmu_backend *b, enum fake_op op, uint64_t off,
		  uint64_t len, bool may_unmap, const void *buf)
{
	struct fake_backend *fb = to_fake(b);

	fb->calls[op]++;
	if (fb->nlog < 64)
		fb->log[fb->nlog++] = (struct fake_call){
			op, off, len, may_unmap, buf && (uintptr_t)buf % 4096 == 0,
		};
	if (fb->fail_err && (fb->fail_any || fb->fail_op == op)) {
		int err = fb->fail_err;

		fb->fail_err = 0;
		return err;
	}
	return 0;
}

static int f_read(struct dmu_backend *b, void *buf, size_t len, uint64_t off)
{
	int err = record(b, F_READ, off, len, false, buf);

	if (!err)
		memcpy(buf, to_fake(b)->mem + off, len);
	return err;
}

static int f_write(struct dmu_backend *b, const void *buf, size_t len, uint64_t off)
{
	int err = record(b, F_WRITE, off, len, false, buf);

	if (!err)
		memcpy(to_fake(b)->mem + off, buf, len);
	return err;
}

static int f_flush(struct dmu_backend *b)
{
	return record(b, F_FLUSH, 0, 0, false, NULL);
}

static int zero(struct dmu_backend *b, enum fake_op op, uint64_t off, uint64_t len,
		bool may_unmap)
{
	int err = record(b, op, off, len, may_unmap, NULL);

	if (!err)
		memset(to_fake(b)->mem + off, 0, len);
	return err;
}

static int f_discard(struct dmu_backend *b, uint64_t off, uint64_t len)
{
	return zero(b, F_DISCARD, off, len, true);
}

static int f_write_zeroes(struct dmu_backend *b, uint64_t off, uint64_t len, bool may_unmap)
{
	return zero(b, F_WRITE_ZEROES, off, len, may_unmap);
}

static int f_secure_erase(struct dmu_backend *b, uint64_t off, uint64_t len)
{
	return zero(b, F_SECURE_ERASE, off, len, false);
}

static int f_probe_size(struct dmu_backend *b, uint64_t *size)
{
	to_fake(b)->probes++;
	*size = to_fake(b)->storage_size;
	return 0;
}

static const struct dmu_backend_ops fake_ops = {
	.read = f_read,
	.write = f_write,
	.flush = f_flush,
	.discard = f_discard,
	.write_zeroes = f_write_zeroes,
	.secure_erase = f_secure_erase,
	.probe_size = f_probe_size,
};

void fake_backend_init(struct fake_backend *fb, uint64_t size)
{
	memset(fb, 0, sizeof(*fb));
	fb->base.ops = &fake_ops;
	fb->base.size = size;
	fb->storage_size = size;
	fb->mem = malloc(size);
	for (uint64_t i = 0; i < size; i++)
		fb->mem[i] = (unsigned char)(i * 7 + i / 512);
}

void fake_backend_fail_next(struct fake_backend *fb, enum fake_op op, int err)
{
	fb->fail_op = op;
	fb->fail_any = false;
	fb->fail_err = err;
}

void fake_backend_free(struct fake_backend *fb)
{
	free(fb->mem);
}
