// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Userspace helpers of the dm-user BPF tools.  See trace_helpers.h.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/dm-user.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <gelf.h>
#include <libdevmapper.h>

#include "dmuser.h"
#include "dmuser-lat.h"
#include "dmuser-top.h"
#include "trace_helpers.h"

bool dmu_verbose;
bool dmu_libbpf_quiet;
bool dmu_no_probe;

int dmu_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !dmu_verbose)
		return 0;
	if (dmu_libbpf_quiet && !dmu_verbose)
		return 0;
	return vfprintf(stderr, fmt, args);
}

/* ---- names ------------------------------------------------------------- */

const char *const dmu_op_names[] = {
	[DM_USER_REQ_MAP_READ] = "read",
	[DM_USER_REQ_MAP_WRITE] = "write",
	[DM_USER_REQ_MAP_FLUSH] = "flush",
	[DM_USER_REQ_MAP_DISCARD] = "discard",
	[DM_USER_REQ_MAP_SECURE_ERASE] = "secure_erase",
	[DM_USER_REQ_MAP_WRITE_SAME] = "write_same",
	[DM_USER_REQ_MAP_WRITE_ZEROES] = "write_zeroes",
	[DM_USER_REQ_MAP_ZONE_OPEN] = "zone_open",
	[DM_USER_REQ_MAP_ZONE_CLOSE] = "zone_close",
	[DM_USER_REQ_MAP_ZONE_FINISH] = "zone_finish",
	[DM_USER_REQ_MAP_ZONE_APPEND] = "zone_append",
	[DM_USER_REQ_MAP_ZONE_RESET] = "zone_reset",
	[DM_USER_REQ_MAP_ZONE_RESET_ALL] = "zone_reset_all",
	NULL,
};
#define NR_OP_NAMES (sizeof(dmu_op_names) / sizeof(dmu_op_names[0]) - 1)

const char *const dmu_pstage_names[] = {
	[DMU_PS_QUEUE] = "queue",
	[DMU_PS_HANDOFF] = "handoff",
	[DMU_PS_PICKUP] = "pickup",
	[DMU_PS_BACKEND] = "backend",
	[DMU_PS_REPLY] = "reply",
	[DMU_PS_TOTAL] = "total",
};

const char *const dmu_pcount_names[] = {
	[DMU_PC_OBSERVED] = "observed",
	[DMU_PC_UNTIMED] = "untimed",
	[DMU_PC_UNANSWERED] = "unanswered",
	[DMU_PC_NO_DAEMON] = "no_daemon",
	[DMU_PC_PARTIAL] = "partial",
	[DMU_PC_MISORDERED] = "misordered",
};

const char *const dmu_usdt_probe_names[] = {
	[DMU_USDT_RECEIVED] = "request_received",
	[DMU_USDT_SUBMITTED] = "backend_submitted",
	[DMU_USDT_DONE] = "backend_done",
	[DMU_USDT_REPLY] = "reply_sent",
};

const char *const dmu_stage_names[] = {
	[DMU_STAGE_QUEUE] = "queue",
	[DMU_STAGE_DAEMON] = "daemon",
	[DMU_STAGE_TOTAL] = "total",
};

const char *const dmu_end_names[] = {
	[DMU_END_REPLY] = "reply",
	[DMU_END_CLOSED] = "closed",
	[DMU_END_TIMEOUT] = "timeout",
	[DMU_END_TEARDOWN] = "teardown",
	[DMU_END_REJECTED] = "rejected",
};

const char *dmu_op_name(unsigned int op, char *buf, size_t len)
{
	if (op < NR_OP_NAMES && dmu_op_names[op])
		return dmu_op_names[op];
	snprintf(buf, len, "op%u", op);
	return buf;
}

int dmu_op_parse(const char *s, unsigned int *op)
{
	char *end;
	unsigned long v;
	size_t i;

	for (i = 0; i < NR_OP_NAMES; i++) {
		if (dmu_op_names[i] && !strcasecmp(s, dmu_op_names[i])) {
			*op = i;
			return 0;
		}
	}
	errno = 0;
	v = strtoul(s, &end, 0);
	if (errno || end == s || *end || v > UINT32_MAX)
		return -EINVAL;
	*op = v;
	return 0;
}

void dmu_strftime_now(char *buf, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%H:%M:%S", &tm);
}

/* ---- attach modes ------------------------------------------------------ */

static const char *const attach_names[] = {
	[DMU_ATTACH_AUTO] = "auto",
	[DMU_ATTACH_TP_BTF] = "tp_btf",
	[DMU_ATTACH_RAW_TP] = "raw_tp",
	[DMU_ATTACH_TRACEPOINT] = "tracepoint",
};

/* section prefix of each mode's programs, see DMU_ATTACH_PROGRAMS() */
static const char *const attach_sections[] = {
	[DMU_ATTACH_TP_BTF] = "tp_btf/",
	[DMU_ATTACH_RAW_TP] = "raw_tp/",
	[DMU_ATTACH_TRACEPOINT] = "tracepoint/",
};

/* the events the tools attach; dm_user_read and dm_user_write are not used */
static const char *const events[] = {
	"dm_user_map", "dm_user_complete",
};
#define NR_EVENTS 2

const char *dmu_attach_name(enum dmu_attach_mode mode)
{
	if ((unsigned int)mode <= DMU_ATTACH_TRACEPOINT)
		return attach_names[mode];
	return "?";
}

int dmu_attach_parse(const char *s, enum dmu_attach_mode *mode)
{
	int i;

	for (i = DMU_ATTACH_AUTO; i <= DMU_ATTACH_TRACEPOINT; i++) {
		if (!strcmp(s, attach_names[i])) {
			*mode = i;
			return 0;
		}
	}
	/* the section names are accepted too */
	if (!strcmp(s, "raw_tracepoint")) {
		*mode = DMU_ATTACH_RAW_TP;
		return 0;
	}
	if (!strcmp(s, "tp")) {
		*mode = DMU_ATTACH_TRACEPOINT;
		return 0;
	}
	return -EINVAL;
}

bool dmu_module_loaded(const char *prog)
{
	if (access("/sys/module/dm_user", F_OK) == 0)
		return true;
	fprintf(stderr, "%s: dm-user module not loaded (no /sys/module/dm_user)\n", prog);
	return false;
}

bool dmu_probe_tp_btf(char *why, size_t len)
{
	struct btf *vmlinux, *mod;
	char name[64];
	bool ok = true;
	int i;

	if (access("/sys/kernel/btf/dm_user", R_OK)) {
		snprintf(why, len, "no module BTF (/sys/kernel/btf/dm_user)");
		return false;
	}
	vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux) {
		snprintf(why, len, "no kernel BTF: %s", strerror(errno));
		return false;
	}
	mod = btf__parse_split("/sys/kernel/btf/dm_user", vmlinux);
	if (!mod) {
		snprintf(why, len, "cannot parse /sys/kernel/btf/dm_user: %s", strerror(errno));
		btf__free(vmlinux);
		return false;
	}
	for (i = 0; i < NR_EVENTS; i++) {
		snprintf(name, sizeof(name), "btf_trace_%s", events[i]);
		if (btf__find_by_name_kind(mod, name, BTF_KIND_TYPEDEF) < 0) {
			snprintf(why, len, "module BTF has no %s", name);
			ok = false;
			break;
		}
	}
	btf__free(mod);
	btf__free(vmlinux);
	return ok;
}

/* ---- tracefs record layouts -------------------------------------------- */

#define FIELD(ev, st, f) { ev, #f, offsetof(struct st, f), sizeof(((struct st *)0)->f) }
static const struct {
	const char *event, *field;
	unsigned int offset, size;
} tp_layout[] = {
	FIELD("dm_user_map", dmu_tp_map, dev),
	FIELD("dm_user_map", dmu_tp_map, seq),
	FIELD("dm_user_map", dmu_tp_map, op),
	FIELD("dm_user_map", dmu_tp_map, flags),
	FIELD("dm_user_map", dmu_tp_map, sector),
	FIELD("dm_user_map", dmu_tp_map, bytes),
	FIELD("dm_user_map", dmu_tp_map, queued),
	FIELD("dm_user_map", dmu_tp_map, in_flight),
	FIELD("dm_user_complete", dmu_tp_complete, dev),
	FIELD("dm_user_complete", dmu_tp_complete, seq),
	FIELD("dm_user_complete", dmu_tp_complete, op),
	FIELD("dm_user_complete", dmu_tp_complete, bytes),
	FIELD("dm_user_complete", dmu_tp_complete, error),
	FIELD("dm_user_complete", dmu_tp_complete, how),
	FIELD("dm_user_complete", dmu_tp_complete, queue_ns),
	FIELD("dm_user_complete", dmu_tp_complete, daemon_ns),
	FIELD("dm_user_complete", dmu_tp_complete, total_ns),
};
#undef FIELD

static const char *find_events_dir(void)
{
	static const char *const dirs[] = {
		"/sys/kernel/tracing/events/dm_user",
		"/sys/kernel/debug/tracing/events/dm_user",
	};
	size_t i;

	for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (access(dirs[i], F_OK) == 0)
			return dirs[i];
	return NULL;
}

/*
 * Finds "field:<type> <name>;\toffset:N;\tsize:N;" in a format file.
 * Returns 0 and the offset and size, or -ENOENT.
 */
static int format_field(FILE *f, const char *name, unsigned int *off, unsigned int *size)
{
	char line[512];

	rewind(f);
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "field:"), *semi, *n;

		if (!p)
			continue;
		semi = strchr(p, ';');
		if (!semi)
			continue;
		/* the name is the last word before the ';' */
		n = semi;
		while (n > p && !isspace((unsigned char)n[-1]))
			n--;
		if ((size_t)(semi - n) != strlen(name) || strncmp(n, name, semi - n))
			continue;
		p = strstr(semi, "offset:");
		if (!p || sscanf(p, "offset:%u;", off) != 1)
			return -EINVAL;
		p = strstr(p, "size:");
		if (!p || sscanf(p, "size:%u;", size) != 1)
			return -EINVAL;
		return 0;
	}
	return -ENOENT;
}

bool dmu_probe_tracepoint(const char *events_dir, char *why, size_t len)
{
	char path[PATH_MAX];
	const char *cur = NULL;
	FILE *f = NULL;
	unsigned int off, size;
	size_t i;
	bool ok = true;

	if (!events_dir)
		events_dir = find_events_dir();
	if (!events_dir) {
		snprintf(why, len, "no tracefs events/dm_user (is tracefs mounted?)");
		return false;
	}
	for (i = 0; i < sizeof(tp_layout) / sizeof(tp_layout[0]) && ok; i++) {
		if (!cur || strcmp(cur, tp_layout[i].event)) {
			if (f)
				fclose(f);
			cur = tp_layout[i].event;
			snprintf(path, sizeof(path), "%s/%s/format", events_dir, cur);
			f = fopen(path, "r");
			if (!f) {
				snprintf(why, len, "%s: %s", path, strerror(errno));
				return false;
			}
		}
		if (format_field(f, tp_layout[i].field, &off, &size)) {
			snprintf(why, len, "%s: no field %s", path, tp_layout[i].field);
			ok = false;
		} else if (off != tp_layout[i].offset || size != tp_layout[i].size) {
			snprintf(why, len, "%s: %s at offset %u size %u, expected %u size %u",
				 path, tp_layout[i].field, off, size,
				 tp_layout[i].offset, tp_layout[i].size);
			ok = false;
		}
	}
	if (f)
		fclose(f);
	return ok;
}

/* ---- module version ---------------------------------------------------- */

/* fields of dm_user_complete that target version 1.3.0 added, in TP_PROTO order
 * after "how"; the one named first is the one reported missing */
static const char *const v13_fields[] = { "total_ns", "queue_ns", "daemon_ns" };
#define NR_V13_FIELDS 3
/* arguments of dm_user_complete from 1.3.0 on: dev .. how, then those three */
#define V13_COMPLETE_ARGS 9
#define V13_VERSION "1.3.0"

int dmu_probe_complete_fields(const char *events_dir, const char **missing)
{
	char path[PATH_MAX];
	unsigned int off, size;
	FILE *f;
	int i, ret = 1;

	if (!events_dir)
		events_dir = find_events_dir();
	if (!events_dir)
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/dm_user_complete/format", events_dir);
	f = fopen(path, "r");
	if (!f)
		return -errno;
	for (i = 0; i < NR_V13_FIELDS; i++) {
		if (format_field(f, v13_fields[i], &off, &size) == -ENOENT) {
			*missing = v13_fields[i];
			ret = 0;
			break;
		}
	}
	fclose(f);
	return ret;
}

/*
 * The number of arguments of dm_user_complete in the module's BTF: the
 * btf_trace_dm_user_complete typedef is a pointer to a function whose first
 * parameter is the tracepoint's data pointer.  -errno if there is no BTF.
 */
static int btf_complete_args(void)
{
	struct btf *vmlinux, *mod;
	const struct btf_type *t;
	int id, ret = -ENOENT;

	if (access("/sys/kernel/btf/dm_user", R_OK))
		return -errno;
	vmlinux = btf__load_vmlinux_btf();
	if (!vmlinux)
		return -errno;
	mod = btf__parse_split("/sys/kernel/btf/dm_user", vmlinux);
	if (!mod) {
		ret = -errno;
		btf__free(vmlinux);
		return ret;
	}
	id = btf__find_by_name_kind(mod, "btf_trace_dm_user_complete", BTF_KIND_TYPEDEF);
	if (id > 0) {
		t = btf__type_by_id(mod, btf__resolve_type(mod, id));
		if (t && btf_is_ptr(t))
			t = btf__type_by_id(mod, t->type);
		if (t && btf_is_func_proto(t))
			ret = btf_vlen(t) - 1;
	}
	btf__free(mod);
	btf__free(vmlinux);
	return ret;
}

bool dmu_module_new_enough(const char *prog)
{
	const char *missing = NULL;
	int ret, nargs;

	ret = dmu_probe_complete_fields(NULL, &missing);
	if (ret == 0) {
		fprintf(stderr, "%s: dm-user module too old: dm_user_complete has no %s "
			"(need target version >= " V13_VERSION ")\n", prog, missing);
		return false;
	}
	if (ret > 0)
		return true;
	/* no tracefs: the module's BTF tells the number of arguments */
	nargs = btf_complete_args();
	if (nargs >= 0 && nargs < V13_COMPLETE_ARGS) {
		fprintf(stderr, "%s: dm-user module too old: dm_user_complete has no %s "
			"(need target version >= " V13_VERSION ")\n", prog, v13_fields[0]);
		return false;
	}
	if (nargs < 0 && dmu_verbose)
		fprintf(stderr, "%s: cannot check the module's version: no tracefs "
			"format of dm_user_complete (%s), no module BTF (%s)\n",
			prog, strerror(-ret), strerror(-nargs));
	return true;
}

int dmu_attach_select(struct bpf_object *obj, enum dmu_attach_mode mode)
{
	struct bpf_program *prog;
	const char *want;
	int err;

	if (mode < DMU_ATTACH_TP_BTF || mode > DMU_ATTACH_TRACEPOINT)
		return -EINVAL;
	want = attach_sections[mode];
	bpf_object__for_each_program(prog, obj) {
		const char *sec = bpf_program__section_name(prog);
		bool on = !strncmp(sec, want, strlen(want));

		err = bpf_program__set_autoload(prog, on);
		if (err)
			return err;
	}
	return 0;
}

int dmu_attach_skip_event(struct bpf_object *obj, const char *event)
{
	struct bpf_program *prog;
	int err;

	bpf_object__for_each_program(prog, obj) {
		const char *sec = bpf_program__section_name(prog);
		const char *slash = strrchr(sec, '/');

		if (!slash || strcmp(slash + 1, event))
			continue;
		err = bpf_program__set_autoload(prog, false);
		if (err)
			return err;
	}
	return 0;
}

/* DMUSER_ATTACH_SKIP=tp_btf,raw_tp: pretend these modes are unavailable (tests) */
static bool skipped(enum dmu_attach_mode m)
{
	const char *skip = getenv(DMU_ATTACH_SKIP_ENV), *p;
	size_t n = strlen(attach_names[m]);

	for (p = skip; p && (p = strstr(p, attach_names[m])); p += n) {
		if ((p == skip || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
			return true;
	}
	return false;
}

int dmu_attach(const char *prog, enum dmu_attach_mode requested,
	       dmu_attach_fn fn, void *ctx)
{
	enum dmu_attach_mode first = DMU_ATTACH_TP_BTF, last = DMU_ATTACH_TRACEPOINT, m;
	char why[3][300] = { "", "", "" };
	int err;

	if (requested != DMU_ATTACH_AUTO)
		first = last = requested;

	for (m = first; m <= last; m++) {
		char *w = why[m - DMU_ATTACH_TP_BTF];
		bool probed = true;

		if (skipped(m)) {
			snprintf(w, sizeof(why[0]), "skipped by %s", DMU_ATTACH_SKIP_ENV);
			probed = false;
		} else if (dmu_no_probe)
			;
		else if (m == DMU_ATTACH_TP_BTF)
			probed = dmu_probe_tp_btf(w, sizeof(why[0]));
		else if (m == DMU_ATTACH_TRACEPOINT)
			probed = dmu_probe_tracepoint(NULL, w, sizeof(why[0]));
		if (!probed) {
			if (dmu_verbose)
				fprintf(stderr, "%s: %s: %s\n", prog, attach_names[m], w);
			continue;
		}
		/* a failing mode that is not the last resort stays quiet */
		dmu_libbpf_quiet = m != last;
		err = fn(m, ctx);
		dmu_libbpf_quiet = false;
		if (!err) {
			if (dmu_verbose)
				fprintf(stderr, "%s: using %s\n", prog, attach_names[m]);
			return m;
		}
		snprintf(w, sizeof(why[0]), "load/attach failed: %s", strerror(-err));
		if (dmu_verbose)
			fprintf(stderr, "%s: %s: %s\n", prog, attach_names[m], w);
	}
	fprintf(stderr, "%s: cannot attach to the dm-user tracepoints", prog);
	for (m = first; m <= last; m++)
		fprintf(stderr, "%s %s: %s", m == first ? ":" : ";",
			attach_names[m], why[m - DMU_ATTACH_TP_BTF]);
	fputc('\n', stderr);
	return -1;
}

void dmu_report_runs(const char *prog, struct bpf_object *obj)
{
	struct bpf_program *p;

	bpf_object__for_each_program(p, obj) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(p);

		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) || !info.run_cnt)
			continue;
		fprintf(stderr, "%s: program %s ran %llu times\n", prog, bpf_program__name(p),
			(unsigned long long)info.run_cnt);
	}
}

unsigned long long dmu_check_misses(const char *prog, struct bpf_object *obj)
{
	unsigned long long misses = 0;
	struct bpf_program *p;

	bpf_object__for_each_program(p, obj) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);
		int fd = bpf_program__fd(p);

		if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len))
			continue;
		misses += info.recursion_misses;
	}
	if (misses)
		fprintf(stderr, "%s: warning: the BPF programs missed %llu events (recursion)\n",
			prog, misses);
	return misses;
}

/* ---- log2 histograms --------------------------------------------------- */

void dmu_slot_bounds(int slot, unsigned long long *lo, unsigned long long *hi)
{
	*lo = slot ? 1ULL << slot : 0;
	*hi = (1ULL << (slot + 1)) - 1;
}

unsigned long long dmu_hist_total(const __u64 *vals, int n)
{
	unsigned long long t = 0;
	int i;

	for (i = 0; i < n; i++)
		t += vals[i];
	return t;
}

int dmu_hist_mode(const __u64 *vals, int n)
{
	__u64 max = 0;
	int i, mode = -1;

	for (i = 0; i < n; i++) {
		if (vals[i] > max) {
			max = vals[i];
			mode = i;
		}
	}
	return mode;
}

double dmu_hist_percentile(const __u64 *vals, int n, double p)
{
	unsigned long long total = dmu_hist_total(vals, n), lo, hi;
	double rank, before = 0;
	int i;

	if (!total)
		return -1;
	if (p <= 0)
		p = 1e-9;
	if (p > 1)
		p = 1;
	rank = p * (double)total;
	for (i = 0; i < n; i++) {
		if (!vals[i])
			continue;
		if (before + vals[i] >= rank || i == n - 1) {
			double frac = (rank - before) / vals[i];

			if (frac < 0)
				frac = 0;
			if (frac > 1)
				frac = 1;
			dmu_slot_bounds(i, &lo, &hi);
			return (double)lo + frac * (double)(hi + 1 - lo);
		}
		before += vals[i];
	}
	return -1;	/* not reached */
}

static void print_stars(FILE *f, __u64 val, __u64 val_max, int width)
{
	int num_stars, num_spaces, i;
	bool need_plus;

	/* in double: val * width overflows 64 bits near 2^58 */
	num_stars = (int)((double)(val < val_max ? val : val_max) * width / (double)val_max);
	num_spaces = width - num_stars;
	need_plus = val > val_max;
	for (i = 0; i < num_stars; i++)
		fputc('*', f);
	for (i = 0; i < num_spaces; i++)
		fputc(' ', f);
	if (need_plus)
		fputc('+', f);
}

void dmu_print_log2_hist(FILE *f, const __u64 *vals, int n, const char *val_type)
{
	int stars_max = 40, idx_max = -1, stars, width, i;
	__u64 val, val_max = 0;
	unsigned long long low, high;

	for (i = 0; i < n; i++) {
		val = vals[i];
		if (val > 0)
			idx_max = i;
		if (val > val_max)
			val_max = val;
	}
	if (idx_max < 0)
		return;

	fprintf(f, "%*s%-*s : count    distribution\n", idx_max <= 32 ? 5 : 15, "",
		idx_max <= 32 ? 19 : 29, val_type);
	stars = idx_max <= 32 ? stars_max : stars_max / 2;
	width = idx_max <= 32 ? 10 : 20;
	for (i = 0; i <= idx_max; i++) {
		dmu_slot_bounds(i, &low, &high);
		val = vals[i];
		fprintf(f, "%*llu -> %-*llu : %-8llu |", width, low, width, high,
			(unsigned long long)val);
		print_stars(f, val, val_max, stars);
		fprintf(f, "|\n");
	}
}

json_t *dmu_json_log2_hist(const __u64 *vals, int n)
{
	json_t *arr = json_array();
	unsigned long long lo, hi;
	int i, idx_max = -1;

	for (i = 0; i < n; i++)
		if (vals[i])
			idx_max = i;
	for (i = 0; arr && i <= idx_max; i++) {
		dmu_slot_bounds(i, &lo, &hi);
		json_array_append_new(arr, json_pack("{s:I, s:I, s:I}", "lo", (json_int_t)lo,
						     "hi", (json_int_t)hi, "count", dmu_json_u64(vals[i])));
	}
	return arr;
}

json_int_t dmu_json_u64(__u64 v)
{
	return (json_int_t)(v > INT64_MAX ? INT64_MAX : v);
}

/* ---- devices ----------------------------------------------------------- */

static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return -errno;
	if (!fgets(buf, len, f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return 0;
}

void dmu_dev_name(__u32 dev, char *buf, size_t len)
{
	char path[PATH_MAX], link[PATH_MAX];
	ssize_t n;

	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u/dm/name",
		 dmu_major(dev), dmu_minor(dev));
	if (!read_line(path, buf, len) && buf[0])
		return;
	snprintf(path, sizeof(path), "/sys/dev/block/%u:%u", dmu_major(dev), dmu_minor(dev));
	n = readlink(path, link, sizeof(link) - 1);
	if (n > 0) {
		char *base;

		link[n] = '\0';
		base = strrchr(link, '/');
		snprintf(buf, len, "%s", base ? base + 1 : link);
		return;
	}
	snprintf(buf, len, "%u:%u", dmu_major(dev), dmu_minor(dev));
}

static int dev_from_sysfs(const char *block, __u32 *dev)
{
	char path[PATH_MAX], line[64];
	unsigned int maj, min;

	snprintf(path, sizeof(path), "/sys/block/%s/dev", block);
	if (read_line(path, line, sizeof(line)) || sscanf(line, "%u:%u", &maj, &min) != 2)
		return -ENOENT;
	*dev = dmu_mkdev(maj, min);
	return 0;
}

int dmu_dev_resolve(const char *spec, __u32 *dev)
{
	unsigned int maj, min;
	char path[PATH_MAX], name[256];
	struct stat st;
	struct dirent *de;
	DIR *d;
	int n = -1;

	if (sscanf(spec, "%u:%u%n", &maj, &min, &n) == 2 && n == (int)strlen(spec)) {
		*dev = dmu_mkdev(maj, min);
		return 0;
	}
	if (spec[0] == '/') {
		if (stat(spec, &st) || !S_ISBLK(st.st_mode))
			return -ENOENT;
		*dev = dmu_mkdev(major(st.st_rdev), minor(st.st_rdev));
		return 0;
	}
	if (!strchr(spec, '/') && !dev_from_sysfs(spec, dev))
		return 0;	/* "dm-3" */
	d = opendir("/sys/block");
	if (!d)
		return -ENOENT;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "dm-", 3))
			continue;
		snprintf(path, sizeof(path), "/sys/block/%s/dm/name", de->d_name);
		if (read_line(path, name, sizeof(name)) || strcmp(name, spec))
			continue;
		if (!dev_from_sysfs(de->d_name, dev)) {
			closedir(d);
			return 0;
		}
	}
	closedir(d);
	return -ENOENT;
}

/* libdevmapper logs to stderr by default: the tools say what matters
 * themselves, and a device gone between the list and its status is no news */
static void dm_quiet(int level, const char *file, int line, int dm_errno, const char *f, ...)
{
	(void)level; (void)file; (void)line; (void)dm_errno; (void)f;
}

/*
 * The status params of the first "user" target of dm device NAME (what
 * dmsetup status prints after "user"), into buf.  False if it has none, or
 * is gone.
 */
static bool user_target_status(const char *name, char *buf, size_t len)
{
	struct dm_task *dmt = dm_task_create(DM_DEVICE_STATUS);
	uint64_t start, length;
	char *type, *params;
	void *next = NULL;
	bool found = false;

	if (!dmt)
		return false;
	if (dm_task_set_name(dmt, name) && dm_task_run(dmt)) {
		do {
			type = params = NULL;
			next = dm_get_next_target(dmt, next, &start, &length, &type, &params);
			if (type && !strcmp(type, "user")) {
				snprintf(buf, len, "%s", params ? params : "");
				found = true;
			}
		} while (next && !found);
	}
	dm_task_destroy(dmt);
	return found;
}

int dmu_for_each_user_dev(dmu_user_dev_fn fn, void *arg)
{
	struct dm_task *dmt;
	struct dm_names *names;
	unsigned int next = 0;
	char status[DMU_STATUS_MAX];
	int count = 0, err = 0;

	dm_log_with_errno_init(dm_quiet);
	dmt = dm_task_create(DM_DEVICE_LIST);
	if (!dmt)
		return -ENOMEM;
	if (!dm_task_run(dmt)) {
		dm_task_destroy(dmt);
		return -ENODEV;		/* no device-mapper: no /dev/mapper/control */
	}
	names = dm_task_get_names(dmt);
	if (names && names->dev) {
		do {
			names = (struct dm_names *)((char *)names + next);
			next = names->next;
			if (!user_target_status(names->name, status, sizeof(status)))
				continue;
			count++;
			err = fn(names->name, dmu_mkdev(major(names->dev), minor(names->dev)),
				 status, arg);
		} while (next && !err);
	}
	dm_task_destroy(dmt);
	return err < 0 ? err : count;
}

struct dev_list {
	__u32 *devs;
	int max, n;
};

static int add_dev(const char *name, __u32 dev, const char *status, void *arg)
{
	struct dev_list *l = arg;

	(void)name; (void)status;
	if (l->n < l->max)
		l->devs[l->n++] = dev;
	return 0;
}

int dmu_list_user_devs(__u32 *devs, int max)
{
	struct dev_list l = { .devs = devs, .max = max };
	int err = dmu_for_each_user_dev(add_dev, &l);

	return err < 0 ? err : l.n;
}

/* ---- maps -------------------------------------------------------------- */

int dmu_percpu_init(struct dmu_percpu *pc, int ncpus, size_t value_size, dmu_sum_fn sum)
{
	memset(pc, 0, sizeof(*pc));
	if (ncpus < 0)
		return ncpus;
	if (!ncpus || !value_size)
		return -EINVAL;
	pc->ncpus = ncpus;
	pc->value_size = value_size;
	/* the kernel copies each CPU's value with bpf_long_memcpy() */
	pc->stride = (value_size + 7) & ~(size_t)7;
	pc->sum = sum;
	pc->buf = calloc(ncpus, pc->stride);
	return pc->buf ? 0 : -ENOMEM;
}

void dmu_percpu_free(struct dmu_percpu *pc)
{
	free(pc->buf);
	pc->buf = NULL;
}

void dmu_percpu_sum(const struct dmu_percpu *pc, void *val)
{
	const char *cp = pc->buf;
	int cpu;

	memset(val, 0, pc->value_size);
	for (cpu = 0; cpu < pc->ncpus; cpu++)
		pc->sum(val, cp + (size_t)cpu * pc->stride);
}

int dmu_percpu_lookup(struct dmu_percpu *pc, int fd, const void *key, void *val)
{
	int err = bpf_map_lookup_elem(fd, key, pc->buf);

	if (err)
		return err;
	dmu_percpu_sum(pc, val);
	return 0;
}

void dmu_hist_sum(struct dmu_hist *sum, const struct dmu_hist *val)
{
	int i;

	for (i = 0; i < DMU_MAX_SLOTS; i++)
		sum->slots[i] += val->slots[i];
	sum->sum += val->sum;
}

void dmu_op_stats_sum(struct dmu_op_stats *sum, const struct dmu_op_stats *val)
{
	int i;

	sum->ios += val->ios;
	sum->bytes += val->bytes;
	sum->errors += val->errors;
	for (i = 0; i < DMU_NR_ENDS; i++)
		sum->ends[i] += val->ends[i];
}

void dmu_lat_rec_sum(void *sum, const void *val)
{
	struct dmu_lat_rec *s = sum;
	const struct dmu_lat_rec *v = val;
	int i;

	for (i = 0; i < DMU_NR_STAGES; i++)
		dmu_hist_sum(&s->lat[i], &v->lat[i]);
	for (i = 0; i < DMU_NR_QD; i++)
		dmu_hist_sum(&s->qd[i], &v->qd[i]);
	dmu_op_stats_sum(&s->st, &v->st);
}

void dmu_pipe_rec_sum(void *sum, const void *val)
{
	struct dmu_pipe_rec *s = sum;
	const struct dmu_pipe_rec *v = val;
	int i;

	for (i = 0; i < DMU_NR_PSTAGES; i++) {
		dmu_hist_sum(&s->st[i], &v->st[i]);
		s->sum_ns[i] += v->sum_ns[i];
	}
	for (i = 0; i < DMU_NR_PCOUNTS; i++)
		s->counts[i] += v->counts[i];
}

void dmu_top_dev_sum(void *sum, const void *val)
{
	struct dmu_top_dev *s = sum;
	const struct dmu_top_dev *v = val;
	int i;

	for (i = 0; i < DMU_NR_STAGES; i++)
		dmu_hist_sum(&s->hist[i], &v->hist[i]);
	for (i = 0; i < DMU_TOP_NR_CLS; i++) {
		s->ios[i] += v->ios[i];
		s->bytes[i] += v->bytes[i];
	}
	s->errors += v->errors;
	s->timeouts += v->timeouts;
}

int dmu_map_dump(int fd, struct dmu_percpu *pc, void *ents, size_t ent_size,
		 size_t val_off, int max, bool clear)
{
	char *base = ents;
	const void *prev = NULL;
	int n = 0, i;

	while (n < max) {
		char *ent = base + (size_t)n * ent_size;

		/* the kernel copies the cursor in before it writes the next
		 * key, so both may be the same record */
		if (bpf_map_get_next_key(fd, prev, ent))
			break;
		prev = ent;
		/* an entry deleted meanwhile is skipped; its key stays the cursor */
		if (!dmu_percpu_lookup(pc, fd, ent, ent + val_off))
			n++;
	}
	for (i = 0; clear && i < n; i++)
		bpf_map_delete_elem(fd, base + (size_t)i * ent_size);
	return n;
}

/* ---- shared by the tools' main() ------------------------------------------- */

int dmu_attach_from_env(const char *prog, enum dmu_attach_mode *mode)
{
	const char *envmode = getenv(DMU_ATTACH_ENV);

	if (envmode && *envmode && dmu_attach_parse(envmode, mode)) {
		fprintf(stderr, "%s: invalid %s=%s (auto, tp_btf, raw_tp, tracepoint)\n",
			prog, DMU_ATTACH_ENV, envmode);
		return -1;
	}
	return 0;
}

void dmu_report_inserts(const char *prog, __u64 failed, __s64 err)
{
	if (failed || dmu_verbose)
		fprintf(stderr, "%s: map inserts: %llu failed, completions lost (last error %lld)\n",
			prog, (unsigned long long)failed, (long long)err);
}

/* ---- libdmuser's USDT probes ----------------------------------------------- */

/*
 * The stapsdt notes of <sys/sdt.h>: type 3, owner "stapsdt", and a
 * descriptor of three addresses (the probe, the .stapsdt.base section,
 * the semaphore), then provider, name and argument strings.
 */
#define STAPSDT_NOTE_TYPE	3

int dmu_usdt_probes(const char *path)
{
	Elf *elf;
	Elf_Scn *scn = NULL;
	size_t shstrndx;
	int fd, found = 0, i;

	if (elf_version(EV_CURRENT) == EV_NONE)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	elf = elf_begin(fd, ELF_C_READ, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF || elf_getshdrstrndx(elf, &shstrndx)) {
		if (elf)
			elf_end(elf);
		close(fd);
		return -ENOEXEC;
	}
	while ((scn = elf_nextscn(elf, scn))) {
		GElf_Shdr sh;
		Elf_Data *data;
		const char *name;
		size_t off = 0, name_off, desc_off;
		GElf_Nhdr nh;
		int asz = gelf_getclass(elf) == ELFCLASS32 ? 4 : 8;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
			continue;
		name = elf_strptr(elf, shstrndx, sh.sh_name);
		if (!name || strcmp(name, ".note.stapsdt"))
			continue;
		data = elf_getdata(scn, NULL);
		while (data && (off = gelf_getnote(data, off, &nh, &name_off, &desc_off)) > 0) {
			const char *desc = (const char *)data->d_buf + desc_off;
			const char *prov, *probe;
			size_t plen;

			if (nh.n_type != STAPSDT_NOTE_TYPE || nh.n_namesz != sizeof("stapsdt") ||
			    strcmp((const char *)data->d_buf + name_off, "stapsdt") ||
			    nh.n_descsz < (size_t)3 * asz + 2)
				continue;
			prov = desc + 3 * asz;
			plen = strnlen(prov, nh.n_descsz - 3 * asz);
			if (plen + 1 >= nh.n_descsz - 3 * asz || strcmp(prov, "dmuser"))
				continue;
			probe = prov + plen + 1;
			if (!memchr(probe, 0, nh.n_descsz - 3 * asz - plen - 1))
				continue;
			for (i = 0; i < DMU_USDT_NR_PROBES; i++)
				if (!strcmp(probe, dmu_usdt_probe_names[i]))
					found |= 1 << i;
		}
	}
	elf_end(elf);
	close(fd);
	return found;
}

int dmu_usdt_binary_of(const char *maps, const char *exe, char *out, size_t len)
{
	char line[PATH_MAX + 256];
	FILE *f = fopen(maps, "re");
	ssize_t n;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *path = strchr(line, '/');
		const char *base;
		size_t l;

		/* "start-end perms offset dev inode   /path"; the path is the
		 * only field that starts with a slash */
		if (!path)
			continue;
		l = strcspn(path, "\n");
		path[l] = '\0';
		base = strrchr(path, '/') + 1;
		if (strncmp(base, "libdmuser.so", strlen("libdmuser.so")))
			continue;
		fclose(f);
		if (l >= len)
			return -ENAMETOOLONG;
		memcpy(out, path, l + 1);
		return 1;
	}
	fclose(f);
	n = readlink(exe, out, len);
	if (n < 0)
		return -errno;
	if ((size_t)n >= len)
		return -ENAMETOOLONG;
	out[n] = '\0';
	return 0;
}
