/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The RBD backend: an image of a Ceph cluster, through librbd, with the
 * asynchronous calls (rbd_aio_*), many requests in flight on each worker.
 */
#ifndef DMUSERD_BACKEND_RBD_H
#define DMUSERD_BACKEND_RBD_H

#include "backend.h"

/*
 * Connect to the cluster args->uri names (rbd:POOL/[NAMESPACE/]IMAGE
 * [?conf=PATH&id=USER]) and open the image.  Prints the reason and
 * returns -1 on failure, -2 when the URI itself is bad.
 */
int dmu_rbd_backend_open(const struct dmu_backend_args *args, struct dmu_backend **b);
void dmu_rbd_backend_close(struct dmu_backend *b);

#endif
