// SPDX-License-Identifier: LGPL-2.1-or-later
#include "internal.h"

#include <inttypes.h>

void dmu__prom_family(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void dmu__prom_label_value(FILE *out, const char *v)
{
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(out, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", out);
		else
			fputc(*v, out);
	}
}

void dmu__prom_histogram(FILE *out, const char *name, const char *labels,
			const uint64_t *counts, const double *le, unsigned n,
			const char *sum_text)
{
	const char *sep = *labels ? "," : "";
	uint64_t cumulative = 0;

	for (unsigned i = 0; i + 1 < n; i++) {
		cumulative += counts[i];
		fprintf(out, "%s_bucket{%s%sle=\"%.12g\"} %" PRIu64 "\n",
			name, labels, sep, le[i], cumulative);
	}
	if (n)
		cumulative += counts[n - 1];
	fprintf(out, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep,
		cumulative);
	if (*labels) {
		fprintf(out, "%s_sum{%s} %s\n", name, labels, sum_text);
		fprintf(out, "%s_count{%s} %" PRIu64 "\n", name, labels, cumulative);
	} else {
		fprintf(out, "%s_sum %s\n", name, sum_text);
		fprintf(out, "%s_count %" PRIu64 "\n", name, cumulative);
	}
}
