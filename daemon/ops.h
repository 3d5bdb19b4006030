/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dmuserd's callbacks for libdmuser's blocking loop (struct dmu_ops), and
 * for its asynchronous API (struct dmu_async_ops, an asynchronous backend): each
 * hands the request to the backend (backend.h), after what only dmuserd
 * adds: --inject-delay-us, --read-only on a device whose table is not
 * read-only (--attach), and a count of the calls, by which a worker tells
 * a channel that served from one that broke straight away.  The wire
 * protocol, batching, PREFLUSH/FUA, the range check and the metrics are
 * the library's.
 */
#ifndef DMUSERD_OPS_H
#define DMUSERD_OPS_H

#include <dmuser.h>
#include <stdbool.h>

#include "backend.h"

struct dmu_serve_ctx {
	struct dmu_backend *backend;
	unsigned inject_delay_us;	/* slept in each callback, before the backend */
	bool read_only;			/* refuse every change with EROFS */
	bool splice;			/* dmu_serve_splice_ops where the backend can */
	unsigned long calls;		/* callbacks made: only the serving thread writes it */
};

/* Pass a struct dmu_serve_ctx as the argument; one per serving thread. */
extern const struct dmu_ops dmu_serve_ops;
/* The same with locate, for a backend that has it (backend->ops->locate). */
extern const struct dmu_ops dmu_serve_splice_ops;
/* The same for an asynchronous backend (backend->ops->async): its submit. */
extern const struct dmu_async_ops dmu_serve_async_ops;

#endif
