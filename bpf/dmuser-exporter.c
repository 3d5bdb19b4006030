// SPDX-License-Identifier: GPL-2.0
/*
 * dmuser-exporter: serve the dm-user tracepoints' numbers over HTTP, in
 * Prometheus text and JSON, for whatever daemon serves the devices.  The
 * BPF programs are dmuser-lat's (dmuser_lat.bpf.c), with a record per
 * device and op (its dev_recs PERCPU_HASH) and queue depths on; the maps are
 * cumulative: a scrape reads them, sums each record's per-CPU copies, and
 * never clears them.  GET / is the live page.
 */
#include <argp.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/dm-user.h>

#include "dmuser-exporter.h"
#include "dmuser-lat.h"
#include "dmuser_lat.skel.h"
#include "trace_helpers.h"
#include "httpd.h"
#include "log.h"

#define PROG "dmuser-exporter"
#define VERSION "0.1"
#define DEFAULT_LISTEN "127.0.0.1:9183"

static struct env {
	const char *listen;
	const char *devname;
	__u32 dev;
	enum dmu_attach_mode attach;
} env = {
	.listen = DEFAULT_LISTEN,
};

const char *argp_program_version = PROG " " VERSION;
const char argp_program_doc[] =
"Serve dm-user request metrics from the kernel's tracepoints over HTTP.\n"
"\n"
"Per device and op: completed requests and bytes, errors, timeouts, and\n"
"latency histograms of the queue, daemon and total stages; per device:\n"
"queue depth and in-flight histograms, sampled at map.  Works whichever\n"
"daemon serves the devices.\n"
"\n"
"  GET /metrics                    JSON\n"
"  GET /metrics?format=prometheus  Prometheus text (also with Accept: text/plain)\n"
"  GET /                           live page\n"
"\n"
"USAGE: dmuser-exporter [-h] [-v] [-d DEV] [--listen ADDR:PORT]\n"
"\n"
"EXAMPLES:\n"
"    dmuser-exporter                        # every device, on " DEFAULT_LISTEN "\n"
"    dmuser-exporter --listen 0.0.0.0:9183  # reachable from other hosts\n"
"    dmuser-exporter -d dmu-test0           # only this device\n";

enum {
	OPT_LISTEN = 1000,
	OPT_ATTACH,
};

static const struct argp_option opts[] = {
	{ "listen", OPT_LISTEN, "ADDR:PORT", 0, "Listen here (default " DEFAULT_LISTEN "; PORT alone binds 127.0.0.1; [ADDR6]:PORT)", 0 },
	{ "device", 'd', "DEV", 0, "Trace this device only (dm name, dm-N, /dev/mapper/NAME or MAJ:MIN)", 0 },
	{ "verbose", 'v', NULL, 0, "Verbose debug output", 0 },
	{ "attach", OPT_ATTACH, "MODE", OPTION_HIDDEN, "auto, tp_btf, raw_tp or tracepoint (or env " DMU_ATTACH_ENV ")", 0 },
	{ NULL, 'h', NULL, OPTION_HIDDEN, "Show the full help", 0 },
	{},
};

static error_t parse_arg(int key, char *arg, struct argp_state *state)
{
	switch (key) {
	case 'h':
		argp_state_help(state, stdout, ARGP_HELP_STD_HELP);
		break;
	case 'v':
		dmu_verbose = true;
		break;
	case 'd':
		env.devname = arg;
		break;
	case OPT_LISTEN:
		env.listen = arg;
		break;
	case OPT_ATTACH:
		if (dmu_attach_parse(arg, &env.attach)) {
			fprintf(stderr, "invalid attach mode: %s (auto, tp_btf, raw_tp, tracepoint)\n", arg);
			argp_usage(state);
		}
		break;
	case ARGP_KEY_ARG:
		fprintf(stderr, "unrecognized positional argument: %s\n", arg);
		argp_usage(state);
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

/* ---- loading ----------------------------------------------------------- */

static int open_load_attach(enum dmu_attach_mode mode, void *data)
{
	struct dmuser_lat_bpf **out = data, *obj;
	int err;

	obj = dmuser_lat_bpf__open();
	if (!obj)
		return errno ? -errno : -ENOMEM;

	obj->rodata->targ_per_dev = true;
	obj->rodata->targ_qd = true;
	obj->rodata->filter_dev = env.devname != NULL;
	obj->rodata->targ_dev = env.dev;

	err = dmu_attach_select(obj->obj, mode);
	if (!err)
		err = dmuser_lat_bpf__load(obj);
	if (!err)
		err = dmuser_lat_bpf__attach(obj);
	if (err) {
		dmuser_lat_bpf__destroy(obj);
		return err;
	}
	*out = obj;
	return 0;
}

/* ---- scraping ---------------------------------------------------------- */

struct exporter {
	struct dmuser_lat_bpf *obj;
	const char *attach;
	struct timespec start;
	/* one scrape at a time (libmicrohttpd's single polling thread) */
	struct dmu_percpu pc;		/* one lookup's per-CPU copies of a record */
	struct dmu_exp_rec *recs;
	struct dmu_exp_hist *lat, *qd;
	struct dmu_exp_stat *st;
	struct dmu_exp_dev devs[DMU_EXP_MAX_DEVS];
};

static double since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static int render(void *ctx, enum dmu_httpd_format format, char **body, size_t *len)
{
	struct exporter *e = ctx;
	struct dmu_exp_snapshot s = {
		.version = VERSION,
		.attach = e->attach,
		.uptime_seconds = since(&e->start),
		.lat = e->lat,
		.qd = e->qd,
		.st = e->st,
	};
	FILE *out;
	int err, n;

	/* per device dev_recs has every value, each the sum of its CPUs' copies
	 * (see struct dmu_lat_rec for why no histogram runs ahead of the
	 * counters) */
	n = dmu_map_dump(bpf_map__fd(e->obj->maps.dev_recs), &e->pc, e->recs, sizeof(*e->recs),
			 offsetof(struct dmu_exp_rec, rec), DMU_LAT_MAX_RECS, false);
	dmu_exp_split(&s, e->recs, n);
	dmu_exp_prepare(&s, e->devs, DMU_EXP_MAX_DEVS, dmu_dev_name);

	if (format == DMU_HTTPD_JSON) {
		json_t *doc = dmu_exp_render_json(&s);

		*body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
		json_decref(doc);
		*len = *body ? strlen(*body) : 0;
		return *body ? 0 : -1;
	}
	out = open_memstream(body, len);
	if (!out)
		return -1;
	err = dmu_exp_render_prometheus(&s, out);
	return fclose(out) || err ? -1 : 0;
}

int main(int argc, char **argv)
{
	static const struct argp argp = {
		.options = opts,
		.parser = parse_arg,
		.doc = argp_program_doc,
	};
	struct exporter e = {};
	struct dmu_listen listen;
	struct dmu_httpd *httpd;
	sigset_t sigs;
	int err, mode, sig = 0;

	dmu_log_set_prog(PROG);
	if (dmu_attach_from_env(PROG, &env.attach))
		return 1;
	err = argp_parse(&argp, argc, argv, 0, NULL, NULL);
	if (err)
		return err;
	if (dmu_parse_listen(env.listen, &listen)) {
		fprintf(stderr, PROG ": invalid --listen '%s': expected PORT, ADDR:PORT or [ADDR6]:PORT\n",
			env.listen);
		return 2;
	}

	libbpf_set_print(dmu_libbpf_print);
	if (!dmu_module_loaded(PROG) || !dmu_module_new_enough(PROG))
		return 1;
	if (env.devname && dmu_dev_resolve(env.devname, &env.dev)) {
		fprintf(stderr, PROG ": no block device '%s'\n", env.devname);
		return 1;
	}

	err = dmu_percpu_init(&e.pc, libbpf_num_possible_cpus(), sizeof(struct dmu_lat_rec),
			      dmu_lat_rec_sum);
	if (err) {
		fprintf(stderr, PROG ": cannot size the per-CPU map values: %s\n", strerror(-err));
		return 1;
	}
	e.recs = calloc(DMU_LAT_MAX_RECS, sizeof(*e.recs));
	e.lat = calloc((size_t)DMU_LAT_MAX_RECS * DMU_NR_STAGES, sizeof(*e.lat));
	e.qd = calloc((size_t)DMU_LAT_MAX_RECS * DMU_NR_QD, sizeof(*e.qd));
	e.st = calloc(DMU_LAT_MAX_RECS, sizeof(*e.st));
	if (!e.recs || !e.lat || !e.qd || !e.st) {
		fprintf(stderr, PROG ": out of memory\n");
		dmu_percpu_free(&e.pc);
		free(e.recs);
		free(e.lat);
		free(e.qd);
		free(e.st);
		return 1;
	}

	/* SIGINT and SIGTERM go to sigwait() below, in no other thread */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	mode = dmu_attach(PROG, env.attach, open_load_attach, &e.obj);
	if (mode < 0)
		return 1;
	e.attach = dmu_attach_name(mode);
	clock_gettime(CLOCK_MONOTONIC, &e.start);

	httpd = dmu_httpd_start(&listen, render, &e);
	if (!httpd) {
		dmuser_lat_bpf__destroy(e.obj);
		return 1;
	}
	/* the address as given, with the port bound (--listen :0 picks one) */
	printf("Serving dm-user metrics on http://%.*s:%u/metrics, live page on http://%.*s:%u/ (attach: %s)\n",
	       (int)(strrchr(listen.text, ':') - listen.text), listen.text, dmu_httpd_port(httpd),
	       (int)(strrchr(listen.text, ':') - listen.text), listen.text, dmu_httpd_port(httpd),
	       e.attach);
	fflush(stdout);

	sigwait(&sigs, &sig);
	dmu_httpd_stop(httpd);
	dmu_check_misses(PROG, e.obj->obj);
	dmu_report_inserts(PROG, e.obj->bss->dmu_init_failed, e.obj->bss->dmu_init_retried,
			   e.obj->bss->dmu_init_err);
	dmuser_lat_bpf__destroy(e.obj);
	fprintf(stderr, PROG ": %s, detached\n", strsignal(sig));
	dmu_percpu_free(&e.pc);
	free(e.recs);
	free(e.lat);
	free(e.qd);
	free(e.st);
	return 0;
}
