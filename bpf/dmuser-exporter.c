// SPDX-License-Identifier: GPL-2.0
/*
 * dmuser-exporter: serve the dm-user tracepoints' numbers over HTTP, in
 * Prometheus text and JSON, for whatever daemon serves the devices.  The
 * BPF programs are dmuser-lat's (dmuser_lat.bpf.c), with a record per
 * device and op (its dev_recs PERCPU_HASH) and queue depths on; the maps are
 * cumulative: a scrape reads them, sums each record's per-CPU copies, and
 * never clears them.  GET / is the live page.
 *
 * Devices come and go.  The exporter names a device when it first sees it
 * and keeps that name; when the device is removed (the kernel's "remove"
 * uevent, a sweep every few seconds, and a check before every scrape), it
 * deletes the device's records, so its series end under its own name and
 * the map has room for new devices.  A record BPF could not create (the map
 * full all the same) is counted in dmuser_exporter_untracked_requests_total.
 *
 * Each scrape also reads the status line of every dm device whose live
 * table has a "user" target (libdevmapper: DM_DEVICE_LIST, then
 * DM_DEVICE_STATUS per device; the dm ioctls need CAP_SYS_ADMIN, which
 * loading BPF needs already), so a device appears from its creation, I/O
 * or not, and the target's own counters (queue depths, high-water marks,
 * stalls, the oldest request's age) are exported under dmuserd's names.
 * A removed device is no longer listed, so its status series end with it.
 */
#include <argp.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <libudev.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/dm-user.h>

#include "dmuser-exporter.h"
#include "dmuser-lat.h"
#include "dmuser_lat.skel.h"
#include "trace_helpers.h"
/* libdmuser (linked statically): its HTTP endpoint, and the listen-address
 * parser of intree.h, an internal helper the tree's programs share */
#include <dmuser.h>
#include "intree.h"

#define PROG "dmuser-exporter"
#define VERSION "0.1"
#define DEFAULT_LISTEN "127.0.0.1:9183"

static struct env {
	const char *listen;
	const char *devname;
	__u32 dev;
	enum dmu_attach_mode attach;
	int max_records;		/* (device, op) records BPF may keep */
} env = {
	.listen = DEFAULT_LISTEN,
	.max_records = DMU_LAT_MAX_RECS,
};

const char *argp_program_version = PROG " " VERSION;
const char argp_program_doc[] =
"Serve dm-user request metrics from the kernel's tracepoints over HTTP.\n"
"\n"
"Per device and op: completed requests and bytes, errors, timeouts, and\n"
"latency histograms of the queue, daemon and total stages; per device:\n"
"queue depth and in-flight histograms, sampled at map, and the target's\n"
"status line (dmsetup status: channels, queued, in flight, requeues,\n"
"high-water marks, queue_depth waits, stalls, oldest request's age).\n"
"Works whichever daemon serves the devices.\n"
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
"    dmuser-exporter --listen localhost:0   # a host name; port 0 picks a free one\n"
"    dmuser-exporter -d dmu-test0           # only this device\n";

enum {
	OPT_LISTEN = 1000,
	OPT_ATTACH,
	OPT_MAX_RECORDS,
};

static const struct argp_option opts[] = {
	{ "listen", OPT_LISTEN, "ADDR:PORT", 0, "Listen here (default " DEFAULT_LISTEN "; PORT alone binds 127.0.0.1; HOST:PORT; [ADDR6]:PORT)", 0 },
	{ "device", 'd', "DEV", 0, "Trace this device only (dm name, dm-N, /dev/mapper/NAME or MAJ:MIN)", 0 },
	{ "verbose", 'v', NULL, 0, "Verbose debug output", 0 },
	{ "attach", OPT_ATTACH, "MODE", OPTION_HIDDEN, "auto, tp_btf, raw_tp or tracepoint (or env " DMU_ATTACH_ENV ")", 0 },
	{ "max-records", OPT_MAX_RECORDS, "N", OPTION_HIDDEN, "(device, op) records kept in BPF, at most 1024 (tests)", 0 },
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
	case OPT_MAX_RECORDS: {
		char *end;
		long n = strtol(arg, &end, 10);

		if (*end || n < 1 || n > DMU_LAT_MAX_RECS) {
			fprintf(stderr, "invalid --max-records: %s (1 to %d)\n", arg, DMU_LAT_MAX_RECS);
			argp_usage(state);
		}
		env.max_records = (int)n;
		break;
	}
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

	err = bpf_map__set_max_entries(obj->maps.dev_recs, env.max_records);
	if (!err)
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

/* how often the main loop looks for removed devices, besides uevents and scrapes */
#define SWEEP_MS 5000

struct name_ent {
	__u32 dev;
	char name[128];
};

struct exporter {
	struct dmuser_lat_bpf *obj;
	const char *attach;
	struct timespec start;
	/* scrapes (libmicrohttpd's thread) and sweeps (the main thread) */
	pthread_mutex_t lock;
	struct dmu_percpu pc;		/* one lookup's per-CPU copies of a record */
	struct dmu_exp_rec *recs;
	struct dmu_exp_hist *lat, *qd;
	struct dmu_exp_stat *st;
	struct dmu_exp_dev *devs;	/* one per record and one per target at most */
	struct dmu_exp_target *targets;	/* DMU_LAT_MAX_RECS: the dm devices with a user target */
	/* the name of each device seen, taken while it existed */
	struct name_ent *names;
	int nnames;
	struct dmu_op_key *keys;	/* a sweep's keys */
	__u64 untracked_warned;
};

static struct exporter *the_exporter;	/* for name_of(), a dmu_exp_name_fn */

/* The dm name (else dm-N) of dev while it exists, or "" if it does not. */
static void live_name(__u32 dev, char *buf, size_t len)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u", dmu_major(dev), dmu_minor(dev));
	if (stat(path, &st)) {
		buf[0] = '\0';
		return;
	}
	dmu_dev_name(dev, buf, len);
}

static struct name_ent *cached(struct exporter *e, __u32 dev)
{
	for (int i = 0; i < e->nnames; i++)
		if (e->names[i].dev == dev)
			return &e->names[i];
	return NULL;
}

/* The label of dev: the name it had when first seen (MAJ:MIN if never seen alive). */
static void name_of(__u32 dev, char *buf, size_t len)
{
	struct exporter *e = the_exporter;
	struct name_ent *n = cached(e, dev);

	if (!n && e->nnames < DMU_LAT_MAX_RECS) {
		live_name(dev, buf, len);
		if (buf[0]) {
			n = &e->names[e->nnames++];
			n->dev = dev;
			snprintf(n->name, sizeof(n->name), "%s", buf);
		}
	}
	if (n)
		snprintf(buf, len, "%s", n->name);
	else
		snprintf(buf, len, "%u:%u", dmu_major(dev), dmu_minor(dev));
}

/*
 * Deletes the records of every device that is gone: no longer in sysfs, or
 * its number now someone else's (another name than the one it was seen
 * with).  Called with e->lock held.  Returns how many devices went.
 */
static int sweep(struct exporter *e)
{
	int fd = bpf_map__fd(e->obj->maps.dev_recs), nkeys = 0, gone = 0, i, j;
	struct dmu_op_key *prev = NULL;
	char name[128];

	while (nkeys < DMU_LAT_MAX_RECS &&
	       !bpf_map_get_next_key(fd, prev, &e->keys[nkeys])) {
		prev = &e->keys[nkeys];
		nkeys++;
	}
	for (i = 0; i < nkeys; i++) {
		__u32 dev = e->keys[i].dev;
		struct name_ent *n;

		if (dev == 0)
			continue;	/* a device already swept in this loop */
		live_name(dev, name, sizeof(name));
		n = cached(e, dev);
		if (name[0] && (!n || !strcmp(n->name, name)))
			continue;
		/* gone: its records, and its name */
		for (j = i; j < nkeys; j++) {
			if (e->keys[j].dev != dev)
				continue;
			bpf_map_delete_elem(fd, &e->keys[j]);
			e->keys[j].dev = 0;
		}
		if (n)
			*n = e->names[--e->nnames];
		gone++;
	}
	return gone;
}

struct target_list {
	struct dmu_exp_target *t;
	int max, n;
};

static int add_target(const char *name, __u32 dev, const char *status, void *arg)
{
	struct target_list *l = arg;
	struct dmu_exp_target *t;

	if (l->n == l->max || (env.devname && dev != env.dev))
		return 0;
	t = &l->t[l->n++];
	t->dev = dev;
	snprintf(t->name, sizeof(t->name), "%s", name);
	snprintf(t->status, sizeof(t->status), "%s", status);
	return 0;
}

/*
 * Every dm device whose live table has a "user" target (only env.dev with
 * -d), with its status line: at most max into t.  Returns how many; 0 if
 * device-mapper cannot be asked.  Called with e->lock held (libdevmapper
 * is not thread-safe; the main thread's sweeps take the lock too).
 */
static int read_targets(struct dmu_exp_target *t, int max)
{
	struct target_list l = { .t = t, .max = max };

	return dmu_for_each_user_dev(add_target, &l) < 0 ? 0 : l.n;
}

static double since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Says once per growth that records are being lost, and why. */
static void warn_untracked(struct exporter *e, __u64 untracked)
{
	if (untracked <= e->untracked_warned)
		return;
	fprintf(stderr, PROG ": warning: %llu completions not recorded: the per-device map "
		"(%d records) is full\n", (unsigned long long)untracked, env.max_records);
	e->untracked_warned = untracked;
}

/* The page at GET / (web.S). */
extern const char dmu_exp_index_html[];
extern const char dmu_exp_index_html_end[];

/* libdmuser's messages (the HTTP endpoint's) as the exporter's own. */
static void log_msg(void *arg, int level, const char *msg)
{
	(void)arg;
	fprintf(stderr, PROG ": %s%s\n", level == DMU_LOG_WARNING ? "warning: " : "", msg);
}

/* Renders /metrics on libdmuser's HTTP thread, one scrape at a time. */
static int render(void *ctx, enum dmu_metrics_format format, char **body, size_t *len)
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

	pthread_mutex_lock(&e->lock);
	/* a removed device's series end with it, under its name */
	sweep(e);
	/* per device dev_recs has every value, each the sum of its CPUs' copies
	 * (see struct dmu_lat_rec for why no histogram runs ahead of the
	 * counters) */
	n = dmu_map_dump(bpf_map__fd(e->obj->maps.dev_recs), &e->pc, e->recs, sizeof(*e->recs),
			 offsetof(struct dmu_exp_rec, rec), DMU_LAT_MAX_RECS, false);
	dmu_exp_split(&s, e->recs, n);
	/* the target's status lines: dm ioctls, not BPF */
	s.targets = e->targets;
	s.ntargets = read_targets(e->targets, DMU_LAT_MAX_RECS);
	dmu_exp_prepare(&s, e->devs, 2 * DMU_LAT_MAX_RECS, name_of);
	s.untracked = e->obj->bss->dmu_init_failed;
	warn_untracked(e, s.untracked);

	if (format == DMU_METRICS_JSON) {
		json_t *doc = dmu_exp_render_json(&s);

		*body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
		json_decref(doc);
		*len = *body ? strlen(*body) : 0;
		pthread_mutex_unlock(&e->lock);
		return *body ? 0 : -ENOMEM;
	}
	out = open_memstream(body, len);
	if (!out) {
		pthread_mutex_unlock(&e->lock);
		return -ENOMEM;
	}
	err = dmu_exp_render_prometheus(&s, out);
	pthread_mutex_unlock(&e->lock);
	return fclose(out) || err ? -EIO : 0;
}

/* The kernel's uevents of block devices; NULL (then only sweeps) if unavailable. */
static struct udev_monitor *uevents(struct udev **udev)
{
	struct udev_monitor *mon;

	*udev = udev_new();
	if (!*udev)
		return NULL;
	mon = udev_monitor_new_from_netlink(*udev, "kernel");
	if (mon && (udev_monitor_filter_add_match_subsystem_devtype(mon, "block", "disk") ||
		    udev_monitor_enable_receiving(mon))) {
		udev_monitor_unref(mon);
		mon = NULL;
	}
	if (!mon) {
		udev_unref(*udev);
		*udev = NULL;
	}
	return mon;
}

/* Until SIGINT or SIGTERM: sweep on each block device's removal, and every SWEEP_MS. */
static int serve(struct exporter *e, const sigset_t *sigs)
{
	struct udev *udev = NULL;
	struct udev_monitor *mon = uevents(&udev);
	struct pollfd p[2] = {
		{ .fd = signalfd(-1, sigs, SFD_CLOEXEC), .events = POLLIN },
		{ .fd = mon ? udev_monitor_get_fd(mon) : -1, .events = POLLIN },
	};
	struct signalfd_siginfo si = { 0 };

	if (p[0].fd < 0) {
		fprintf(stderr, PROG ": signalfd: %s\n", strerror(errno));
		return SIGTERM;
	}
	if (!mon && dmu_verbose)
		fprintf(stderr, PROG ": no uevents; removed devices are found by sweeps\n");
	for (;;) {
		int n = poll(p, 2, SWEEP_MS);
		bool swept = false;

		if (n < 0 && errno != EINTR)
			break;
		if (n > 0 && (p[0].revents & POLLIN)) {
			if (read(p[0].fd, &si, sizeof(si)) == sizeof(si))
				break;
		}
		if (n > 0 && (p[1].revents & POLLIN)) {
			struct udev_device *d;

			while ((d = udev_monitor_receive_device(mon))) {
				const char *action = udev_device_get_action(d);

				swept |= action && !strcmp(action, "remove");
				udev_device_unref(d);
			}
		}
		if (n == 0 || swept) {
			pthread_mutex_lock(&e->lock);
			sweep(e);
			warn_untracked(e, e->obj->bss->dmu_init_failed);
			pthread_mutex_unlock(&e->lock);
		}
	}
	close(p[0].fd);
	if (mon)
		udev_monitor_unref(mon);
	if (udev)
		udev_unref(udev);
	return si.ssi_signo ? (int)si.ssi_signo : SIGTERM;
}

int main(int argc, char **argv)
{
	static const struct argp argp = {
		.options = opts,
		.parser = parse_arg,
		.doc = argp_program_doc,
	};
	struct exporter e = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct listen_addr listen;
	struct dmu_http *http;
	sigset_t sigs;
	int err, mode, sig = 0;

	dmu_set_log(log_msg, NULL, DMU_LOG_WARNING);
	if (dmu_attach_from_env(PROG, &env.attach))
		return 1;
	err = argp_parse(&argp, argc, argv, 0, NULL, NULL);
	if (err)
		return err;
	/* checked before anything else; dmu_http_start() parses it again */
	err = dmu__parse_listen(env.listen, &listen);
	if (err) {
		fprintf(stderr, PROG ": invalid --listen '%s': %s\n", env.listen,
			err == -EINVAL ? "expected PORT, HOST:PORT or [ADDR6]:PORT" :
			"unknown host");
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
	e.devs = calloc(2 * DMU_LAT_MAX_RECS, sizeof(*e.devs));
	e.targets = calloc(DMU_LAT_MAX_RECS, sizeof(*e.targets));
	e.names = calloc(DMU_LAT_MAX_RECS, sizeof(*e.names));
	e.keys = calloc(DMU_LAT_MAX_RECS, sizeof(*e.keys));
	the_exporter = &e;
	if (!e.recs || !e.lat || !e.qd || !e.st || !e.devs || !e.targets || !e.names || !e.keys) {
		fprintf(stderr, PROG ": out of memory\n");
		err = 1;
		goto out;
	}

	/* SIGINT and SIGTERM go to sigwait() below, in no other thread */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	mode = dmu_attach(PROG, env.attach, open_load_attach, &e.obj);
	if (mode < 0) {
		err = 1;
		goto out;
	}
	e.attach = dmu_attach_name(mode);
	clock_gettime(CLOCK_MONOTONIC, &e.start);

	DMU_OPTS(dmu_http_opts, ho,
		 .render = render,
		 .render_arg = &e,
		 .index_html = dmu_exp_index_html,
		 .index_html_len = (size_t)(dmu_exp_index_html_end - dmu_exp_index_html));
	/* (its own messages say why it failed) */
	if (dmu_http_start(NULL, env.listen, &ho, &http)) {
		dmuser_lat_bpf__destroy(e.obj);
		err = 1;
		goto out;
	}
	/* the address bound, with its port (--listen :0 picks one) */
	printf("Serving dm-user metrics on http://%s/metrics, live page on http://%s/ (attach: %s)\n",
	       dmu_http_address(http), dmu_http_address(http), e.attach);
	fflush(stdout);

	sig = serve(&e, &sigs);
	dmu_http_stop(http);
	dmu_check_misses(PROG, e.obj->obj);
	dmu_report_runs(PROG, e.obj->obj);
	dmu_report_inserts(PROG, e.obj->bss->dmu_init_failed, e.obj->bss->dmu_init_err);
	dmuser_lat_bpf__destroy(e.obj);
	fprintf(stderr, PROG ": %s, detached\n", strsignal(sig));
	err = 0;
out:
	dmu_percpu_free(&e.pc);
	free(e.recs);
	free(e.lat);
	free(e.qd);
	free(e.st);
	free(e.devs);
	free(e.targets);
	free(e.names);
	free(e.keys);
	return err;
}
