/* SPDX-License-Identifier: GPL-2.0 */
/* An in-memory backend that records every call, for the channel tests. */
#ifndef DMU_FAKE_BACKEND_H
#define DMU_FAKE_BACKEND_H

#include "backend.h"

enum fake_op { F_READ, F_WRITE, F_FLUSH, F_DISCARD, F_WRITE_ZEROES, F_SECURE_ERASE, F_OP_COUNT };

struct fake_call {
	enum fake_op op;
	uint64_t off, len;
	bool may_unmap;
	bool page_aligned;	/* read and write: the buffer was */
};

struct fake_backend {
	struct dmu_backend base;
	unsigned char *mem;
	unsigned calls[F_OP_COUNT];
	struct fake_call log[64];
	unsigned nlog;
	/* Make the next call of fail_op (or of any op if fail_any) return fail_err. */
	enum fake_op fail_op;
	bool fail_any;
	int fail_err;
	/* What probe_size reports (the size at init), and how often it was asked. */
	uint64_t storage_size;
	unsigned probes;
};

void fake_backend_init(struct fake_backend *fb, uint64_t size);
void fake_backend_fail_next(struct fake_backend *fb, enum fake_op op, int err);
void fake_backend_free(struct fake_backend *fb);

#endif
