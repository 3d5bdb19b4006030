/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The two renderings of a metrics snapshot: JSON (the /metrics default,
 * described by metrics.schema.json) and Prometheus text format 0.0.4.
 * Pure functions of their inputs, so the unit tests check them directly.
 */
#ifndef DMUSERD_METRICS_RENDER_H
#define DMUSERD_METRICS_RENDER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "metrics.h"

/* Everything a scrape reports besides the counters. */
struct dmu_metrics_info {
	const char *version;
	const char *name;		/* dm device name */
	const char *backing_file;
	const char *control_path;	/* /dev/dm-user/<name> */
	uint64_t size_bytes;
	unsigned threads;
	bool read_only;
	bool direct;
	double uptime_seconds;
	const char *target_status;	/* the target's status line, or NULL */
};

/* A numeric field of the target's status line, named (see metrics_render.c). */
struct dmu_status_field {
	char key[48];
	uint64_t value;
};

size_t dmu_parse_target_status(const char *line, struct dmu_status_field *fields,
			       size_t max);

/* New reference; NULL if out of memory. */
json_t *dmu_render_json(const struct dmu_metrics_snapshot *s,
			const struct dmu_metrics_info *info);

/* Returns 0, or -1 if writing to out failed. */
int dmu_render_prometheus(const struct dmu_metrics_snapshot *s,
			  const struct dmu_metrics_info *info, FILE *out);

#endif
