/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A backend stores the device's bytes.  libdmuser's blocking loop turns
 * each request into callbacks, and ops.c into calls on this small ops table; a second backend is one new file that
 * fills it in.
 *
 * Every op returns 0 or a negative errno.  Offsets and lengths are in bytes
 * and already checked against the device size.  All ops may be called
 * concurrently from every worker thread: implementations keep no mutable
 * shared state on these paths.
 */
#ifndef DMUSERD_BACKEND_H
#define DMUSERD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dmu_backend;

struct dmu_backend_ops {
	/* Fill buf with len bytes from off. */
	int (*read)(struct dmu_backend *b, void *buf, size_t len, uint64_t off);
	/* Store len bytes of buf at off (not necessarily durable yet). */
	int (*write)(struct dmu_backend *b, const void *buf, size_t len, uint64_t off);
	/* Make every completed write durable. */
	int (*flush)(struct dmu_backend *b);
	/* Forget a range; reads of it must return zeroes afterwards. */
	int (*discard)(struct dmu_backend *b, uint64_t off, uint64_t len);
	/*
	 * Make a range read as zeroes.  may_unmap: storage may be
	 * deallocated (the request did not carry NOUNMAP).
	 */
	int (*write_zeroes)(struct dmu_backend *b, uint64_t off, uint64_t len,
			    bool may_unmap);
	/* Overwrite a range with zeroes, durably. */
	int (*secure_erase)(struct dmu_backend *b, uint64_t off, uint64_t len);
	/*
	 * Optional (NULL: the size never changes): the bytes the storage
	 * holds now, in *size.  libdmuser asks when a request lies beyond
	 * the size it knows: the device may have grown since start-up
	 * (dmuserd --resize grows the backing file before the table).
	 */
	int (*probe_size)(struct dmu_backend *b, uint64_t *size);
};

struct dmu_backend {
	const struct dmu_backend_ops *ops;
	/*
	 * Bytes exposed as the device at start-up.  libdmuser keeps the size
	 * served from then on, and raises it after probe_size when a request
	 * lies beyond it.
	 */
	uint64_t size;
	/*
	 * Alignment the buffers given to read and write should have, in
	 * bytes (O_DIRECT); 0 or 1 for none.  Callers that cannot meet it
	 * cheaply may still pass other buffers: they must work, if slower.
	 */
	size_t mem_align;
};

#endif
