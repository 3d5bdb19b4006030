/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The backend's own counters (struct dmu_backend_counters), added to what
 * libdmuser renders at /metrics: a "backend" object in the JSON, and
 * dmuser_backend_* series at the end of the Prometheus text.
 */
#ifndef DMUSERD_BACKEND_METRICS_H
#define DMUSERD_BACKEND_METRICS_H

#include <dmuser.h>

#include "backend.h"

/*
 * *buf (malloc'ed, NUL-terminated, *len bytes, as dmu_metrics_render()
 * made it) gets the counters; replaced by a new malloc'ed text.  0 or a
 * negative errno (*buf is then left as it was).
 */
int dmu_backend_metrics_add(const struct dmu_backend_counters *c,
			    enum dmu_metrics_format format, char **buf, size_t *len);

#endif
