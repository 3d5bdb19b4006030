// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dmuser-lat: summarize dm-user request latency as log2 histograms, by
 * stage: queue (mapped -> taken by the daemon), daemon (taken -> answered)
 * and total (mapped -> completed), as the module measured them and handed
 * them over in dm_user_complete.  Modelled on libbpf-tools' biolatency.
 *
 * With -p PID or --binary PATH, the daemon's stages too: libdmuser's USDT
 * probes joined per request with the kernel's (see enum dmu_pstage).
 */
#include <argp.h>
#include <errno.h>
#include <limits.h>
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

#include "dmuser-lat.h"
#include "dmuser_lat.skel.h"
#include "trace_helpers.h"

#define PROG "dmuser-lat"

static struct env {
	bool timestamp;
	bool milliseconds;
	bool per_dev;
	bool per_op;
	bool qd;
	bool json;
	bool load_only;
	unsigned int stages;	/* bit per enum dmu_stage (dmu_pstage with daemon) */
	const char *stage_args[16];	/* -S, resolved once the mode is known */
	int nstage_args;
	bool daemon;		/* -p or --binary: the daemon stages */
	int pid;		/* -p; 0: every process (--binary) */
	const char *binary;	/* --binary */
	const char *devname;
	__u32 dev;
	bool filter_op;
	unsigned int op;
	time_t interval;
	long times;
	enum dmu_attach_mode attach;
} env = {
	.interval = 99999999,
	.times = 99999999,
};

static volatile sig_atomic_t exiting;

const char *argp_program_version = "dmuser-lat 0.1";
const char argp_program_doc[] =
"Summarize dm-user request latency as log2 histograms.\n"
"\n"
"Stages: queue = mapped by the target -> header read by the daemon;\n"
"daemon = read by the daemon -> reply written; total = mapped -> completed.\n"
"The module times them (target version >= 1.3.0) while anything traces\n"
"dm_user_complete; requests mapped before the tool started are not timed.\n"
"\n"
"With -p PID or --binary PATH, the stages of the daemon too, from libdmuser's\n"
"USDT probes: queue = mapped -> read by the daemon; handoff = read ->\n"
"request_received; pickup = -> backend_submitted; backend = -> backend_done;\n"
"reply = -> completed (the reply's write()); total = mapped -> completed.\n"
"Only requests whose every event was seen are in them; the others are\n"
"counted by why.  A daemon without the probes is an error.\n"
"\n"
"USAGE: dmuser-lat [-h] [-T] [-m] [-D] [-O] [-Q] [-S STAGE] [-d DEV] [-o OP]\n"
"                  [-p PID] [--binary PATH] [--json] [interval] [count]\n"
"\n"
"EXAMPLES:\n"
"    dmuser-lat                # total latency histogram, until Ctrl-C\n"
"    dmuser-lat 1 10           # print 1 second summaries, 10 times\n"
"    dmuser-lat -mT 1          # 1s summaries, milliseconds, and timestamps\n"
"    dmuser-lat -S daemon      # time spent in the daemon\n"
"    dmuser-lat -S all -O      # every stage, one histogram per op\n"
"    dmuser-lat -D             # one histogram per dm-user device\n"
"    dmuser-lat -d dmu-test0   # only this device (dm name, dm-N or MAJ:MIN)\n"
"    dmuser-lat -o write       # only writes\n"
"    dmuser-lat -Q             # also queue depth sampled at map\n"
"    dmuser-lat --json 1 5     # one JSON object per interval\n"
"    dmuser-lat -p $(pidof dmu-null)   # the daemon's stages too\n"
"    dmuser-lat --binary /usr/lib/x86_64-linux-gnu/libdmuser.so.1\n"
"                              # ... of every process using that library\n";

enum {
	OPT_JSON = 1000,
	OPT_ATTACH,
	OPT_LOAD_ONLY,
	OPT_BINARY,
};

static const struct argp_option opts[] = {
	{ "timestamp", 'T', NULL, 0, "Include timestamp on output", 0 },
	{ "milliseconds", 'm', NULL, 0, "Millisecond histogram", 0 },
	{ "per-device", 'D', NULL, 0, "Print a histogram per device", 0 },
	{ "per-op", 'O', NULL, 0, "Print a histogram per op (read, write, flush, ...)", 0 },
	{ "stage", 'S', "STAGE", 0, "queue, daemon, total (default) or all; with -p/--binary queue, handoff, pickup, backend, reply, total or all (default); may be repeated", 0 },
	{ "pid", 'p', "PID", 0, "Also the daemon stages of this process (libdmuser's USDT probes)", 0 },
	{ "binary", OPT_BINARY, "PATH", 0, "Also the daemon stages, from the USDT probes of this program or libdmuser.so (of every process, or -p's)", 0 },
	{ "device", 'd', "DEV", 0, "Trace this device only", 0 },
	{ "op", 'o', "OP", 0, "Trace this op only (read, write, flush, discard, ...)", 0 },
	{ "queue-depth", 'Q', NULL, 0, "Also print queue-depth histograms (queued and in flight, sampled at map)", 0 },
	{ "json", OPT_JSON, NULL, 0, "Print one JSON object per interval", 0 },
	{ "verbose", 'v', NULL, 0, "Verbose debug output", 0 },
	{ "attach", OPT_ATTACH, "MODE", OPTION_HIDDEN, "auto, tp_btf, raw_tp or tracepoint (or env " DMU_ATTACH_ENV ")", 0 },
	{ "load-only", OPT_LOAD_ONLY, NULL, OPTION_HIDDEN, "Load (verifier) and exit; attach too if the module is loaded", 0 },
	{ NULL, 'h', NULL, OPTION_HIDDEN, "Show the full help", 0 },
	{},
};

static error_t parse_arg(int key, char *arg, struct argp_state *state)
{
	static int pos_args;
	char *end;
	int i;

	switch (key) {
	case 'h':
		argp_state_help(state, stdout, ARGP_HELP_STD_HELP);
		break;
	case 'v':
		dmu_verbose = true;
		break;
	case 'T':
		env.timestamp = true;
		break;
	case 'm':
		env.milliseconds = true;
		break;
	case 'D':
		env.per_dev = true;
		break;
	case 'O':
		env.per_op = true;
		break;
	case 'Q':
		env.qd = true;
		break;
	case 'S':
		if (env.nstage_args == (int)(sizeof(env.stage_args) / sizeof(env.stage_args[0]))) {
			fprintf(stderr, "too many -S\n");
			argp_usage(state);
		}
		env.stage_args[env.nstage_args++] = arg;
		break;
	case 'p':
		errno = 0;
		i = (int)strtol(arg, &end, 10);
		if (errno || *end || i <= 0) {
			fprintf(stderr, "invalid pid: %s\n", arg);
			argp_usage(state);
		}
		env.pid = i;
		env.daemon = true;
		break;
	case OPT_BINARY:
		env.binary = arg;
		env.daemon = true;
		break;
	case ARGP_KEY_END:
		/* -S names the stages of the mode -p/--binary chose */
		for (i = 0; i < env.nstage_args; i++) {
			const char *const *names = env.daemon ? dmu_pstage_names : dmu_stage_names;
			int j, n = env.daemon ? DMU_NR_PSTAGES : DMU_NR_STAGES;

			if (!strcmp(env.stage_args[i], "all")) {
				env.stages = (1U << n) - 1;
				continue;
			}
			for (j = 0; j < n; j++)
				if (!strcmp(env.stage_args[i], names[j]))
					break;
			if (j == n) {
				fprintf(stderr, "invalid stage: %s (%s)\n", env.stage_args[i],
					env.daemon ? "queue, handoff, pickup, backend, reply, total or all"
						   : "queue, daemon, total or all");
				argp_usage(state);
			}
			env.stages |= 1U << j;
		}
		if (!env.nstage_args)
			env.stages = env.daemon ? (1U << DMU_NR_PSTAGES) - 1 : 1U << DMU_STAGE_TOTAL;
		break;
	case 'd':
		env.devname = arg;
		break;
	case 'o':
		if (dmu_op_parse(arg, &env.op)) {
			fprintf(stderr, "invalid op: %s\n", arg);
			argp_usage(state);
		}
		env.filter_op = true;
		break;
	case OPT_JSON:
		env.json = true;
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
		errno = 0;
		if (pos_args == 0) {
			env.interval = strtol(arg, &end, 10);
			if (errno || *end || env.interval <= 0) {
				fprintf(stderr, "invalid interval: %s\n", arg);
				argp_usage(state);
			}
		} else if (pos_args == 1) {
			env.times = strtol(arg, &end, 10);
			if (errno || *end || env.times <= 0) {
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

/* The program of USDT probe i (enum dmu_usdt_probe), and its link's slot. */
static struct bpf_program **usdt_prog(struct dmuser_lat_bpf *obj, int i, struct bpf_link ***link)
{
	struct bpf_program **p[DMU_USDT_NR_PROBES] = {
		[DMU_USDT_RECEIVED] = &obj->progs.dmu_usdt_received,
		[DMU_USDT_SUBMITTED] = &obj->progs.dmu_usdt_submitted,
		[DMU_USDT_DONE] = &obj->progs.dmu_usdt_done,
		[DMU_USDT_REPLY] = &obj->progs.dmu_usdt_reply,
	};
	struct bpf_link **l[DMU_USDT_NR_PROBES] = {
		[DMU_USDT_RECEIVED] = &obj->links.dmu_usdt_received,
		[DMU_USDT_SUBMITTED] = &obj->links.dmu_usdt_submitted,
		[DMU_USDT_DONE] = &obj->links.dmu_usdt_done,
		[DMU_USDT_REPLY] = &obj->links.dmu_usdt_reply,
	};

	if (link)
		*link = l[i];
	return p[i];
}

/*
 * Attaches the four USDT programs to the file that holds libdmuser's probes:
 * --binary, else -p's libdmuser.so (from its maps), else -p's program
 * (libdmuser.a linked in).  A file without every probe is an error, said
 * here before libbpf would; so is a failed attach.  The links go to the
 * skeleton, which destroys them with the rest.
 */
static int attach_usdt(struct dmuser_lat_bpf *obj)
{
	char path[PATH_MAX], maps[64], exe[64], who[96] = "";
	struct bpf_link *link, **slot;
	int found, i, lib = 1, err;

	if (env.pid)
		snprintf(who, sizeof(who), " (pid %d)", env.pid);
	if (env.binary) {
		if (!realpath(env.binary, path)) {
			fprintf(stderr, PROG ": --binary %s: %s\n", env.binary, strerror(errno));
			return -1;
		}
	} else {
		snprintf(maps, sizeof(maps), "/proc/%d/maps", env.pid);
		snprintf(exe, sizeof(exe), "/proc/%d/exe", env.pid);
		lib = dmu_usdt_binary_of(maps, exe, path, sizeof(path));
		if (lib < 0) {
			fprintf(stderr, PROG ": no process %d to trace: %s\n", env.pid, strerror(-lib));
			return -1;
		}
	}
	found = dmu_usdt_probes(path);
	if (found < 0) {
		fprintf(stderr, PROG ": cannot read the probes of %s: %s\n", path, strerror(-found));
		return -1;
	}
	if (found != DMU_USDT_ALL) {
		fprintf(stderr, PROG ": %s%s has no%s dmuser USDT probe", path, who,
			found ? " complete set of" : "");
		for (i = 0; found && i < DMU_USDT_NR_PROBES; i++)
			if (!(found & (1 << i)))
				fprintf(stderr, " (%s missing)", dmu_usdt_probe_names[i]);
		fprintf(stderr, "%s: the daemon stages need libdmuser's probes; without -p and --binary, "
			"dmuser-lat shows the kernel's stages\n",
			lib ? "" : " (not linked with libdmuser.so, and no libdmuser.a with probes in it)");
		return -1;
	}
	if (dmu_verbose)
		fprintf(stderr, PROG ": attaching the dmuser USDT probes of %s%s\n", path, who);
	for (i = 0; i < DMU_USDT_NR_PROBES; i++) {
		struct bpf_program *prog = *usdt_prog(obj, i, &slot);

		link = bpf_program__attach_usdt(prog, env.pid ? env.pid : -1, path, "dmuser",
						dmu_usdt_probe_names[i], NULL);
		if (!link) {
			err = -errno;
			fprintf(stderr, PROG ": cannot attach USDT dmuser:%s of %s%s: %s\n",
				dmu_usdt_probe_names[i], path, who, strerror(-err));
			return -1;
		}
		*slot = link;
	}
	return 0;
}

struct attach_ctx {
	struct dmuser_lat_bpf *obj;
	bool attach;
};

static int open_load_attach(enum dmu_attach_mode mode, void *data)
{
	struct attach_ctx *ctx = data;
	struct dmuser_lat_bpf *obj;
	int err, i;

	obj = dmuser_lat_bpf__open();
	if (!obj)
		return errno ? -errno : -ENOMEM;

	obj->rodata->targ_per_dev = env.per_dev;
	obj->rodata->targ_ms = env.milliseconds;
	obj->rodata->targ_qd = env.qd;
	obj->rodata->filter_dev = env.devname != NULL;
	obj->rodata->targ_dev = env.dev;
	obj->rodata->filter_op = env.filter_op;
	obj->rodata->targ_op = env.op;

	/*
	 * Without -D, dev_recs holds only the ops beyond op_recs: size it so,
	 * as each of its entries has a copy per possible CPU.
	 */
	err = env.per_dev ? 0 : bpf_map__set_max_entries(obj->maps.dev_recs, DMU_LAT_NR_OPS);
	/* the daemon stages' maps, one entry each unless they are used */
	obj->rodata->targ_daemon = env.daemon;
	if (!err && env.daemon)
		err = bpf_map__set_max_entries(obj->maps.reqs, DMU_LAT_MAX_REQS);
	if (!err && env.daemon)
		err = bpf_map__set_max_entries(obj->maps.pipe_op_recs, DMU_LAT_NR_OPS);
	if (!err && env.daemon)
		err = bpf_map__set_max_entries(obj->maps.pipe_dev_recs,
					       env.per_dev ? DMU_LAT_MAX_RECS : DMU_LAT_NR_OPS);
	if (!err)
		err = dmu_attach_select(obj->obj, mode);
	/* the USDT programs, which dmu_attach_select() left out; userspace
	 * attaches them (attach_usdt()), the skeleton does not */
	for (i = 0; !err && env.daemon && i < DMU_USDT_NR_PROBES; i++)
		err = bpf_program__set_autoload(*usdt_prog(obj, i, NULL), true);
	/* dm_user_map only for the queue depths and the daemon stages */
	if (!err && !env.qd && !env.daemon)
		err = dmu_attach_skip_event(obj->obj, "dm_user_map");
	if (!err)
		err = dmuser_lat_bpf__load(obj);
	if (!err && ctx->attach)
		err = dmuser_lat_bpf__attach(obj);
	if (err) {
		dmuser_lat_bpf__destroy(obj);
		return err;
	}
	ctx->obj = obj;
	return 0;
}

/* ---- printing ---------------------------------------------------------- */

struct hist_ent {
	struct dmu_hist_key key;
	struct dmu_hist hist;
};

struct stat_ent {
	struct dmu_op_key key;
	struct dmu_op_stats st;
};

static int cmp_hist_ent(const void *a, const void *b)
{
	const struct dmu_hist_key *x = &((const struct hist_ent *)a)->key;
	const struct dmu_hist_key *y = &((const struct hist_ent *)b)->key;

	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->op != y->op)
		return x->op < y->op ? -1 : 1;
	return 0;
}

static int cmp_stat_ent(const void *a, const void *b)
{
	const struct dmu_op_key *x = &((const struct stat_ent *)a)->key;
	const struct dmu_op_key *y = &((const struct stat_ent *)b)->key;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->op != y->op)
		return x->op < y->op ? -1 : 1;
	return 0;
}

/* ---- reading the maps ---------------------------------------------------- */

struct rec_ent {
	struct dmu_op_key key;
	struct dmu_lat_rec rec;
};

/* one lookup's per-CPU copies of a struct dmu_lat_rec (op_recs and dev_recs) */
static struct dmu_percpu rec_pc;

/* op_recs as last read (summed over the CPUs): it is never cleared, each
 * interval is the difference */
static struct dmu_lat_rec prev_op[DMU_LAT_NR_OPS];

static void hist_sub(struct dmu_hist *d, const struct dmu_hist *cur, const struct dmu_hist *prev)
{
	int i;

	for (i = 0; i < DMU_MAX_SLOTS; i++)
		d->slots[i] = cur->slots[i] - prev->slots[i];
	d->sum = cur->sum - prev->sum;
}

static void rec_sub(struct dmu_lat_rec *d, const struct dmu_lat_rec *cur,
		    const struct dmu_lat_rec *prev)
{
	int i;

	for (i = 0; i < DMU_NR_STAGES; i++)
		hist_sub(&d->lat[i], &cur->lat[i], &prev->lat[i]);
	for (i = 0; i < DMU_NR_QD; i++)
		hist_sub(&d->qd[i], &cur->qd[i], &prev->qd[i]);
	d->st.ios = cur->st.ios - prev->st.ios;
	d->st.bytes = cur->st.bytes - prev->st.bytes;
	d->st.errors = cur->st.errors - prev->st.errors;
	for (i = 0; i < DMU_NR_ENDS; i++)
		d->st.ends[i] = cur->st.ends[i] - prev->st.ends[i];
}

/* Adds a non-empty histogram to the entry of its key; returns the new count. */
static int add_hist(struct hist_ent *ents, int n, int max, const struct dmu_hist_key *key,
		    const struct dmu_hist *h)
{
	int i;

	if (!dmu_hist_total(h->slots, DMU_MAX_SLOTS))
		return n;
	for (i = 0; i < n; i++) {
		if (memcmp(&ents[i].key, key, sizeof(*key)))
			continue;
		dmu_hist_sum(&ents[i].hist, h);
		return n;
	}
	if (n == max)
		return n;
	ents[n].key = *key;
	ents[n].hist = *h;
	return n + 1;
}

struct interval {
	struct hist_ent lat[DMU_LAT_MAX_HISTS];
	struct hist_ent qd[DMU_LAT_MAX_HISTS];
	struct stat_ent st[DMU_LAT_MAX_RECS + DMU_LAT_NR_OPS];
	int nlat, nqd, nst;
};

/*
 * Splits the record of (dev, op) into the entries printed: histograms keyed
 * by what the options split by (their sums over the other ops and devices),
 * counters by op.
 */
static void add_rec(struct interval *iv, const struct dmu_op_key *k, const struct dmu_lat_rec *r)
{
	struct dmu_hist_key key = {
		.dev = env.per_dev ? k->dev : 0,
		.op = env.per_op ? k->op : 0,
	};
	int i;

	for (i = 0; i < DMU_NR_STAGES; i++) {
		key.kind = i;
		iv->nlat = add_hist(iv->lat, iv->nlat, DMU_LAT_MAX_HISTS, &key, &r->lat[i]);
	}
	for (i = 0; i < DMU_NR_QD; i++) {
		key.kind = i;
		iv->nqd = add_hist(iv->qd, iv->nqd, DMU_LAT_MAX_HISTS, &key, &r->qd[i]);
	}
	if (r->st.ios && iv->nst < (int)(sizeof(iv->st) / sizeof(iv->st[0]))) {
		iv->st[iv->nst].key = *k;
		iv->st[iv->nst].st = r->st;
		iv->nst++;
	}
}

/*
 * What the interval added: op_recs minus its previous reading (without -D),
 * then dev_recs, read and deleted (as biolatency does); sorted.  Every value
 * read is the sum of its CPUs' copies.
 */
static void read_interval(struct dmuser_lat_bpf *obj, struct interval *iv)
{
	static struct rec_ent recs[DMU_LAT_MAX_RECS];
	struct dmu_lat_rec cur, d;
	struct dmu_op_key k = {};
	int fd, n, i;

	iv->nlat = iv->nqd = iv->nst = 0;
	if (!env.per_dev) {
		fd = bpf_map__fd(obj->maps.op_recs);
		for (k.op = 0; k.op < DMU_LAT_NR_OPS; k.op++) {
			if (dmu_percpu_lookup(&rec_pc, fd, &k.op, &cur))
				continue;
			rec_sub(&d, &cur, &prev_op[k.op]);
			prev_op[k.op] = cur;
			add_rec(iv, &k, &d);
		}
	}
	n = dmu_map_dump(bpf_map__fd(obj->maps.dev_recs), &rec_pc, recs, sizeof(recs[0]),
			 offsetof(struct rec_ent, rec), DMU_LAT_MAX_RECS, true);
	for (i = 0; i < n; i++)
		add_rec(iv, &recs[i].key, &recs[i].rec);
	qsort(iv->lat, iv->nlat, sizeof(iv->lat[0]), cmp_hist_ent);
	qsort(iv->qd, iv->nqd, sizeof(iv->qd[0]), cmp_hist_ent);
	qsort(iv->st, iv->nst, sizeof(iv->st[0]), cmp_stat_ent);
}

/* ---- the daemon stages (-p, --binary) ---------------------------------- */

/* one lookup's per-CPU copies of a struct dmu_pipe_rec, and of a __u64 */
static struct dmu_percpu pipe_pc, u64_pc;
static struct dmu_pipe_rec prev_pipe[DMU_LAT_NR_OPS];
static __u64 prev_replies, prev_clamped;

struct pipe_ent {
	struct dmu_op_key key;
	struct dmu_pipe_rec rec;
};

/* A stage's histogram of the interval, keyed as the options split. */
struct pstage_ent {
	struct dmu_hist_key key;
	struct dmu_hist hist;
	__u64 sum_ns;
};

struct pipe_interval {
	struct pstage_ent st[DMU_LAT_MAX_RECS * DMU_NR_PSTAGES];
	int nst;
	__u64 counts[DMU_NR_PCOUNTS];	/* over every device and op traced */
	__u64 replies;			/* USDT reply_sent */
	__u64 clamped;			/* dmu_handoff_clamped, this interval */
};

static void pipe_sub(struct dmu_pipe_rec *d, const struct dmu_pipe_rec *cur,
		     const struct dmu_pipe_rec *prev)
{
	int i;

	for (i = 0; i < DMU_NR_PSTAGES; i++) {
		hist_sub(&d->st[i], &cur->st[i], &prev->st[i]);
		d->sum_ns[i] = cur->sum_ns[i] - prev->sum_ns[i];
	}
	for (i = 0; i < DMU_NR_PCOUNTS; i++)
		d->counts[i] = cur->counts[i] - prev->counts[i];
}

static void add_pipe(struct pipe_interval *pv, const struct dmu_op_key *k,
		     const struct dmu_pipe_rec *r)
{
	struct dmu_hist_key key = {
		.dev = env.per_dev ? k->dev : 0,
		.op = env.per_op ? k->op : 0,
	};
	int i, j;

	for (i = 0; i < DMU_NR_PCOUNTS; i++)
		pv->counts[i] += r->counts[i];
	for (i = 0; i < DMU_NR_PSTAGES; i++) {
		if (!dmu_hist_total(r->st[i].slots, DMU_MAX_SLOTS))
			continue;
		key.kind = i;
		for (j = 0; j < pv->nst; j++)
			if (!memcmp(&pv->st[j].key, &key, sizeof(key)))
				break;
		if (j == pv->nst) {
			if (pv->nst == (int)(sizeof(pv->st) / sizeof(pv->st[0])))
				continue;
			memset(&pv->st[j], 0, sizeof(pv->st[j]));
			pv->st[j].key = key;
			pv->nst++;
		}
		dmu_hist_sum(&pv->st[j].hist, &r->st[i]);
		pv->st[j].sum_ns += r->sum_ns[i];
	}
}

static int cmp_pstage_ent(const void *a, const void *b)
{
	const struct dmu_hist_key *x = &((const struct pstage_ent *)a)->key;
	const struct dmu_hist_key *y = &((const struct pstage_ent *)b)->key;

	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	if (x->op != y->op)
		return x->op < y->op ? -1 : 1;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	return 0;
}

/* The daemon stages of the interval, read as read_interval() reads its maps. */
static void read_pipe(struct dmuser_lat_bpf *obj, struct pipe_interval *pv)
{
	static struct pipe_ent recs[DMU_LAT_MAX_RECS];
	struct dmu_pipe_rec cur, d;
	struct dmu_op_key k = {};
	__u32 zero = 0;
	__u64 replies;
	int fd, n, i;

	memset(pv->counts, 0, sizeof(pv->counts));
	pv->nst = 0;
	pv->replies = 0;
	if (!env.per_dev) {
		fd = bpf_map__fd(obj->maps.pipe_op_recs);
		for (k.op = 0; k.op < DMU_LAT_NR_OPS; k.op++) {
			if (dmu_percpu_lookup(&pipe_pc, fd, &k.op, &cur))
				continue;
			pipe_sub(&d, &cur, &prev_pipe[k.op]);
			prev_pipe[k.op] = cur;
			add_pipe(pv, &k, &d);
		}
	}
	n = dmu_map_dump(bpf_map__fd(obj->maps.pipe_dev_recs), &pipe_pc, recs, sizeof(recs[0]),
			 offsetof(struct pipe_ent, rec), DMU_LAT_MAX_RECS, true);
	for (i = 0; i < n; i++)
		add_pipe(pv, &recs[i].key, &recs[i].rec);
	if (!dmu_percpu_lookup(&u64_pc, bpf_map__fd(obj->maps.replies), &zero, &replies)) {
		pv->replies = replies - prev_replies;
		prev_replies = replies;
	}
	pv->clamped = obj->bss->dmu_handoff_clamped - prev_clamped;
	prev_clamped += pv->clamped;
	qsort(pv->st, pv->nst, sizeof(pv->st[0]), cmp_pstage_ent);
}

static void u64_sum(void *sum, const void *val)
{
	*(__u64 *)sum += *(const __u64 *)val;
}

static const char *qd_names[] = { [DMU_QD_QUEUED] = "queued", [DMU_QD_IN_FLIGHT] = "in_flight" };

static void print_label(const struct dmu_hist_key *k, bool qd, const char *const *stages)
{
	char name[256], opbuf[16];
	const char *sep = "";

	if (env.per_dev) {
		dmu_dev_name(k->dev, name, sizeof(name));
		printf("device = %s", name);
		sep = ", ";
	}
	if (env.per_op) {
		printf("%sop = %s", sep, dmu_op_name(k->op, opbuf, sizeof(opbuf)));
		sep = ", ";
	}
	if (qd)
		printf("%squeue depth = %s\n", sep, qd_names[k->kind]);
	else
		printf("%sstage = %s\n", sep, stages[k->kind]);
}

/* The device and op fields of an entry, as its key splits it. */
static void json_key(json_t *o, const struct dmu_hist_key *k, bool per_op)
{
	char name[256], opbuf[16], dev[32];

	if (env.per_dev) {
		dmu_dev_name(k->dev, name, sizeof(name));
		snprintf(dev, sizeof(dev), "%u:%u", dmu_major(k->dev), dmu_minor(k->dev));
		json_object_set_new(o, "device", json_string(name));
		json_object_set_new(o, "dev", json_string(dev));
	}
	if (per_op)
		json_object_set_new(o, "op", json_string(dmu_op_name(k->op, opbuf, sizeof(opbuf))));
}

/* count, p50, p99 (null if empty) and the buckets */
static void json_hist(json_t *o, const struct dmu_hist *h)
{
	double p50 = dmu_hist_percentile(h->slots, DMU_MAX_SLOTS, 0.50);
	double p99 = dmu_hist_percentile(h->slots, DMU_MAX_SLOTS, 0.99);

	json_object_set_new(o, "count", json_integer(dmu_json_u64(dmu_hist_total(h->slots, DMU_MAX_SLOTS))));
	json_object_set_new(o, "p50", p50 < 0 ? json_null() : json_real(p50));
	json_object_set_new(o, "p99", p99 < 0 ? json_null() : json_real(p99));
	json_object_set_new(o, "buckets", dmu_json_log2_hist(h->slots, DMU_MAX_SLOTS));
}

/* One interval as a JSON object (see README.md); NULL if out of memory. */
static json_t *interval_json(const struct interval *iv, const struct pipe_interval *pv,
			     const char *ts, const char *units, enum dmu_attach_mode mode)
{
	json_t *doc, *lat = json_array(), *qd = json_array(), *ops = json_array(), *o;
	json_t *req = NULL;
	__u64 completed = 0;
	int i, j;

	for (i = 0; pv && i < pv->nst; i++) {
		if (!(env.stages & (1U << pv->st[i].key.kind)))
			continue;
		o = json_object();
		json_key(o, &pv->st[i].key, env.per_op);
		json_object_set_new(o, "stage", json_string(dmu_pstage_names[pv->st[i].key.kind]));
		json_hist(o, &pv->st[i].hist);
		json_object_set_new(o, "sum_ns", json_integer(dmu_json_u64(pv->st[i].sum_ns)));
		json_array_append_new(lat, o);
	}
	if (pv) {
		for (i = 0; i < iv->nst; i++)
			completed += iv->st[i].st.ios;
		req = json_object();
		json_object_set_new(req, "completed", json_integer(dmu_json_u64(completed)));
		for (i = 0; i < DMU_NR_PCOUNTS; i++)
			json_object_set_new(req, dmu_pcount_names[i], json_integer(dmu_json_u64(pv->counts[i])));
		json_object_set_new(req, "replies_sent", json_integer(dmu_json_u64(pv->replies)));
		json_object_set_new(req, "handoff_clamped", json_integer(dmu_json_u64(pv->clamped)));
	}
	for (i = 0; !pv && i < iv->nlat; i++) {
		if (!(env.stages & (1U << iv->lat[i].key.kind)))
			continue;
		o = json_object();
		json_key(o, &iv->lat[i].key, env.per_op);
		json_object_set_new(o, "stage", json_string(dmu_stage_names[iv->lat[i].key.kind]));
		json_hist(o, &iv->lat[i].hist);
		json_array_append_new(lat, o);
	}
	for (i = 0; env.qd && i < iv->nqd; i++) {
		o = json_object();
		json_key(o, &iv->qd[i].key, env.per_op);
		json_object_set_new(o, "kind", json_string(qd_names[iv->qd[i].key.kind]));
		json_hist(o, &iv->qd[i].hist);
		json_array_append_new(qd, o);
	}
	for (i = 0; i < iv->nst; i++) {
		const struct dmu_op_stats *st = &iv->st[i].st;
		struct dmu_hist_key k = { .dev = iv->st[i].key.dev, .op = iv->st[i].key.op };

		o = json_object();
		json_key(o, &k, true);	/* op stats are always by op */
		json_object_set_new(o, "ios", json_integer(dmu_json_u64(st->ios)));
		json_object_set_new(o, "bytes", json_integer(dmu_json_u64(st->bytes)));
		json_object_set_new(o, "errors", json_integer(dmu_json_u64(st->errors)));
		for (j = 0; j < DMU_NR_ENDS; j++)
			json_object_set_new(o, j == DMU_END_TIMEOUT ? "timeouts" : dmu_end_names[j],
					    json_integer(dmu_json_u64(st->ends[j])));
		json_array_append_new(ops, o);
	}
	doc = json_pack("{s:s, s:s, s:s, s:o}", "time", ts, "unit", units,
			"attach", dmu_attach_name(mode), "latency", lat);
	if (doc && env.qd)
		json_object_set_new(doc, "queue_depth", qd);
	else
		json_decref(qd);
	if (doc)
		json_object_set_new(doc, "ops", ops);
	else
		json_decref(ops);
	if (doc && req)
		json_object_set_new(doc, "requests", req);
	else
		json_decref(req);
	return doc;
}

static int print_interval(struct dmuser_lat_bpf *obj, enum dmu_attach_mode mode)
{
	static struct interval iv;
	static struct pipe_interval pv;
	const struct hist_ent *lat = iv.lat, *qd = iv.qd;
	const struct stat_ent *st = iv.st;
	const char *units = env.milliseconds ? "msecs" : "usecs";
	int nlat, nqd, nst, i;
	char ts[32], name[256], opbuf[16];
	bool first;

	read_interval(obj, &iv);
	if (env.daemon)
		read_pipe(obj, &pv);
	nlat = env.daemon ? 0 : iv.nlat;
	nqd = iv.nqd;
	nst = iv.nst;
	dmu_strftime_now(ts, sizeof(ts));

	if (env.json) {
		json_t *doc = interval_json(&iv, env.daemon ? &pv : NULL, ts, units, mode);

		if (!doc || json_dumpf(doc, stdout, JSON_COMPACT | JSON_REAL_PRECISION(10)) || fputc('\n', stdout) == EOF) {
			json_decref(doc);
			return -ENOMEM;
		}
		json_decref(doc);
		fflush(stdout);
		return 0;
	}

	if (env.timestamp)
		printf("%-8s\n", ts);
	for (i = 0, first = true; i < nlat; i++) {
		if (!(env.stages & (1U << lat[i].key.kind)))
			continue;
		if (!first)
			printf("\n");
		first = false;
		print_label(&lat[i].key, false, dmu_stage_names);
		dmu_print_log2_hist(stdout, lat[i].hist.slots, DMU_MAX_SLOTS, units);
	}
	for (i = 0; env.daemon && i < pv.nst; i++) {
		if (!(env.stages & (1U << pv.st[i].key.kind)))
			continue;
		if (!first)
			printf("\n");
		first = false;
		print_label(&pv.st[i].key, false, dmu_pstage_names);
		dmu_print_log2_hist(stdout, pv.st[i].hist.slots, DMU_MAX_SLOTS, units);
	}
	if (env.daemon) {
		unsigned long long completed = 0;

		for (i = 0; i < nst; i++)
			completed += st[i].st.ios;
		printf("\nrequests: %llu completed: %llu observed in every stage; not in the stages: "
		       "%llu untimed, %llu unanswered, %llu no daemon probe, %llu partial, "
		       "%llu misordered; %llu replies sent", completed,
		       (unsigned long long)pv.counts[DMU_PC_OBSERVED],
		       (unsigned long long)pv.counts[DMU_PC_UNTIMED],
		       (unsigned long long)pv.counts[DMU_PC_UNANSWERED],
		       (unsigned long long)pv.counts[DMU_PC_NO_DAEMON],
		       (unsigned long long)pv.counts[DMU_PC_PARTIAL],
		       (unsigned long long)pv.counts[DMU_PC_MISORDERED],
		       (unsigned long long)pv.replies);
		if (pv.clamped)
			printf("; first read estimated after request_received in %llu (handoff 0)",
			       (unsigned long long)pv.clamped);
		printf("\n");
	}
	for (i = 0; env.qd && i < nqd; i++) {
		printf("\n");
		print_label(&qd[i].key, true, NULL);
		dmu_print_log2_hist(stdout, qd[i].hist.slots, DMU_MAX_SLOTS, "requests");
	}
	for (i = 0, first = true; i < nst; i++) {
		const struct dmu_op_stats *s = &st[i].st;

		if (!s->errors && !s->ends[DMU_END_TIMEOUT])
			continue;
		if (first)
			printf("\n");
		first = false;
		if (env.per_dev) {
			dmu_dev_name(st[i].key.dev, name, sizeof(name));
			printf("device = %s, ", name);
		}
		printf("op = %s: %llu errors, %llu timeouts (of %llu completed; closed %llu, teardown %llu, rejected %llu)\n",
		       dmu_op_name(st[i].key.op, opbuf, sizeof(opbuf)),
		       (unsigned long long)s->errors,
		       (unsigned long long)s->ends[DMU_END_TIMEOUT],
		       (unsigned long long)s->ios,
		       (unsigned long long)s->ends[DMU_END_CLOSED],
		       (unsigned long long)s->ends[DMU_END_TEARDOWN],
		       (unsigned long long)s->ends[DMU_END_REJECTED]);
	}
	printf("\n");
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct argp argp = {
		.options = opts,
		.parser = parse_arg,
		.doc = argp_program_doc,
	};
	struct attach_ctx ctx = { .attach = true };
	int err, mode;

	if (dmu_attach_from_env(PROG, &env.attach))
		return 1;
	err = argp_parse(&argp, argc, argv, 0, NULL, NULL);
	if (err)
		return err;

	libbpf_set_print(dmu_libbpf_print);

	if (!dmu_module_loaded(PROG)) {
		/* --load-only can still run the verifier on the untyped modes */
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
	if (env.daemon && ctx.attach && attach_usdt(ctx.obj)) {
		dmuser_lat_bpf__destroy(ctx.obj);
		return 1;
	}
	if (env.load_only) {
		printf("%s: loaded%s with %s%s\n", PROG, ctx.attach ? " and attached" : "",
		       dmu_attach_name(mode), env.daemon && ctx.attach ? " and USDT" : "");
		dmuser_lat_bpf__destroy(ctx.obj);
		return 0;
	}
	err = dmu_percpu_init(&rec_pc, libbpf_num_possible_cpus(), sizeof(struct dmu_lat_rec),
			      dmu_lat_rec_sum);
	if (!err && env.daemon)
		err = dmu_percpu_init(&pipe_pc, libbpf_num_possible_cpus(),
				      sizeof(struct dmu_pipe_rec), dmu_pipe_rec_sum);
	if (!err && env.daemon)
		err = dmu_percpu_init(&u64_pc, libbpf_num_possible_cpus(), sizeof(__u64), u64_sum);
	if (err) {
		fprintf(stderr, PROG ": cannot size the per-CPU map values: %s\n", strerror(-err));
		dmuser_lat_bpf__destroy(ctx.obj);
		return 1;
	}

	signal(SIGINT, sig_handler);
	signal(SIGTERM, sig_handler);

	/* with --json the banner goes to stderr, so stdout stays JSON lines */
	fprintf(env.json ? stderr : stdout,
		"Tracing dm-user request latency (attach: %s%s)... Hit Ctrl-C to end.\n",
		dmu_attach_name(mode), env.daemon ? ", daemon stages: USDT" : "");
	fflush(env.json ? stderr : stdout);

	while (!exiting) {
		sleep(env.interval);
		if (!env.json)
			printf("\n");
		err = print_interval(ctx.obj, mode);
		if (err || --env.times == 0)
			break;
	}

	dmu_check_misses(PROG, ctx.obj->obj);
	dmu_report_runs(PROG, ctx.obj->obj);
	dmu_report_inserts(PROG, ctx.obj->bss->dmu_init_failed, ctx.obj->bss->dmu_init_err);
	dmuser_lat_bpf__destroy(ctx.obj);
	dmu_percpu_free(&rec_pc);
	dmu_percpu_free(&pipe_pc);
	dmu_percpu_free(&u64_pc);
	return err != 0;
}
