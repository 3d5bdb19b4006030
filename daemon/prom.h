/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Prometheus text format 0.0.4, the pieces shared by dmuserd
 * (metrics_render.c) and bpf/dmuser-exporter: metric families, label
 * values, and histograms rendered from non-cumulative log2 buckets.
 */
#ifndef DMUSERD_PROM_H
#define DMUSERD_PROM_H

#include <stdint.h>
#include <stdio.h>

/* "# HELP name help\n# TYPE name type\n" */
void dmu_prom_family(FILE *out, const char *name, const char *type, const char *help);

/* A label value with backslash, double quote and newline escaped. */
void dmu_prom_label_value(FILE *out, const char *v);

/*
 * One histogram series.  counts[0..n-1] are per bucket (not cumulative):
 * bucket i < n - 1 holds the values <= le[i] (and above le[i - 1]);
 * counts[n - 1] is the overflow, above le[n - 2], counted only in +Inf.
 * labels is the series' other labels, already formatted ("op=\"read\"")
 * or "" for none.  Prints the cumulative _bucket lines, +Inf (equal to
 * _count, the sum of counts), _sum (sum_text, as given) and _count.
 */
void dmu_prom_histogram(FILE *out, const char *name, const char *labels,
			const uint64_t *counts, const double *le, unsigned n,
			const char *sum_text);

#endif
