/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Internal helpers of libdmuser that the tree's own programs use as well
 * (bpf/dmuser-exporter): Prometheus text pieces and listen addresses.
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
