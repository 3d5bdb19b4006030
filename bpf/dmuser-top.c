// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dmuser-top: live per-device view of dm-user targets from their
 * tracepoints alone, so it works with any daemon.
 *
 * The BPF side keeps cumulative counters, per CPU; every interval this
 * program sums the CPUs' copies and subtracts the previous snapshot, so
 * nothing is lost between reads.
 * Percentiles come from log2 histograms: the rank's bucket is found and
 * the value is interpolated linearly inside it (see dmu_hist_percentile()),
 * so they are estimates accurate to within the bucket (a factor of 2).
 */
#include <argp.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <curses.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/dm-user.h>

#include "dmuser-top.h"
#include "dmuser_top.skel.h"
#include "trace_helpers.h"

#define PROG "dmuser-top"

enum sort_key { SORT_IOPS, SORT_TPUT, SORT_LAT, SORT_QD, SORT_ERR, NR_SORT };
static const char *const sort_names[] = { "iops", "tput", "lat", "qd", "err" };

static struct env {
	bool batch;
	bool json;
	bool load_only;
	bool reverse;
	enum sort_key sort;
	double interval;
	long iterations;	/* 0: forever */
	const char *devname;
	__u32 dev;
	enum dmu_attach_mode attach;
} env = {
	.interval = 1.0,
};

static volatile sig_atomic_t exiting;

const char *argp_program_version = "dmuser-top 0.1";
const char argp_program_doc[] =
"Live per-device view of dm-user targets, from their tracepoints.\n"
"\n"
"One row per dm-user device: read/write IOPS and MB/s, p50/p99 latency of\n"
"each stage (queue: mapped -> taken by the daemon; daemon: taken -> answered;\n"
"total: mapped -> completed; timed by the module), the average number of\n"
"requests queued (QD) and with the daemon (INFL) over the interval, as\n"
"iostat's aqu-sz, and errors and timeouts since the start.\n"
"Percentiles are estimated from log2 histograms, interpolating inside the\n"
"bucket.\n"
"\n"
"USAGE: dmuser-top [-h] [-b] [--json] [-s KEY] [-d DEV] [-i SECS] [-n COUNT]\n"
"                  [interval] [count]\n"
"\n"
"EXAMPLES:\n"
"    dmuser-top                # live view, refreshed every second\n"
"    dmuser-top -s lat 2       # sort by total p99 latency, every 2 seconds\n"
"    dmuser-top -b 1 10        # plain lines, 10 times (also when not a TTY)\n"
"    dmuser-top --json -n 5    # one JSON object per interval\n"
"    dmuser-top -d dmu-test0   # only this device\n"
"\n"
"KEYS (interactive): i/t/l/d/e sort by iops/throughput/latency/depth/errors,\n"
"r reverse, +/- slower/faster refresh, q quit.\n";

enum {
	OPT_JSON = 1000,
	OPT_ATTACH,
	OPT_LOAD_ONLY,
};

static const struct argp_option opts[] = {
	{ "batch", 'b', NULL, 0, "Batch mode: plain lines, no curses", 0 },
	{ "json", OPT_JSON, NULL, 0, "Print one JSON object per interval", 0 },
	{ "sort", 's', "KEY", 0, "Sort by iops (default), tput, lat, qd or err", 0 },
	{ "reverse", 'r', NULL, 0, "Reverse the sort order (smallest first)", 0 },
	{ "interval", 'i', "SECS", 0, "Refresh interval in seconds (default 1)", 0 },
	{ "iterations", 'n', "COUNT", 0, "Stop after COUNT intervals", 0 },
	{ "device", 'd', "DEV", 0, "Show this device only", 0 },
	{ "verbose", 'v', NULL, 0, "Verbose debug output", 0 },
	{ "attach", OPT_ATTACH, "MODE", OPTION_HIDDEN, "auto, tp_btf, raw_tp or tracepoint (or env " DMU_ATTACH_ENV ")", 0 },
	{ "load-only", OPT_LOAD_ONLY, NULL, OPTION_HIDDEN, "Load (verifier) and exit", 0 },
	{ NULL, 'h', NULL, OPTION_HIDDEN, "Show the full help", 0 },
	{},
};

static int parse_sort(const char *s, enum sort_key *k)
{
	int i;

	for (i = 0; i < NR_SORT; i++) {
		if (!strcmp(s, sort_names[i])) {
			*k = i;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_interval(const char *s, double *v)
{
	char *end;

	errno = 0;
	*v = strtod(s, &end);
	if (errno || end == s || *end || !(*v >= 0.05) || *v > 3600)
		return -EINVAL;
	return 0;
}

static int parse_count(const char *s, long *v)
{
	char *end;

	errno = 0;
	*v = strtol(s, &end, 10);
	if (errno || end == s || *end || *v <= 0)
		return -EINVAL;
	return 0;
}

static error_t parse_arg(int key, char *arg, struct argp_state *state)
{
	static int pos_args;

	switch (key) {
	case 'h':
		argp_state_help(state, stdout, ARGP_HELP_STD_HELP);
		break;
	case 'v':
		dmu_verbose = true;
		break;
	case 'b':
		env.batch = true;
		break;
	case OPT_JSON:
		env.json = true;
		break;
	case 's':
		if (parse_sort(arg, &env.sort)) {
			fprintf(stderr, "invalid sort key: %s (iops, tput, lat, qd, err)\n", arg);
			argp_usage(state);
		}
		break;
	case 'r':
		env.reverse = true;
		break;
	case 'i':
		if (parse_interval(arg, &env.interval)) {
			fprintf(stderr, "invalid interval: %s\n", arg);
			argp_usage(state);
		}
		break;
	case 'n':
		if (parse_count(arg, &env.iterations)) {
			fprintf(stderr, "invalid count: %s\n", arg);
			argp_usage(state);
		}
		break;
	case 'd':
		env.devname = arg;
		break;
	case OPT_ATTACH:
		if (dmu_attach_parse(arg, &env.attach)) {
			fprintf(stderr, "invalid attach mode: %s (auto, tp_btf, raw_tp, tracepoint)\n", arg);
			argp_usage(state);
		}
		break;
	case OPT_LOAD_ONLY:
		env.load_only = true;
		break;
	case ARGP_KEY_ARG:
		if (pos_args == 0) {
			if (parse_interval(arg, &env.interval)) {
				fprintf(stderr, "invalid interval: %s\n", arg);
				argp_usage(state);
			}
		} else if (pos_args == 1) {
			if (parse_count(arg, &env.iterations)) {
				fprintf(stderr, "invalid count: %s\n", arg);
				argp_usage(state);
			}
		} else {
			fprintf(stderr, "unrecognized positional argument: %s\n", arg);
			argp_usage(state);
		}
		pos_args++;
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

static void sig_handler(int sig)
{
	(void)sig;
	exiting = 1;
}

/* ---- loading ----------------------------------------------------------- */

struct attach_ctx {
	struct dmuser_top_bpf *obj;
	bool attach;
};

static int open_load_attach(enum dmu_attach_mode mode, void *data)
{
	struct attach_ctx *ctx = data;
	struct dmuser_top_bpf *obj;
	int err;

	obj = dmuser_top_bpf__open();
	if (!obj)
		return errno ? -errno : -ENOMEM;
	obj->rodata->filter_dev = env.devname != NULL;
	obj->rodata->targ_dev = env.dev;

	err = dmu_attach_select(obj->obj, mode);
	/* the queue depths come from the stage sums: no dm_user_map program */
	if (!err)
		err = dmu_attach_skip_event(obj->obj, "dm_user_map");
	if (!err)
		err = dmuser_top_bpf__load(obj);
	if (!err && ctx->attach)
		err = dmuser_top_bpf__attach(obj);
	if (err) {
		dmuser_top_bpf__destroy(obj);
		return err;
	}
	ctx->obj = obj;
	return 0;
}

/* ---- per-device state -------------------------------------------------- */

enum {
	CLS_READ = DMU_TOP_READ,
	CLS_WRITE = DMU_TOP_WRITE,
	CLS_OTHER = DMU_TOP_OTHER,
	NR_CLS = DMU_TOP_NR_CLS,
};
/* dmuser_top.bpf.c classifies the ops by these values */
_Static_assert(DM_USER_REQ_MAP_READ == DMU_TOP_READ && DM_USER_REQ_MAP_WRITE == DMU_TOP_WRITE,
	       "op classes of dmuser_top.bpf.c");

struct counters {		/* cumulative, as read from the maps */
	unsigned long long ios[NR_CLS], bytes[NR_CLS];
	unsigned long long errors, timeouts;
	struct dmu_hist hist[DMU_NR_STAGES];
};

struct row {
	__u32 dev;
	char name[128];
	bool listed;		/* a live dm device with a "user" target */
	bool active;		/* seen in the maps this round */
	bool gone;		/* removed: shown this round, then dropped */
	struct counters prev, cur;
	/* this interval */
	double iops[NR_CLS], bps[NR_CLS];
	double p50[DMU_NR_STAGES], p99[DMU_NR_STAGES];
	unsigned long long lat_count[DMU_NR_STAGES];
	double qd, in_flight;
	unsigned long long errors, timeouts;	/* in the interval */
};

static struct row *rows;
static int nrows, rows_cap;
/* one lookup's per-CPU copies of a struct dmu_top_dev */
static struct dmu_percpu dev_pc;
/* the DEVICE column grows to the longest name shown, up to 64 */
static int name_width = 16;

static struct row *get_row(__u32 dev)
{
	int i;

	for (i = 0; i < nrows; i++)
		if (rows[i].dev == dev)
			return &rows[i];
	if (nrows == rows_cap) {
		int cap = rows_cap ? rows_cap * 2 : 16;
		struct row *r = realloc(rows, cap * sizeof(*r));

		if (!r)
			return NULL;
		rows = r;
		rows_cap = cap;
	}
	memset(&rows[nrows], 0, sizeof(rows[0]));
	rows[nrows].dev = dev;
	return &rows[nrows++];
}

/* Whether dev is still a block device (its MAJ:MIN is in sysfs). */
static bool alive(__u32 dev)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u", dmu_major(dev), dmu_minor(dev));
	return !stat(path, &st);
}

/*
 * Reads every device's counters.  A removed device's record is deleted
 * once read, so the map (DMU_TOP_MAX_DEVS) keeps room for new devices; its
 * row shows this last interval, then goes.
 */
static void read_maps(struct dmuser_top_bpf *obj)
{
	__u32 key, next, *prev = NULL, gone[DMU_TOP_MAX_DEVS];
	struct dmu_top_dev d;
	struct row *r;
	int fd, i, ngone = 0, kept = 0;

	for (i = 0; i < nrows; i++)
		if (!rows[i].gone)
			rows[kept++] = rows[i];
	nrows = kept;
	for (i = 0; i < nrows; i++) {
		rows[i].prev = rows[i].cur;
		memset(&rows[i].cur, 0, sizeof(rows[i].cur));
		rows[i].active = false;
	}

	fd = bpf_map__fd(obj->maps.devs);
	while (!bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		if (dmu_percpu_lookup(&dev_pc, fd, &key, &d) || !(r = get_row(key)))
			continue;
		for (i = 0; i < NR_CLS; i++) {
			r->cur.ios[i] = d.ios[i];
			r->cur.bytes[i] = d.bytes[i];
		}
		r->cur.errors = d.errors;
		r->cur.timeouts = d.timeouts;
		for (i = 0; i < DMU_NR_STAGES; i++)
			r->cur.hist[i] = d.hist[i];
		r->active = true;
		if (!alive(key) && ngone < DMU_TOP_MAX_DEVS) {
			r->gone = true;
			gone[ngone++] = key;
		}
	}
	for (i = 0; i < ngone; i++)
		bpf_map_delete_elem(fd, &gone[i]);
}

static void list_devices(void)
{
	__u32 devs[256];
	int n, i;

	for (i = 0; i < nrows; i++)
		rows[i].listed = false;
	n = dmu_list_user_devs(devs, 256);
	if (n < 0) {
		/* no /dev/mapper/control: show what the tracepoints saw */
		for (i = 0; i < nrows; i++)
			rows[i].listed = true;
		return;
	}
	for (i = 0; i < n; i++) {
		struct row *r;

		if (env.devname && devs[i] != env.dev)
			continue;
		r = get_row(devs[i]);
		if (r)
			r->listed = true;
	}
}

static void compute(double secs)
{
	int i, c, s;

	for (i = 0; i < nrows; i++) {
		struct row *r = &rows[i];

		/* a removed device keeps the name it had */
		if (!r->gone || !r->name[0])
			dmu_dev_name(r->dev, r->name, sizeof(r->name));
		for (c = 0; c < NR_CLS; c++) {
			r->iops[c] = (r->cur.ios[c] - r->prev.ios[c]) / secs;
			r->bps[c] = (r->cur.bytes[c] - r->prev.bytes[c]) / secs;
		}
		for (s = 0; s < DMU_NR_STAGES; s++) {
			struct dmu_hist d;
			int k;

			for (k = 0; k < DMU_MAX_SLOTS; k++)
				d.slots[k] = r->cur.hist[s].slots[k] - r->prev.hist[s].slots[k];
			r->lat_count[s] = dmu_hist_total(d.slots, DMU_MAX_SLOTS);
			r->p50[s] = dmu_hist_percentile(d.slots, DMU_MAX_SLOTS, 0.50);
			r->p99[s] = dmu_hist_percentile(d.slots, DMU_MAX_SLOTS, 0.99);
		}
		/*
		 * Little's law, as iostat's aqu-sz: the time requests spent
		 * queued (or with the daemon), summed over those completed in
		 * the interval, divided by the interval.
		 */
		r->qd = (double)(r->cur.hist[DMU_STAGE_QUEUE].sum -
				 r->prev.hist[DMU_STAGE_QUEUE].sum) / (secs * 1e9);
		r->in_flight = (double)(r->cur.hist[DMU_STAGE_DAEMON].sum -
					r->prev.hist[DMU_STAGE_DAEMON].sum) / (secs * 1e9);
		r->errors = r->cur.errors - r->prev.errors;
		r->timeouts = r->cur.timeouts - r->prev.timeouts;
	}
}

static double sort_value(const struct row *r)
{
	switch (env.sort) {
	case SORT_IOPS:
		return r->iops[CLS_READ] + r->iops[CLS_WRITE] + r->iops[CLS_OTHER];
	case SORT_TPUT:
		return r->bps[CLS_READ] + r->bps[CLS_WRITE] + r->bps[CLS_OTHER];
	case SORT_LAT:
		return r->p99[DMU_STAGE_TOTAL];
	case SORT_QD:
		return r->qd;
	case SORT_ERR:
		return (double)r->cur.errors + r->cur.timeouts;
	default:
		return 0;
	}
}

static int cmp_rows(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	double vx = sort_value(x), vy = sort_value(y);
	int c = vx > vy ? -1 : vx < vy ? 1 : 0;

	if (env.reverse)
		c = -c;
	return c ? c : strcmp(x->name, y->name);
}

/* Rows to show: listed devices, and any device with activity. */
static int visible(struct row ***out)
{
	static struct row **vis;
	static int cap;
	int i, n = 0;

	if (cap < nrows) {
		struct row **v = realloc(vis, nrows * sizeof(*v));

		if (!v)
			return 0;
		vis = v;
		cap = nrows;
	}
	qsort(rows, nrows, sizeof(rows[0]), cmp_rows);
	for (i = 0; i < nrows; i++) {
		struct row *r = &rows[i];
		bool moved = memcmp(&r->cur, &r->prev, sizeof(r->cur)) != 0;

		if (r->listed || moved)
			vis[n++] = r;
	}
	name_width = 16;
	for (i = 0; i < n; i++) {
		int w = (int)strlen(vis[i]->name);

		if (w > name_width)
			name_width = w < 64 ? w : 64;
	}
	*out = vis;
	return n;
}

/* ---- output ------------------------------------------------------------ */

/* ns -> "412us", "4.21ms", "1.20s"; "-" when there were no samples */
static const char *fmt_lat(double ns, char *buf, size_t len)
{
	double us = ns / 1000;

	if (ns < 0)
		snprintf(buf, len, "-");
	else if (us < 10)
		snprintf(buf, len, "%.1fus", us);
	else if (us < 1000)
		snprintf(buf, len, "%.0fus", us);
	else if (us < 10000)
		snprintf(buf, len, "%.2fms", us / 1000);
	else if (us < 1000000)
		snprintf(buf, len, "%.1fms", us / 1000);
	else
		snprintf(buf, len, "%.2fs", us / 1000000);
	return buf;
}

#define HDR_FMT "%-*s %8s %8s %7s %7s %7s %7s %7s %7s %7s %7s %5s %5s %5s %5s"
#define HDR_ARGS name_width, "DEVICE", "R/s", "W/s", "RMB/s", "WMB/s", "Q_p50", "Q_p99", \
	"D_p50", "D_p99", "T_p50", "T_p99", "QD", "INFL", "ERR", "TMO"

static void format_row(const struct row *r, char *buf, size_t len)
{
	char l[6][16];
	int s;

	for (s = 0; s < DMU_NR_STAGES; s++) {
		fmt_lat(r->p50[s], l[2 * s], sizeof(l[0]));
		fmt_lat(r->p99[s], l[2 * s + 1], sizeof(l[0]));
	}
	snprintf(buf, len,
		 "%-*.*s %8.1f %8.1f %7.2f %7.2f %7s %7s %7s %7s %7s %7s %5.1f %5.1f %5llu %5llu",
		 name_width, name_width, r->name, r->iops[CLS_READ], r->iops[CLS_WRITE],
		 r->bps[CLS_READ] / 1e6, r->bps[CLS_WRITE] / 1e6,
		 l[0], l[1], l[2], l[3], l[4], l[5], r->qd, r->in_flight,
		 r->cur.errors, r->cur.timeouts);
}

static void print_batch(double secs, enum dmu_attach_mode mode)
{
	struct row **vis;
	char ts[32], line[512];
	int n, i;

	n = visible(&vis);
	dmu_strftime_now(ts, sizeof(ts));
	printf("%s dmuser-top: %d device%s, interval %.2fs, attach %s, sort %s\n",
	       ts, n, n == 1 ? "" : "s", secs, dmu_attach_name(mode), sort_names[env.sort]);
	printf(HDR_FMT "\n", HDR_ARGS);
	for (i = 0; i < n; i++) {
		format_row(vis[i], line, sizeof(line));
		printf("%s\n", line);
	}
	printf("\n");
	fflush(stdout);
}

/* a rate or an average; null when there is none */
static json_t *json_num(double v)
{
	return v < 0 || !isfinite(v) ? json_null() : json_real(round(v * 1000) / 1000);
}

static json_t *json_count(unsigned long long v)
{
	return json_integer(dmu_json_u64(v));
}

/* One interval as JSON (see README.md): rates of the interval, and totals since the start. */
static json_t *interval_json(double secs, enum dmu_attach_mode mode)
{
	static const char *const cls[NR_CLS] = { "read", "write", "other" };
	struct row **vis;
	struct timespec now;
	json_t *devices = json_array(), *doc;
	char ts[32], dev[32], key[32];
	int n, i, c, s;

	n = visible(&vis);
	clock_gettime(CLOCK_REALTIME, &now);
	dmu_strftime_now(ts, sizeof(ts));
	for (i = 0; i < n; i++) {
		const struct row *r = vis[i];
		json_t *d = json_object(), *lat = json_object();

		snprintf(dev, sizeof(dev), "%u:%u", dmu_major(r->dev), dmu_minor(r->dev));
		json_object_set_new(d, "device", json_string(r->name));
		json_object_set_new(d, "dev", json_string(dev));
		for (c = 0; c < NR_CLS; c++) {
			snprintf(key, sizeof(key), "%s_iops", cls[c]);
			json_object_set_new(d, key, json_num(r->iops[c]));
		}
		json_object_set_new(d, "read_mbps", json_num(r->bps[CLS_READ] / 1e6));
		json_object_set_new(d, "write_mbps", json_num(r->bps[CLS_WRITE] / 1e6));
		for (s = 0; s < DMU_NR_STAGES; s++)
			json_object_set_new(lat, dmu_stage_names[s], json_pack("{s:o, s:o, s:o}",
				"count", json_count(r->lat_count[s]),
				"p50", json_num(r->p50[s] < 0 ? -1 : r->p50[s] / 1000),
				"p99", json_num(r->p99[s] < 0 ? -1 : r->p99[s] / 1000)));
		json_object_set_new(d, "latency_us", lat);
		json_object_set_new(d, "queue_depth", json_num(r->qd));
		json_object_set_new(d, "in_flight", json_num(r->in_flight));
		json_object_set_new(d, "errors", json_count(r->errors));
		json_object_set_new(d, "timeouts", json_count(r->timeouts));
		/* exact counts since the tool started: completions and bytes by class */
		for (c = 0; c < NR_CLS; c++) {
			snprintf(key, sizeof(key), "%s_ios_total", cls[c]);
			json_object_set_new(d, key, json_count(r->cur.ios[c]));
			snprintf(key, sizeof(key), "%s_bytes_total", cls[c]);
			json_object_set_new(d, key, json_count(r->cur.bytes[c]));
		}
		json_object_set_new(d, "errors_total", json_count(r->cur.errors));
		json_object_set_new(d, "timeouts_total", json_count(r->cur.timeouts));
		json_array_append_new(devices, d);
	}
	doc = json_pack("{s:s, s:f, s:f, s:s, s:o}", "time", ts,
			"timestamp", (double)now.tv_sec + now.tv_nsec / 1000000 / 1e3,
			"interval_s", round(secs * 1000) / 1000, "attach", dmu_attach_name(mode),
			"devices", devices);
	return doc;
}

static int print_json(double secs, enum dmu_attach_mode mode)
{
	json_t *doc = interval_json(secs, mode);
	int err = !doc || json_dumpf(doc, stdout, JSON_COMPACT | JSON_REAL_PRECISION(10)) || fputc('\n', stdout) == EOF;

	json_decref(doc);
	fflush(stdout);
	return err ? -1 : 0;
}

static void draw_curses(double secs, enum dmu_attach_mode mode, bool have_data)
{
	struct row **vis;
	char ts[32], line[512];
	int n, i, y = 0;

	n = visible(&vis);
	dmu_strftime_now(ts, sizeof(ts));
	erase();
	mvprintw(y++, 0, "dmuser-top - %s   %d device%s   interval %.2fs   attach %s   sort %s%s",
		 ts, n, n == 1 ? "" : "s", env.interval, dmu_attach_name(mode),
		 sort_names[env.sort], env.reverse ? " (reversed)" : "");
	mvprintw(y++, 0, "latency p50/p99 per stage: Q queue, D daemon, T total (log2 estimates); "
		 "QD/INFL time-averaged");
	mvprintw(y++, 0, "keys: i t l d e sort, r reverse, +/- interval, q quit");
	y++;
	attron(A_REVERSE);
	snprintf(line, sizeof(line), HDR_FMT, HDR_ARGS);
	mvprintw(y++, 0, "%-*s", COLS > 0 ? COLS : 1, line);
	attroff(A_REVERSE);
	if (!have_data)
		mvprintw(y++, 0, "(collecting for %.2fs...)", secs);
	for (i = 0; i < n && y < LINES; i++) {
		format_row(vis[i], line, sizeof(line));
		mvprintw(y++, 0, "%s", line);
	}
	if (have_data && !n && y < LINES)
		mvprintw(y++, 0, "(no dm-user devices)");
	refresh();
}

static double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* curses: wait for the interval while handling keys; returns true to redraw only */
static bool curses_wait(double until, bool *quit)
{
	while (!exiting) {
		double left = until - mono_now();
		int ch;

		if (left <= 0)
			return false;
		timeout(left > 0.1 ? 100 : (int)(left * 1000) + 1);
		ch = getch();
		switch (ch) {
		case 'q':
		case 'Q':
			*quit = true;
			return false;
		case 'i': env.sort = SORT_IOPS; return true;
		case 't': env.sort = SORT_TPUT; return true;
		case 'l': env.sort = SORT_LAT; return true;
		case 'd': env.sort = SORT_QD; return true;
		case 'e': env.sort = SORT_ERR; return true;
		case 'r': env.reverse = !env.reverse; return true;
		case '+':
			env.interval = env.interval * 2 > 60 ? 60 : env.interval * 2;
			return true;
		case '-':
			env.interval = env.interval / 2 < 0.1 ? 0.1 : env.interval / 2;
			return true;
		case KEY_RESIZE:
			return true;
		default:
			break;
		}
	}
	return false;
}

int main(int argc, char **argv)
{
	static const struct argp argp = {
		.options = opts,
		.parser = parse_arg,
		.doc = argp_program_doc,
	};
	struct attach_ctx ctx = { .attach = true };
	SCREEN *screen = NULL;
	double last, next;
	long done = 0;
	bool quit = false;
	int err, mode;

	if (dmu_attach_from_env(PROG, &env.attach))
		return 1;
	err = argp_parse(&argp, argc, argv, 0, NULL, NULL);
	if (err)
		return err;
	if (!env.json && !isatty(STDOUT_FILENO))
		env.batch = true;

	libbpf_set_print(dmu_libbpf_print);

	if (!dmu_module_loaded(PROG)) {
		if (!env.load_only || env.attach == DMU_ATTACH_AUTO ||
		    env.attach == DMU_ATTACH_TP_BTF)
			return 1;
		ctx.attach = false;
		dmu_no_probe = true;
	} else if (!dmu_module_new_enough(PROG)) {
		return 1;
	}
	if (env.devname && dmu_dev_resolve(env.devname, &env.dev)) {
		fprintf(stderr, PROG ": no block device '%s'\n", env.devname);
		return 1;
	}

	mode = dmu_attach(PROG, env.attach, open_load_attach, &ctx);
	if (mode < 0)
		return 1;
	if (env.load_only) {
		printf("%s: loaded%s with %s\n", PROG, ctx.attach ? " and attached" : "",
		       dmu_attach_name(mode));
		dmuser_top_bpf__destroy(ctx.obj);
		return 0;
	}
	err = dmu_percpu_init(&dev_pc, libbpf_num_possible_cpus(), sizeof(struct dmu_top_dev),
			      dmu_top_dev_sum);
	if (err) {
		fprintf(stderr, PROG ": cannot size the per-CPU map values: %s\n", strerror(-err));
		dmuser_top_bpf__destroy(ctx.obj);
		return 1;
	}

	/* before curses, which then leaves these handlers alone */
	signal(SIGINT, sig_handler);
	signal(SIGTERM, sig_handler);

	if (!env.batch && !env.json) {
		screen = newterm(NULL, stdout, stdin);
		if (!screen) {
			env.batch = true;
		} else {
			cbreak();
			noecho();
			keypad(stdscr, TRUE);
			curs_set(0);
		}
	}

	if (!screen)
		fprintf(stderr, "Tracing dm-user devices (attach: %s)... Hit Ctrl-C to end.\n",
			dmu_attach_name(mode));

	last = mono_now();
	list_devices();
	if (screen)
		draw_curses(env.interval, mode, false);
	while (!exiting && !quit) {
		next = last + env.interval;
		if (screen) {
			while (curses_wait(next, &quit)) {
				next = last + env.interval;
				draw_curses(env.interval, mode, done > 0);
			}
		} else {
			double left;

			while (!exiting && (left = next - mono_now()) > 0) {
				struct timespec ts = {
					.tv_sec = (time_t)left,
					.tv_nsec = (long)((left - (time_t)left) * 1e9),
				};
				nanosleep(&ts, NULL);
			}
		}
		if (quit)
			break;
		{
			double now = mono_now(), secs = now - last;

			if (secs <= 0)
				secs = 1e-3;
			read_maps(ctx.obj);
			list_devices();
			compute(secs);
			last = now;
			done++;
			if (screen) {
				draw_curses(secs, mode, true);
			} else if (env.json) {
				if (print_json(secs, mode)) {
					fprintf(stderr, PROG ": cannot write the JSON: %s\n", strerror(errno));
					break;
				}
			} else {
				print_batch(secs, mode);
			}
		}
		if (env.iterations && done >= env.iterations)
			break;
	}

	if (screen) {
		endwin();
		delscreen(screen);
	}
	dmu_check_misses(PROG, ctx.obj->obj);
	dmu_report_runs(PROG, ctx.obj->obj);
	dmu_report_inserts(PROG, ctx.obj->bss->dmu_init_failed, ctx.obj->bss->dmu_init_err);
	dmuser_top_bpf__destroy(ctx.obj);
	dmu_percpu_free(&dev_pc);
	free(rows);
	return 0;
}
