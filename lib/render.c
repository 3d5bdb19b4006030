// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The two renderings of a device's metrics: JSON (the document dmuserd
 * serves at /metrics, described by daemon/metrics.schema.json) and
 * Prometheus text format 0.0.4.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "internal.h"

/* A numeric field of the target's status line, named. */
struct status_field {
	char key[48];
	uint64_t value;
};

/* ---- the target's status line ------------------------------------------ */

#define MAX_STATUS_FIELDS 32

static bool parse_u64(const char *text, size_t len, uint64_t *out)
{
	char buf[32];
	char *end;

	if (len == 0 || len >= sizeof(buf) || !isdigit((unsigned char)text[0]))
		return false;
	memcpy(buf, text, len);
	buf[len] = '\0';
	errno = 0;
	unsigned long long v = strtoull(buf, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool set_key(struct status_field *f, const char *text, size_t len)
{
	if (len == 0 || len >= sizeof(f->key) || !isalpha((unsigned char)text[0]))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)text[i];

		f->key[i] = isalnum(ch) ? (char)tolower(ch) : '_';
	}
	f->key[len] = '\0';
	return true;
}

/*
 * dm-user's status line is thirteen numbers from target 1.5.0, seven before
 * (module/README.md "Status and messages"):
 *   <channels> <queued> <in_flight> <completed> <errors> <timeouts> <requeues>
 *   <depth_waits> <depth_wait_us> <hwm_queued> <hwm_in_flight> <stalls> <oldest_us>
 * An older target's line simply ends after requeues.  Numbers past those
 * thirteen (a newer target's) are named field_<n>.  A line that does not
 * start with a number is read as "key value" pairs and "key=value" words
 * instead, so a differently built target still reports what it can.
 */
static const char *const status_names[] = {
	"channels", "queued", "in_flight", "completed", "errors", "timeouts", "requeues",
	"depth_waits", "depth_wait_us", "hwm_queued", "hwm_in_flight", "stalls", "oldest_us",
};

static size_t split(const char *line, const char **tok, size_t *tlen, size_t max)
{
	size_t n = 0;

	for (const char *p = line; *p && n < max;) {
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		tok[n] = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		tlen[n] = (size_t)(p - tok[n]);
		n++;
	}
	return n;
}

static size_t parse_positional(const char **tok, const size_t *tlen, size_t ntok,
			       struct status_field *fields, size_t max)
{
	size_t n = 0;
	const size_t nnames = sizeof(status_names) / sizeof(status_names[0]);

	for (size_t i = 0; i < ntok && n < max; i++) {
		if (!parse_u64(tok[i], tlen[i], &fields[n].value))
			break;
		if (i < nnames)
			snprintf(fields[n].key, sizeof(fields[n].key), "%s", status_names[i]);
		else
			snprintf(fields[n].key, sizeof(fields[n].key), "field_%zu", i);
		n++;
	}
	return n;
}

static size_t parse_pairs(const char **tok, const size_t *tlen, size_t ntok,
			  struct status_field *fields, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < ntok && n < max; i++) {
		const char *eq = memchr(tok[i], '=', tlen[i]);
		struct status_field *f = &fields[n];

		if (eq) {
			size_t klen = (size_t)(eq - tok[i]);

			if (set_key(f, tok[i], klen) &&
			    parse_u64(eq + 1, tlen[i] - klen - 1, &f->value))
				n++;
		} else if (i + 1 < ntok && set_key(f, tok[i], tlen[i]) &&
			   parse_u64(tok[i + 1], tlen[i + 1], &f->value)) {
			n++;
			i++;
		}
	}
	return n;
}

static size_t parse_target_status(const char *line, struct status_field *fields,
			       size_t max)
{
	const char *tok[64];
	size_t tlen[64];
	size_t ntok = line ? split(line, tok, tlen, 64) : 0;

	if (ntok && isdigit((unsigned char)tok[0][0]))
		return parse_positional(tok, tlen, ntok, fields, max);
	return parse_pairs(tok, tlen, ntok, fields, max);
}

/* ---- JSON -------------------------------------------------------------- */

static json_t *json_u64(uint64_t v)
{
	return json_integer((json_int_t)(v > INT64_MAX ? INT64_MAX : v));
}

static json_t *json_histogram(const struct op_snapshot *op)
{
	json_t *buckets = json_array();

	for (unsigned i = 0; i < HIST_BUCKETS - 1; i++)
		json_array_append_new(buckets, json_pack("{s:o, s:o}",
			"upper", json_u64(dmu__hist_upper_ns(i)),
			"count", json_u64(op->latency[i])));
	return json_pack("{s:o, s:o, s:o, s:o}",
			 "count", json_u64(op->latency_count),
			 "sum", json_u64(op->latency_sum_ns),
			 "buckets", buckets,
			 "overflow", json_u64(op->latency[HIST_BUCKETS - 1]));
}

static json_t *json_ops(const struct metrics_snapshot *s)
{
	json_t *ops = json_object();

	for (unsigned i = 0; i < MOP_COUNT; i++) {
		const struct op_snapshot *op = &s->op[i];

		json_object_set_new(ops, dmu__mop_name(i), json_pack("{s:o, s:o, s:o, s:o}",
			"requests", json_u64(op->requests),
			"bytes", json_u64(op->bytes),
			"errors", json_u64(op->errors),
			"latency_ns", json_histogram(op)));
	}
	return ops;
}

json_t *dmu__kernel_status_json(const char *status)
{
	struct status_field f[MAX_STATUS_FIELDS];
	size_t n = status ? parse_target_status(status, f, MAX_STATUS_FIELDS) : 0;
	json_t *fields = json_object();

	for (size_t i = 0; i < n; i++)
		json_object_set_new(fields, f[i].key, json_u64(f[i].value));
	return json_pack("{s:b, s:o, s:o}",
			 "available", status != NULL,
			 "status", status ? json_string(status) : json_null(),
			 "fields", fields);
}

static json_t *render_json(const struct metrics_snapshot *s,
			const struct render_info *info)
{
	json_t *replies = json_object();

	for (unsigned i = 0; i < STATUS_COUNT; i++)
		json_object_set_new(replies, dmu__status_name(i), json_u64(s->replies[i]));

	return json_pack("{s:s, s:{s:s, s:o, s:b, s:s, s:s, s:s, s:b}, s:i, s:f,"
			 " s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
		"version", info->version,
		"device",
			"name", info->name,
			"size_bytes", json_u64(info->size_bytes),
			"read_only", info->read_only,
			"backing_file", info->backing_file,
			"backend", info->backend,
			"control_path", info->control_path,
			"direct", info->direct,
		"threads", (int)info->threads,
		"uptime_seconds", info->uptime_seconds,
		"in_flight", json_u64(s->in_flight),
		"backend_flushes", json_u64(s->backend_flushes),
		"channel_reopens", json_u64(s->channel_reopens),
		"channel_reads", json_u64(s->channel_reads),
		"channel_requests_read", json_u64(s->channel_requests_read),
		"channel_writes", json_u64(s->channel_writes),
		"channels_batched", json_u64(s->channels_batched),
		"replies", replies,
		"ops", json_ops(s),
		"target", dmu__kernel_status_json(info->target_status));
}

/* ---- Prometheus text format 0.0.4 -------------------------------------- */

static void per_op_counter(FILE *out, const struct metrics_snapshot *s,
			   const char *name, const char *help, size_t field)
{
	dmu__prom_family(out, name, "counter", help);
	for (unsigned i = 0; i < MOP_COUNT; i++) {
		const uint64_t *v = (const uint64_t *)((const char *)&s->op[i] + field);

		fprintf(out, "%s{op=\"%s\"} %" PRIu64 "\n", name, dmu__mop_name(i), *v);
	}
}

static void histogram(FILE *out, const struct metrics_snapshot *s)
{
	const char *name = "dmuser_request_duration_seconds";
	double le[HIST_BUCKETS - 1];

	for (unsigned b = 0; b < HIST_BUCKETS - 1; b++)
		le[b] = (double)dmu__hist_upper_ns(b) / 1e9;
	dmu__prom_family(out, name, "histogram",
	       "Time from reading a request to writing its reply, by operation.");
	for (unsigned i = 0; i < MOP_COUNT; i++) {
		const struct op_snapshot *op = &s->op[i];
		char labels[64], sum[48];

		snprintf(labels, sizeof(labels), "op=\"%s\"", dmu__mop_name(i));
		snprintf(sum, sizeof(sum), "%" PRIu64 ".%09" PRIu64,
			 op->latency_sum_ns / 1000000000u, op->latency_sum_ns % 1000000000u);
		dmu__prom_histogram(out, name, labels, op->latency, le, HIST_BUCKETS, sum);
	}
}

static void gauge(FILE *out, const char *name, const char *help, double v)
{
	dmu__prom_family(out, name, "gauge", help);
	fprintf(out, "%s %.17g\n", name, v);
}

/*
 * The kernel's numbers from the target's status line, under the names
 * dmuserd and bpf/dmuser-exporter give them (dmuser_kernel_*, README.md
 * "Metric names"): its cumulative counts are counters, its current levels
 * gauges, and a field in microseconds (usec) is exported in seconds, the
 * base unit.  A field not known here (a newer target's) is a gauge named
 * after its key.
 */
static const struct {
	const char *key, *name, *type, *help;
	bool usec;
} kernel_fields[] = {
	{ "channels", "dmuser_kernel_channels", "gauge",
	  "Control-device channels open on the target.", false },
	{ "queued", "dmuser_kernel_queued_requests", "gauge",
	  "Requests queued in the kernel for a daemon to read.", false },
	{ "in_flight", "dmuser_kernel_in_flight_requests", "gauge",
	  "Requests a daemon has read and not yet answered, as the kernel counts them.", false },
	{ "completed", "dmuser_kernel_requests_total", "counter",
	  "Requests the target completed.", false },
	{ "errors", "dmuser_kernel_errors_total", "counter",
	  "Requests the target completed with an error.", false },
	{ "timeouts", "dmuser_kernel_timeouts_total", "counter",
	  "Requests the target ended after timeout_ms.", false },
	{ "requeues", "dmuser_kernel_requeues_total", "counter",
	  "Requests the target queued again after their channel closed.", false },
	{ "depth_waits", "dmuser_kernel_depth_waits_total", "counter",
	  "Requests whose submitter waited in map() because queue_depth was full.", false },
	{ "depth_wait_us", "dmuser_kernel_depth_wait_seconds_total", "counter",
	  "Time those submitters waited for queue_depth, in all.", true },
	{ "hwm_queued", "dmuser_kernel_queued_requests_hwm", "gauge",
	  "Most requests queued at once since the device was created or the last reset_hwm.", false },
	{ "hwm_in_flight", "dmuser_kernel_in_flight_requests_hwm", "gauge",
	  "Most requests held by daemons at once since the device was created or the last reset_hwm.",
	  false },
	{ "stalls", "dmuser_kernel_stalls_total", "counter",
	  "Requests a daemon held longer than stall_ms (dm_user_stall events).",
	  false },
	{ "oldest_us", "dmuser_kernel_oldest_request_age_seconds", "gauge",
	  "Age, from map(), of the oldest request the target holds now; 0 if none.", true },
};

/* "name value" or "name{labels} value"; a usec value in seconds, exactly. */
static void kernel_sample(FILE *out, const char *name, const char *labels, uint64_t v,
			  bool usec)
{
	fputs(name, out);
	if (*labels)
		fprintf(out, "{%s}", labels);
	if (usec)
		fprintf(out, " %" PRIu64 ".%06" PRIu64 "\n", v / 1000000u, v % 1000000u);
	else
		fprintf(out, " %" PRIu64 "\n", v);
}

/* The first value of key in fields, if there. */
static bool find_field(const struct status_field *f, size_t n, const char *key, uint64_t *v)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(f[i].key, key)) {
			*v = f[i].value;
			return true;
		}
	return false;
}

static bool listed(const char *const *keys, const char *key)
{
	for (; keys && *keys; keys++)
		if (!strcmp(*keys, key))
			return true;
	return false;
}

static bool known_key(const char *key)
{
	for (size_t k = 0; k < sizeof(kernel_fields) / sizeof(kernel_fields[0]); k++)
		if (!strcmp(kernel_fields[k].key, key))
			return true;
	return false;
}

int dmu__kernel_status_prom(FILE *out, const struct kernel_status_series *series, size_t n,
			    const char *const *skip_keys)
{
	const size_t nknown = sizeof(kernel_fields) / sizeof(kernel_fields[0]);
	struct status_field (*f)[MAX_STATUS_FIELDS] = n ? calloc(n, sizeof(*f)) : NULL;
	size_t *nf = n ? calloc(n, sizeof(*nf)) : NULL;
	uint64_t v;

	if (n && (!f || !nf)) {
		free(f);
		free(nf);
		return -ENOMEM;
	}
	for (size_t d = 0; d < n; d++)
		nf[d] = series[d].status ?
			parse_target_status(series[d].status, f[d], MAX_STATUS_FIELDS) : 0;

	dmu__prom_family(out, "dmuser_kernel_status_up", "gauge",
			 "1 if the target's status could be read from the kernel.");
	for (size_t d = 0; d < n; d++)
		kernel_sample(out, "dmuser_kernel_status_up", series[d].labels,
			      series[d].status != NULL, false);

	/* the known fields, in the table's order */
	for (size_t k = 0; k < nknown; k++) {
		bool announced = false;

		if (listed(skip_keys, kernel_fields[k].key))
			continue;
		for (size_t d = 0; d < n; d++) {
			if (!find_field(f[d], nf[d], kernel_fields[k].key, &v))
				continue;
			if (!announced)
				dmu__prom_family(out, kernel_fields[k].name, kernel_fields[k].type,
						 kernel_fields[k].help);
			announced = true;
			kernel_sample(out, kernel_fields[k].name, series[d].labels, v,
				      kernel_fields[k].usec);
		}
	}

	/* the others, each where it first appears: every device's sample of it together */
	for (size_t d = 0; d < n; d++) {
		for (size_t i = 0; i < nf[d]; i++) {
			const char *key = f[d][i].key;
			bool seen = known_key(key) || listed(skip_keys, key) ||
				    find_field(f[d], i, key, &v);
			char name[80];

			for (size_t e = 0; e < d && !seen; e++)
				seen = find_field(f[e], nf[e], key, &v);
			if (seen)
				continue;
			snprintf(name, sizeof(name), "dmuser_kernel_status_%.47s", key);
			dmu__prom_family(out, name, "gauge", "A field of the target's status line.");
			for (size_t e = d; e < n; e++)
				if (find_field(f[e], nf[e], key, &v))
					kernel_sample(out, name, series[e].labels, v, false);
		}
	}
	free(f);
	free(nf);
	return 0;
}

static int render_prometheus(const struct metrics_snapshot *s,
			  const struct render_info *info, FILE *out)
{
	dmu__prom_family(out, "dmuser_info", "gauge",
			 "Daemon version, device name and backend; always 1.");
	fputs("dmuser_info{version=\"", out);
	dmu__prom_label_value(out, info->version);
	fputs("\",device=\"", out);
	dmu__prom_label_value(out, info->name);
	fputs("\",backend=\"", out);
	dmu__prom_label_value(out, info->backend);
	fputs("\"} 1\n", out);

	gauge(out, "dmuser_device_size_bytes", "Size of the device.", (double)info->size_bytes);
	gauge(out, "dmuser_read_only", "1 if the device is read-only.", info->read_only);
	gauge(out, "dmuser_threads", "Channels open (one per serving thread).", info->threads);
	gauge(out, "dmuser_uptime_seconds", "Time since the daemon started.", info->uptime_seconds);
	gauge(out, "dmuser_in_flight_requests",
	      "Requests read from the kernel and not yet answered.", (double)s->in_flight);

	per_op_counter(out, s, "dmuser_requests_total", "Requests answered, by operation.",
		       offsetof(struct op_snapshot, requests));
	per_op_counter(out, s, "dmuser_request_bytes_total",
		       "Bytes covered by successful requests, by operation.",
		       offsetof(struct op_snapshot, bytes));
	per_op_counter(out, s, "dmuser_request_errors_total",
		       "Requests answered with an error, by operation.",
		       offsetof(struct op_snapshot, errors));

	dmu__prom_family(out, "dmuser_replies_total", "counter", "Replies sent, by status.");
	for (unsigned i = 0; i < STATUS_COUNT; i++)
		fprintf(out, "dmuser_replies_total{status=\"%s\"} %" PRIu64 "\n",
			dmu__status_name(i), s->replies[i]);

	dmu__prom_family(out, "dmuser_backend_flushes_total", "counter",
	       "Flushes issued to the backend (FLUSH, PREFLUSH, FUA).");
	fprintf(out, "dmuser_backend_flushes_total %" PRIu64 "\n", s->backend_flushes);
	dmu__prom_family(out, "dmuser_channel_reopens_total", "counter",
	       "Channels closed and reopened after a broken stream.");
	fprintf(out, "dmuser_channel_reopens_total %" PRIu64 "\n", s->channel_reopens);
	dmu__prom_family(out, "dmuser_channel_reads_total", "counter",
	       "read() calls on the control device that returned data.");
	fprintf(out, "dmuser_channel_reads_total %" PRIu64 "\n", s->channel_reads);
	dmu__prom_family(out, "dmuser_channel_requests_read_total", "counter",
	       "Requests those reads brought (several per read when batching).");
	fprintf(out, "dmuser_channel_requests_read_total %" PRIu64 "\n",
		s->channel_requests_read);
	dmu__prom_family(out, "dmuser_channel_writes_total", "counter",
	       "write() and writev() calls on the control device that sent replies.");
	fprintf(out, "dmuser_channel_writes_total %" PRIu64 "\n", s->channel_writes);
	gauge(out, "dmuser_channels_batched",
	      "Channels whose reads return several requests (DM_USER_CHANNEL_BATCH).",
	      (double)s->channels_batched);

	histogram(out, s);
	struct kernel_status_series target = { .labels = "", .status = info->target_status };
	if (dmu__kernel_status_prom(out, &target, 1, NULL))
		return -1;
	return ferror(out) ? -1 : 0;
}

/* ---- the public entry point -------------------------------------------- */

static int render_json_text(const struct metrics_snapshot *s, const struct render_info *info,
			    char **buf, size_t *len)
{
	json_t *doc = render_json(s, info);
	char *text = doc ? json_dumps(doc, JSON_INDENT(2)) : NULL;
	size_t n;
	char *nl;

	json_decref(doc);
	if (!text)
		return -ENOMEM;
	/* JSON_INDENT leaves no final newline; curl users like one */
	n = strlen(text);
	nl = realloc(text, n + 2);
	if (!nl) {
		free(text);
		return -ENOMEM;
	}
	nl[n++] = '\n';
	nl[n] = '\0';
	*buf = nl;
	if (len)
		*len = n;
	return 0;
}

int dmu__render_doc(const struct metrics_snapshot *s, const struct render_info *info,
		    enum dmu_metrics_format format, char **buf, size_t *len)
{
	size_t n = 0;
	FILE *out;
	int err;

	*buf = NULL;
	if (format == DMU_METRICS_JSON)
		return render_json_text(s, info, buf, len);
	if (format != DMU_METRICS_PROMETHEUS)
		return -EINVAL;
	out = open_memstream(buf, &n);
	if (!out)
		return -errno;
	err = render_prometheus(s, info, out);
	if (fclose(out) || err) {
		free(*buf);
		*buf = NULL;
		return -ENOMEM;
	}
	if (len)
		*len = n;
	return 0;
}

int dmu__render(struct dmu_device *dev, enum dmu_metrics_format format,
		const struct dmu_metrics_opts *opts, char **buf, size_t *len)
{
	struct metrics_snapshot snap;
	struct dmu_metrics_opts o;
	char status[1024];

	OPTS_COPY(o, opts);
	*buf = NULL;
	dmu__device_snapshot(dev, &snap);

	struct render_info info = {
		.version = o.version ? o.version : dmu_version(),
		.name = dev->name,
		.backing_file = o.backing_file && *o.backing_file ? o.backing_file : "-",
		.backend = o.backend && *o.backend ? o.backend : "-",
		.control_path = dev->control_path,
		.size_bytes = dmu_device_size(dev),
		.threads = snap.channels,
		.read_only = dev->read_only,
		.direct = o.direct,
		.uptime_seconds = (double)(dmu__now_ns() - dev->start_ns) / 1e9,
		.target_status = dmu__status_line(dev, status, sizeof(status)) ? NULL : status,
	};

	return dmu__render_doc(&snap, &info, format, buf, len);
}

DMU_API int dmu_metrics_render(struct dmu_device *dev, enum dmu_metrics_format format,
			       const struct dmu_metrics_opts *opts, char **buf, size_t *len)
{
	if (!dev || !buf)
		return -EINVAL;
	return dmu__render(dev, format, opts, buf, len);
}
