// SPDX-License-Identifier: GPL-2.0
/*
 * dmuser-exporter's two renderings of the dmuser_lat maps.
 *
 * The BPF histograms are bcc's floor-based log2 slots: slot i holds values
 * in [2^i, 2^(i+1)), slot 0 holds 0 and 1, and the last slot also holds
 * everything larger.  Prometheus buckets are "at most le", so slot i is
 * exported with le = 2^(i+1) microseconds (any value below that bound is
 * at most it), the buckets are made cumulative, and the last slot goes to
 * +Inf only, which therefore equals _count.  Queue depths are integers, so
 * their slot i is exactly "at most 2^(i+1) - 1".
 *
 * The target's status line of each device is rendered by libdmuser's
 * dmu__kernel_status_prom() and dmu__kernel_status_json() (lib/intree.h),
 * dmuserd's own code and name table, with the device label added.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <linux/dm-user.h>

#include "dmuser-exporter.h"
#include "trace_helpers.h"
#include "intree.h"		/* libdmuser's Prometheus text pieces */

static const char *const qd_names[DMU_NR_QD] = {
	[DMU_QD_QUEUED] = "dmuser_kernel_queued_requests_at_map",
	[DMU_QD_IN_FLIGHT] = "dmuser_kernel_in_flight_requests_at_map",
};

static const char *const qd_json[DMU_NR_QD] = {
	[DMU_QD_QUEUED] = "queue_depth",
	[DMU_QD_IN_FLIGHT] = "in_flight",
};

static int cmp3(__u32 a1, __u32 a2, __u32 a3, __u32 b1, __u32 b2, __u32 b3)
{
	if (a1 != b1)
		return a1 < b1 ? -1 : 1;
	if (a2 != b2)
		return a2 < b2 ? -1 : 1;
	if (a3 != b3)
		return a3 < b3 ? -1 : 1;
	return 0;
}

static int cmp_hist(const void *a, const void *b)
{
	const struct dmu_hist_key *x = &((const struct dmu_exp_hist *)a)->key;
	const struct dmu_hist_key *y = &((const struct dmu_exp_hist *)b)->key;

	return cmp3(x->dev, x->op, x->kind, y->dev, y->op, y->kind);
}

static int cmp_stat(const void *a, const void *b)
{
	const struct dmu_op_key *x = &((const struct dmu_exp_stat *)a)->key;
	const struct dmu_op_key *y = &((const struct dmu_exp_stat *)b)->key;

	return cmp3(x->dev, x->op, 0, y->dev, y->op, 0);
}

/* Adds dev to s->devs, unless there; -ENOSPC if there is no room. */
static int add_dev(struct dmu_exp_snapshot *s, int max, __u32 dev, dmu_exp_name_fn name_fn)
{
	int i;

	for (i = 0; i < s->ndevs; i++)
		if (s->devs[i].dev == dev)
			return 0;
	if (s->ndevs == max)
		return -ENOSPC;
	s->devs[s->ndevs].dev = dev;
	s->devs[s->ndevs].status = NULL;
	name_fn(dev, s->devs[s->ndevs].name, sizeof(s->devs[s->ndevs].name));
	s->ndevs++;
	return 0;
}

/* Gives a target's device its status line, adding it under its dm name if new. */
static int add_target(struct dmu_exp_snapshot *s, int max, const struct dmu_exp_target *t)
{
	int i;

	for (i = 0; i < s->ndevs; i++)
		if (s->devs[i].dev == t->dev)
			break;
	if (i == s->ndevs) {
		if (s->ndevs == max)
			return -ENOSPC;
		s->devs[i].dev = t->dev;
		snprintf(s->devs[i].name, sizeof(s->devs[i].name), "%s", t->name);
		s->ndevs++;
	}
	s->devs[i].status = t->status;
	return 0;
}

static int cmp_dev(const void *a, const void *b)
{
	const struct dmu_exp_dev *x = a, *y = b;

	return cmp3(x->dev, 0, 0, y->dev, 0, 0);
}

void dmu_exp_split(struct dmu_exp_snapshot *s, const struct dmu_exp_rec *recs, int n)
{
	int i, k;

	s->nlat = s->nqd = s->nst = 0;
	for (i = 0; i < n; i++) {
		const struct dmu_exp_rec *r = &recs[i];

		for (k = 0; k < DMU_NR_STAGES; k++) {
			if (!dmu_hist_total(r->rec.lat[k].slots, DMU_MAX_SLOTS))
				continue;
			s->lat[s->nlat].key = (struct dmu_hist_key){ r->key.dev, r->key.op, k, 0 };
			s->lat[s->nlat++].hist = r->rec.lat[k];
		}
		for (k = 0; k < DMU_NR_QD; k++) {
			if (!dmu_hist_total(r->rec.qd[k].slots, DMU_MAX_SLOTS))
				continue;
			s->qd[s->nqd].key = (struct dmu_hist_key){ r->key.dev, r->key.op, k, 0 };
			s->qd[s->nqd++].hist = r->rec.qd[k];
		}
		if (r->rec.st.ios) {
			s->st[s->nst].key = r->key;
			s->st[s->nst++].st = r->rec.st;
		}
	}
}

int dmu_exp_prepare(struct dmu_exp_snapshot *s, struct dmu_exp_dev *devs, int max_devs,
		    dmu_exp_name_fn name_fn)
{
	int i, err = 0;

	qsort(s->lat, s->nlat, sizeof(*s->lat), cmp_hist);
	qsort(s->qd, s->nqd, sizeof(*s->qd), cmp_hist);
	qsort(s->st, s->nst, sizeof(*s->st), cmp_stat);
	s->devs = devs;
	s->ndevs = 0;
	for (i = 0; i < s->nst; i++)
		if (add_dev(s, max_devs, s->st[i].key.dev, name_fn))
			err = -ENOSPC;
	for (i = 0; i < s->nlat; i++)
		if (add_dev(s, max_devs, s->lat[i].key.dev, name_fn))
			err = -ENOSPC;
	for (i = 0; i < s->nqd; i++)
		if (add_dev(s, max_devs, s->qd[i].key.dev, name_fn))
			err = -ENOSPC;
	for (i = 0; i < s->ntargets; i++)
		if (add_target(s, max_devs, &s->targets[i]))
			err = -ENOSPC;
	qsort(s->devs, s->ndevs, sizeof(*s->devs), cmp_dev);
	return err;
}

/* The label of dev: its name, or its MAJ:MIN if it had no room in devs. */
static const char *dev_name(const struct dmu_exp_snapshot *s, __u32 dev, char *buf, size_t len)
{
	int i;

	for (i = 0; i < s->ndevs; i++)
		if (s->devs[i].dev == dev)
			return s->devs[i].name;
	snprintf(buf, len, "%u:%u", dmu_major(dev), dmu_minor(dev));
	return buf;
}

/* The devs of a sorted snapshot are in the same order as its entries. */
static void labels(char *buf, size_t len, const struct dmu_exp_snapshot *s, __u32 dev,
		   const char *op, const char *stage)
{
	char *v = NULL, mm[32];
	size_t vlen = 0;
	FILE *f = open_memstream(&v, &vlen);

	if (f) {
		dmu__prom_label_value(f, dev_name(s, dev, mm, sizeof(mm)));
		fclose(f);
	}
	snprintf(buf, len, "device=\"%s\"%s%s%s%s%s%s", v ? v : "",
		 op ? ",op=\"" : "", op ? op : "", op ? "\"" : "",
		 stage ? ",stage=\"" : "", stage ? stage : "", stage ? "\"" : "");
	free(v);
}

/* ---- Prometheus ---------------------------------------------------------- */

static void counter(FILE *out, const struct dmu_exp_snapshot *s, const char *name,
		    const char *help, size_t field)
{
	char lab[320], opbuf[16];
	int i;

	dmu__prom_family(out, name, "counter", help);
	for (i = 0; i < s->nst; i++) {
		const __u64 *v = (const __u64 *)((const char *)&s->st[i].st + field);

		labels(lab, sizeof(lab), s, s->st[i].key.dev,
		       dmu_op_name(s->st[i].key.op, opbuf, sizeof(opbuf)), NULL);
		fprintf(out, "%s{%s} %llu\n", name, lab, (unsigned long long)*v);
	}
}

static void slots_u64(const struct dmu_hist *h, uint64_t *counts)
{
	for (int i = 0; i < DMU_MAX_SLOTS; i++)
		counts[i] = h->slots[i];
}

static void latency(FILE *out, const struct dmu_exp_snapshot *s)
{
	const char *name = "dmuser_stage_latency_seconds";
	double le[DMU_MAX_SLOTS - 1];
	uint64_t counts[DMU_MAX_SLOTS];
	char lab[320], opbuf[16], sum[48];
	int i;

	for (i = 0; i < DMU_MAX_SLOTS - 1; i++)
		le[i] = (double)(2ULL << i) / 1e6;
	dmu__prom_family(out, name, "histogram",
			"Time of dm-user requests in each stage, seen by the kernel's tracepoints: "
			"queue (mapped to read by a daemon), daemon (read to reply), "
			"total (mapped to completed).");
	for (i = 0; i < s->nlat; i++) {
		const struct dmu_exp_hist *e = &s->lat[i];

		if (e->key.kind >= DMU_NR_STAGES)
			continue;
		labels(lab, sizeof(lab), s, e->key.dev,
		       dmu_op_name(e->key.op, opbuf, sizeof(opbuf)),
		       dmu_stage_names[e->key.kind]);
		snprintf(sum, sizeof(sum), "%llu.%06llu",
			 (unsigned long long)(e->hist.sum / 1000000),
			 (unsigned long long)(e->hist.sum % 1000000));
		slots_u64(&e->hist, counts);
		dmu__prom_histogram(out, name, lab, counts, le, DMU_MAX_SLOTS, sum);
	}
}

/* Queue depth per device: the per-op histograms of one kind, summed. */
static void depth_sum(const struct dmu_exp_snapshot *s, int *i, unsigned kind,
		      __u32 dev, struct dmu_hist *h)
{
	memset(h, 0, sizeof(*h));
	for (; *i < s->nqd && s->qd[*i].key.dev == dev; (*i)++) {
		if (s->qd[*i].key.kind != kind)
			continue;
		for (int k = 0; k < DMU_MAX_SLOTS; k++)
			h->slots[k] += s->qd[*i].hist.slots[k];
		h->sum += s->qd[*i].hist.sum;
	}
}

static void depth(FILE *out, const struct dmu_exp_snapshot *s, unsigned kind)
{
	double le[DMU_MAX_SLOTS - 1];
	uint64_t counts[DMU_MAX_SLOTS];
	char lab[320], sum[32];
	struct dmu_hist h;
	int i, d;

	for (i = 0; i < DMU_MAX_SLOTS - 1; i++)
		le[i] = (double)((2ULL << i) - 1);
	dmu__prom_family(out, qd_names[kind], "histogram", kind == DMU_QD_QUEUED ?
			"Requests queued for the daemon (this one included), sampled as each request is mapped." :
			"Requests taken by a daemon and not yet answered, sampled as each request is mapped.");
	for (d = 0, i = 0; d < s->ndevs; d++) {
		while (i < s->nqd && s->qd[i].key.dev < s->devs[d].dev)
			i++;
		if (i == s->nqd || s->qd[i].key.dev != s->devs[d].dev)
			continue;
		depth_sum(s, &i, kind, s->devs[d].dev, &h);
		labels(lab, sizeof(lab), s, s->devs[d].dev, NULL, NULL);
		snprintf(sum, sizeof(sum), "%llu", (unsigned long long)h.sum);
		slots_u64(&h, counts);
		dmu__prom_histogram(out, qd_names[kind], lab, counts, le, DMU_MAX_SLOTS, sum);
	}
}

/*
 * The status-line families (dmuser_kernel_status_up, _channels, ...,
 * _oldest_request_age_seconds), one series per device.  completed, errors
 * and timeouts are left out: the exporter's dmuser_kernel_requests_total,
 * _errors_total and _timeouts_total are the BPF counts by device and op
 * (since it attached), and a second, op-less series of the same family
 * would be counted twice by every sum().
 */
static int kernel_status(FILE *out, const struct dmu_exp_snapshot *s)
{
	static const char *const bpf_keys[] = { "completed", "errors", "timeouts", NULL };
	struct kernel_status_series *series = calloc(s->ndevs ? s->ndevs : 1, sizeof(*series));
	char (*lab)[320] = calloc(s->ndevs ? s->ndevs : 1, sizeof(*lab));
	int d, err = -ENOMEM;

	if (series && lab) {
		for (d = 0; d < s->ndevs; d++) {
			labels(lab[d], sizeof(lab[d]), s, s->devs[d].dev, NULL, NULL);
			series[d].labels = lab[d];
			series[d].status = s->devs[d].status;
		}
		err = dmu__kernel_status_prom(out, series, s->ndevs, bpf_keys);
	}
	free(series);
	free(lab);
	return err;
}

int dmu_exp_render_prometheus(const struct dmu_exp_snapshot *s, FILE *out)
{
	dmu__prom_family(out, "dmuser_exporter_info", "gauge",
			"dmuser-exporter's version and attach mode; always 1.");
	fprintf(out, "dmuser_exporter_info{version=\"%s\",attach=\"%s\"} 1\n",
		s->version, s->attach);
	dmu__prom_family(out, "dmuser_exporter_uptime_seconds", "gauge",
			"Time since dmuser-exporter attached.");
	fprintf(out, "dmuser_exporter_uptime_seconds %.17g\n", s->uptime_seconds);
	dmu__prom_family(out, "dmuser_exporter_untracked_requests_total", "counter",
			"Completions the BPF program could not record: its per-device map was full.");
	fprintf(out, "dmuser_exporter_untracked_requests_total %llu\n",
		(unsigned long long)s->untracked);

	counter(out, s, "dmuser_kernel_requests_total",
		"Requests completed by the dm-user target, by device and operation.",
		offsetof(struct dmu_op_stats, ios));
	counter(out, s, "dmuser_kernel_request_bytes_total",
		"Bytes of the requests completed by the dm-user target, by device and operation.",
		offsetof(struct dmu_op_stats, bytes));
	counter(out, s, "dmuser_kernel_errors_total",
		"Requests the dm-user target completed with an error, by device and operation.",
		offsetof(struct dmu_op_stats, errors));
	counter(out, s, "dmuser_kernel_timeouts_total",
		"Requests the dm-user target ended after timeout_ms, by device and operation.",
		offsetof(struct dmu_op_stats, ends[DMU_END_TIMEOUT]));
	latency(out, s);
	depth(out, s, DMU_QD_QUEUED);
	depth(out, s, DMU_QD_IN_FLIGHT);
	if (kernel_status(out, s))
		return -1;
	return ferror(out) ? -1 : 0;
}

/* ---- JSON ------------------------------------------------------------------ */

static json_t *json_u64(__u64 v)
{
	return json_integer((json_int_t)(v > INT64_MAX ? INT64_MAX : v));
}

/* {count, sum, buckets: [{upper, count}], overflow}; upper as in Prometheus' le */
static json_t *json_hist(const struct dmu_hist *h, bool depth_buckets)
{
	json_t *buckets = json_array();
	__u64 count = 0;

	for (int i = 0; i < DMU_MAX_SLOTS; i++)
		count += h->slots[i];
	for (int i = 0; i < DMU_MAX_SLOTS - 1; i++)
		json_array_append_new(buckets, json_pack("{s:o, s:o}",
			"upper", json_u64(depth_buckets ? (2ULL << i) - 1 : 2ULL << i),
			"count", json_u64(h->slots[i])));
	return json_pack("{s:o, s:o, s:o, s:o}", "count", json_u64(count),
			 "sum", json_u64(h->sum), "buckets", buckets,
			 "overflow", json_u64(h->slots[DMU_MAX_SLOTS - 1]));
}

static json_t *json_op(json_t *ops, __u32 op)
{
	char opbuf[16];
	const char *name = dmu_op_name(op, opbuf, sizeof(opbuf));
	json_t *o = json_object_get(ops, name);

	if (!o) {
		o = json_pack("{s:i, s:i, s:i, s:i, s:{}}", "requests", 0, "bytes", 0,
			      "errors", 0, "timeouts", 0, "latency_us");
		json_object_set_new(ops, name, o);
	}
	return o;
}

json_t *dmu_exp_render_json(const struct dmu_exp_snapshot *s)
{
	json_t *devices = json_array();
	int d, i, l = 0, q = 0;

	for (d = 0, i = 0; d < s->ndevs; d++) {
		__u32 dev = s->devs[d].dev;
		json_t *ops = json_object();
		char devbuf[32];

		while (i < s->nst && s->st[i].key.dev < dev)
			i++;
		while (l < s->nlat && s->lat[l].key.dev < dev)
			l++;
		while (q < s->nqd && s->qd[q].key.dev < dev)
			q++;
		for (; i < s->nst && s->st[i].key.dev == dev; i++) {
			const struct dmu_op_stats *st = &s->st[i].st;
			json_t *o = json_op(ops, s->st[i].key.op);

			json_object_set_new(o, "requests", json_u64(st->ios));
			json_object_set_new(o, "bytes", json_u64(st->bytes));
			json_object_set_new(o, "errors", json_u64(st->errors));
			json_object_set_new(o, "timeouts", json_u64(st->ends[DMU_END_TIMEOUT]));
		}
		for (; l < s->nlat && s->lat[l].key.dev == dev; l++) {
			const struct dmu_exp_hist *e = &s->lat[l];

			if (e->key.kind < DMU_NR_STAGES)
				json_object_set_new(json_object_get(json_op(ops, e->key.op), "latency_us"),
						    dmu_stage_names[e->key.kind],
						    json_hist(&e->hist, false));
		}
		snprintf(devbuf, sizeof(devbuf), "%u:%u", dmu_major(dev), dmu_minor(dev));
		json_t *jd = json_pack("{s:s, s:s, s:o, s:o*}", "device", s->devs[d].name,
				       "dev", devbuf, "ops", ops,
				       "target", dmu__kernel_status_json(s->devs[d].status));
		for (unsigned k = 0; k < DMU_NR_QD; k++) {
			struct dmu_hist h;
			int start = q;

			depth_sum(s, &start, k, dev, &h);
			json_object_set_new(jd, qd_json[k], json_hist(&h, true));
		}
		while (q < s->nqd && s->qd[q].key.dev == dev)
			q++;
		json_array_append_new(devices, jd);
	}
	return json_pack("{s:s, s:s, s:s, s:f, s:o, s:o}", "exporter", "dmuser-exporter",
			 "version", s->version, "attach", s->attach,
			 "uptime_seconds", s->uptime_seconds,
			 "untracked_requests", json_u64(s->untracked), "devices", devices);
}
