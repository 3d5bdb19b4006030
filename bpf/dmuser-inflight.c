// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * dmuser-inflight: every request the dm-user targets hold right now, one
 * line each, oldest first: which request, in which state, held by which
 * daemon thread, and since when.
 *
 * It reads the module's in-flight tables, /sys/kernel/debug/dm-user/<control
 * name>/inflight (target version 1.5.0 and later): the module takes each one
 * as a snapshot under its locks, with the thread that read each request, so
 * this tool attaches nothing and costs the I/O path nothing while it does
 * not run (see module/README.md, "The in-flight table").
 */
#include <argp.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>

#include "trace_helpers.h"

#define PROG "dmuser-inflight"
#define DEBUGFS "/sys/kernel/debug"
#define DMU_DEBUGFS DEBUGFS "/dm-user"

static struct env {
	bool json;
	const char *devname;
	__u32 dev;
	unsigned long long min_age_us;
} env;

const char *argp_program_version = "dmuser-inflight 0.1";
const char argp_program_doc[] =
"List every request the dm-user targets hold right now, oldest first.\n"
"\n"
"One line per request: device, control name, seq, op, sector, bytes, state\n"
"(queued: waiting for a daemon; reading: a daemon has read part of it;\n"
"sent: a daemon has read it and not answered; replying: a daemon is writing\n"
"its reply), the channel (-1: queued on no channel), the pid and tid of the\n"
"daemon thread whose read() took it, its age since it was mapped, and how\n"
"long that thread has held it.\n"
"Reads the module's debugfs tables (target version 1.5.0 and later);\n"
"needs debugfs mounted on " DEBUGFS ".\n"
"\n"
"USAGE: dmuser-inflight [-h] [--json] [-d DEV] [-a MS]\n"
"\n"
"EXAMPLES:\n"
"    dmuser-inflight               # every device\n"
"    dmuser-inflight -d dmu-test0  # only this device\n"
"    dmuser-inflight --json        # one JSON object per request\n"
"    dmuser-inflight -a 1000       # only requests a second old or more\n";

enum {
	OPT_JSON = 1000,
};

static const struct argp_option opts[] = {
	{ "json", OPT_JSON, NULL, 0, "Print one JSON object per request, one per line", 0 },
	{ "device", 'd', "DEV", 0, "Show this device only", 0 },
	{ "min-age", 'a', "MS", 0, "Show only requests at least MS milliseconds old (default 0)", 0 },
	{ "verbose", 'v', NULL, 0, "Verbose debug output", 0 },
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
	case OPT_JSON:
		env.json = true;
		break;
	case 'd':
		env.devname = arg;
		break;
	case 'a': {
		char *end;
		unsigned long long ms;

		errno = 0;
		ms = strtoull(arg, &end, 10);
		if (errno || end == arg || *end || arg[0] == '-' || ms > UINT32_MAX) {
			fprintf(stderr, "invalid age: %s (milliseconds)\n", arg);
			argp_usage(state);
		}
		env.min_age_us = ms * 1000;
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

struct req {
	__u32 dev;
	char ctl[256];
	unsigned long long seq, sector, age_us, held_us;
	unsigned int op, bytes;
	char state[16];
	int channel, pid, tid;
};

static struct req *reqs;
static size_t nr_reqs, cap_reqs;

static struct req *new_req(void)
{
	if (nr_reqs == cap_reqs) {
		size_t cap = cap_reqs ? 2 * cap_reqs : 64;
		struct req *r = realloc(reqs, cap * sizeof(*r));

		if (!r)
			return NULL;
		reqs = r;
		cap_reqs = cap;
	}
	return &reqs[nr_reqs++];
}

/*
 * One target's table: "# ..." comments, then
 * "MAJ:MIN seq op sector bytes state channel pid tid age_us held_us" lines.
 * Returns 0, or -errno after a message.
 */
static int read_table(const char *ctl, const char *path)
{
	unsigned int major, minor;
	size_t cap = 0;
	char *line = NULL;
	int err = 0, lineno = 0;
	struct req *r;
	FILE *f;

	f = fopen(path, "re");
	if (!f) {
		/* a target removed since the directory was listed */
		if (errno == ENOENT)
			return 0;
		err = -errno;
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
		return err;
	}
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		if (line[0] == '#') {
			if (!strncmp(line, "# truncated", 11))
				fprintf(stderr, PROG ": warning: %s: more requests than the table could hold; the newest are missing\n",
					ctl);
			continue;
		}
		r = new_req();
		if (!r) {
			err = -ENOMEM;
			fprintf(stderr, PROG ": out of memory\n");
			break;
		}
		if (sscanf(line, "%u:%u %llu %u %llu %u %15s %d %d %d %llu %llu",
			   &major, &minor, &r->seq, &r->op, &r->sector, &r->bytes,
			   r->state, &r->channel, &r->pid, &r->tid, &r->age_us,
			   &r->held_us) != 12) {
			err = -EINVAL;
			fprintf(stderr, PROG ": %s:%d: unexpected line: %s", path, lineno, line);
			nr_reqs--;
			break;
		}
		r->dev = dmu_mkdev(major, minor);
		snprintf(r->ctl, sizeof(r->ctl), "%s", ctl);
		if ((env.devname && r->dev != env.dev) || r->age_us < env.min_age_us)
			nr_reqs--;
	}
	/* a file whose target went away while it was read */
	if (ferror(f) && errno != EIO && !err) {
		err = -errno;
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
	}
	free(line);
	fclose(f);
	return err;
}

/* Why there are no tables: debugfs not mounted, or a module before 1.5.0. */
static void explain_no_tables(void)
{
	struct statfs sf;

	if (statfs(DEBUGFS, &sf) || sf.f_type != DEBUGFS_MAGIC)
		fprintf(stderr, PROG ": debugfs is not mounted on " DEBUGFS
			" (mount -t debugfs none " DEBUGFS ")\n");
	else
		fprintf(stderr, PROG ": dm-user module too old: no " DMU_DEBUGFS
			" (need target version >= 1.5.0)\n");
}

static int read_tables(void)
{
	char path[PATH_MAX];
	struct dirent *de;
	int err = 0, r;
	DIR *d;

	d = opendir(DMU_DEBUGFS);
	if (!d) {
		if (errno == ENOENT) {
			explain_no_tables();
			return -ENOENT;
		}
		fprintf(stderr, PROG ": " DMU_DEBUGFS ": %s\n", strerror(errno));
		return -errno;
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), DMU_DEBUGFS "/%s/inflight", de->d_name);
		if (dmu_verbose)
			fprintf(stderr, PROG ": reading %s\n", path);
		r = read_table(de->d_name, path);
		if (r && !err)
			err = r;
	}
	closedir(d);
	return err;
}

/* Oldest first; within a device, in seq order. */
static int cmp_req(const void *a, const void *b)
{
	const struct req *x = a, *y = b;

	if (x->age_us != y->age_us)
		return x->age_us > y->age_us ? -1 : 1;
	if (x->dev != y->dev)
		return x->dev < y->dev ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int print_json(const struct req *r, const char *dev, const char *op)
{
	char mm[32];
	json_t *o;
	int err;

	snprintf(mm, sizeof(mm), "%u:%u", dmu_major(r->dev), dmu_minor(r->dev));
	o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:s, s:o, s:o, s:o, s:I, s:I}",
		      "device", dev, "dev", mm, "control", r->ctl,
		      "seq", (json_int_t)r->seq, "op", op, "op_num", (json_int_t)r->op,
		      "sector", (json_int_t)r->sector, "bytes", (json_int_t)r->bytes,
		      "state", r->state,
		      "channel", r->channel < 0 ? json_null() : json_integer(r->channel),
		      "pid", r->pid ? json_integer(r->pid) : json_null(),
		      "tid", r->tid ? json_integer(r->tid) : json_null(),
		      "age_us", (json_int_t)r->age_us, "held_us", (json_int_t)r->held_us);
	err = !o || json_dumpf(o, stdout, JSON_COMPACT) || fputc('\n', stdout) == EOF;
	json_decref(o);
	return err ? -EIO : 0;
}

int main(int argc, char **argv)
{
	static const struct argp argp = {
		.options = opts,
		.parser = parse_arg,
		.doc = argp_program_doc,
	};
	char dev[64], opbuf[16], pid[16], tid[16];
	int err;
	size_t i;

	err = argp_parse(&argp, argc, argv, 0, NULL, NULL);
	if (err)
		return err;
	if (!dmu_module_loaded(PROG))
		return 1;
	if (env.devname && dmu_dev_resolve(env.devname, &env.dev)) {
		fprintf(stderr, PROG ": no block device '%s'\n", env.devname);
		return 1;
	}
	if (read_tables()) {
		free(reqs);
		return 1;
	}
	qsort(reqs, nr_reqs, sizeof(*reqs), cmp_req);

	if (!env.json)
		printf("%-16s %-16s %10s %-8s %12s %8s %-8s %4s %7s %7s %12s %12s\n",
		       "DEVICE", "CONTROL", "SEQ", "OP", "SECTOR", "BYTES", "STATE",
		       "CHAN", "PID", "TID", "AGE_us", "HELD_us");
	for (i = 0; i < nr_reqs && !err; i++) {
		const struct req *r = &reqs[i];
		const char *op = dmu_op_name(r->op, opbuf, sizeof(opbuf));

		dmu_dev_name(r->dev, dev, sizeof(dev));
		if (env.json) {
			err = print_json(r, dev, op);
			continue;
		}
		snprintf(pid, sizeof(pid), "%d", r->pid);
		snprintf(tid, sizeof(tid), "%d", r->tid);
		printf("%-16s %-16s %10llu %-8s %12llu %8u %-8s %4d %7s %7s %12llu %12llu\n",
		       dev, r->ctl, r->seq, op, r->sector, r->bytes, r->state,
		       r->channel, r->pid ? pid : "-", r->tid ? tid : "-", r->age_us,
		       r->held_us);
	}
	if (fflush(stdout) == EOF)
		err = -EIO;
	free(reqs);
	return err ? 1 : 0;
}
