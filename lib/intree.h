/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal helpers of libdmuser that the tree's own programs use as well
 * (bpf/dmuser-exporter): Prometheus text pieces, the target's status line
 * as metrics, and listen addresses.
 * They are not API: this header is never installed, and the functions are
 * hidden dmu__* symbols, absent from libdmuser.so's exports (the version
 * script exports dmu_* only, and a hidden symbol never leaves the library;
 * tests/unit/lib checks both).  A program in the tree reaches them by
 * linking libdmuser.a; changing them breaks no ABI, only those callers,
 * which build with the tree.
 */
#ifndef DMUSER_INTREE_H
#define DMUSER_INTREE_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <jansson.h>

#define DMU_INTREE __attribute__((visibility("hidden")))

/* ---- prom.c: Prometheus text format 0.0.4 pieces ---- */

/* "# HELP name help\n# TYPE name type\n" */
DMU_INTREE void dmu__prom_family(FILE *out, const char *name, const char *type,
				 const char *help);

/* A label value with backslash, double quote and newline escaped. */
DMU_INTREE void dmu__prom_label_value(FILE *out, const char *v);

/*
 * One histogram series.  counts[0..n-1] are per bucket (not cumulative):
 * bucket i < n - 1 holds the values <= le[i] (and above le[i - 1]);
 * counts[n - 1] is the overflow, above le[n - 2], counted only in +Inf.
 * labels is the series' other labels, already formatted ("op=\"read\"")
 * or "" for none.  Prints the cumulative _bucket lines, +Inf (equal to
 * _count, the sum of counts), _sum (sum_text, as given) and _count.
 */
DMU_INTREE void dmu__prom_histogram(FILE *out, const char *name, const char *labels,
				    const uint64_t *counts, const double *le, unsigned n,
				    const char *sum_text);

/* ---- render.c: the target's status line (dmsetup status) as metrics ---- */

/* One device's status line, and the labels its series carry. */
struct kernel_status_series {
	const char *labels;	/* formatted ("device=\"a\""), or "" for none */
	const char *status;	/* the "user" target's status line; NULL: not read */
};

/*
 * The dmuser_kernel_* families of n devices' status lines, as dmuserd
 * renders its own device's (README.md "Metric names"): first
 * dmuser_kernel_status_up (1 if status is not NULL), then each field the
 * lines have, named from render.c's one table (a counter or a gauge;
 * depth_wait_us and oldest_us in seconds), every device's sample of a
 * family together under one HELP and TYPE; a field not in the table is a
 * gauge dmuser_kernel_status_<key>.  A key given twice in one line counts
 * once (its first value).  skip_keys (NULL-terminated, or NULL) are
 * status-line keys not to render, for a program that exports those
 * numbers under the same names from elsewhere.  Returns 0, or -ENOMEM.
 */
DMU_INTREE int dmu__kernel_status_prom(FILE *out, const struct kernel_status_series *series,
				       size_t n, const char *const *skip_keys);

/*
 * A status line as the JSON "target" object: {"available": status != NULL,
 * "status": status or null, "fields": {key: number}} (daemon/metrics.schema.json).
 * New reference; NULL if out of memory.
 */
DMU_INTREE json_t *dmu__kernel_status_json(const char *status);

/* ---- listen.c ---- */

struct listen_addr {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	char host[64];			/* as it will be printed: "1.2.3.4" or "[::1]" */
};

/*
 * A listen address as dmu_http_start() takes it: "PORT" or ":PORT"
 * (127.0.0.1), "HOST:PORT" (HOST through getaddrinfo, so "localhost:9180"
 * works; the first address it gives) or "[IPV6]:PORT".  Returns 0,
 * -EINVAL for bad syntax or a port past 65535, -EADDRNOTAVAIL if HOST
 * does not resolve.
 */
DMU_INTREE int dmu__parse_listen(const char *text, struct listen_addr *out);

#endif
