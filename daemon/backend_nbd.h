/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The NBD backend: an export of an NBD server, through libnbd, with one
 * connection (one libnbd handle) per worker and the asynchronous calls
 * (nbd_aio_*), many requests in flight on each.
 */
#ifndef DMUSERD_BACKEND_NBD_H
#define DMUSERD_BACKEND_NBD_H

#include "backend.h"

/*
 * Connect args->workers handles to args->uri (nbd_connect_uri parses it).
 * Prints the reason and returns -1 on failure, -2 when libnbd finds the
 * URI itself bad.
 */
int dmu_nbd_backend_open(const struct dmu_backend_args *args, struct dmu_backend **b);
void dmu_nbd_backend_close(struct dmu_backend *b);

#endif
