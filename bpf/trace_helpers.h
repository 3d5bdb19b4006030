/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Userspace helpers of the dm-user BPF tools: attach-mode selection and
 * fallback, log2 histograms (printing, percentiles), device names, reading
 * the per-CPU maps.
 */
#ifndef __DMU_TRACE_HELPERS_H
#define __DMU_TRACE_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdarg.h>
#include <linux/types.h>
#include <bpf/libbpf.h>
#include <jansson.h>

/* ---- attach modes ------------------------------------------------------ */

enum dmu_attach_mode {
	DMU_ATTACH_AUTO = 0,	/* tp_btf, else raw_tp, else tracepoint */
	DMU_ATTACH_TP_BTF,
	DMU_ATTACH_RAW_TP,
	DMU_ATTACH_TRACEPOINT,
};

/* Environment variable that forces a mode, like the hidden --attach=. */
#define DMU_ATTACH_ENV "DMUSER_ATTACH"
/* For tests of the fallback: modes listed here (comma-separated) count as unavailable. */
#define DMU_ATTACH_SKIP_ENV "DMUSER_ATTACH_SKIP"

const char *dmu_attach_name(enum dmu_attach_mode mode);
/* The mode forced by $DMUSER_ATTACH, if set; -1 after a message if invalid. */
int dmu_attach_from_env(const char *prog, enum dmu_attach_mode *mode);
/* "auto", "tp_btf", "raw_tp" or "tracepoint"; 0 or -EINVAL */
int dmu_attach_parse(const char *s, enum dmu_attach_mode *mode);

/*
 * Prints "<prog>: dm-user module not loaded (no /sys/module/dm_user)" and
 * returns false if the module is absent.
 */
bool dmu_module_loaded(const char *prog);

/*
 * The stage latencies the tools read from dm_user_complete arrived with
 * target version 1.3.0: the first of its fields total_ns, queue_ns and
 * daemon_ns missing from events_dir/dm_user_complete/format (events_dir NULL:
 * find tracefs) goes to *missing.  Returns 1 if all are there, 0 if one is
 * missing, -errno if the format cannot be read.
 */
int dmu_probe_complete_fields(const char *events_dir, const char **missing);
/*
 * Prints "<prog>: dm-user module too old: dm_user_complete has no total_ns
 * (need target version >= 1.3.0)" and returns false if the loaded module
 * lacks those fields.  Asks the tracefs format, else the module's BTF; if
 * neither can be read it cannot tell, and returns true (-v says so).
 */
bool dmu_module_new_enough(const char *prog);

/* Module BTF has btf_trace_<event> for the events the tools attach. */
bool dmu_probe_tp_btf(char *why, size_t len);
/* The tracefs formats match the layouts of dmuser.h (events_dir NULL: find tracefs). */
bool dmu_probe_tracepoint(const char *events_dir, char *why, size_t len);

/* Keeps autoload only on the programs of this mode (by section prefix). */
int dmu_attach_select(struct bpf_object *obj, enum dmu_attach_mode mode);
/* Turns autoload off for the programs of one event ("dm_user_map"), in every
 * mode: the section name ends in "/<event>". */
int dmu_attach_skip_event(struct bpf_object *obj, const char *event);

/*
 * Opens, configures, loads and attaches a skeleton in the given mode;
 * returns 0, or a negative errno after destroying what it made.
 */
typedef int (*dmu_attach_fn)(enum dmu_attach_mode mode, void *ctx);

/*
 * Tries the requested mode, or in AUTO each mode in order, probing each
 * first.  Returns the mode that attached, or -1 after printing why none did.
 */
int dmu_attach(const char *prog, enum dmu_attach_mode requested,
	       dmu_attach_fn fn, void *ctx);

/* Sum of the programs' recursion_misses (events the kernel did not hand to
 * them); warns on stderr if there were any. */
/*
 * With kernel.bpf_stats_enabled=1, says on stderr how many times each
 * program ran ("dmuser-lat: program dmu_complete_btf ran 2048 times"): the
 * tests tell a program that did not run from one that ran and lost a count.
 * Silent while the statistics are off.
 */
void dmu_report_runs(const char *prog, struct bpf_object *obj);
unsigned long long dmu_check_misses(const char *prog, struct bpf_object *obj);

/* Prints the dmu_init_* diagnostics of dmuser.bpf.h if any (always with
 * dmu_verbose). */
void dmu_report_inserts(const char *prog, __u64 failed, __s64 err);

/* libbpf print callback: debug output only with dmu_verbose, and nothing
 * while dmu_libbpf_quiet (set while probing a mode that may fail). */
extern bool dmu_verbose;
extern bool dmu_libbpf_quiet;
/* skip the probes (verifier checks without the module) */
extern bool dmu_no_probe;
int dmu_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args);

/* ---- log2 histograms --------------------------------------------------- */

/* Bounds of a slot as printed: [lo, hi], inclusive (slot 0 is [0, 1]). */
void dmu_slot_bounds(int slot, unsigned long long *lo, unsigned long long *hi);
unsigned long long dmu_hist_total(const __u64 *vals, int n);
/* Slot with the largest count (the lowest such slot), -1 if empty. */
int dmu_hist_mode(const __u64 *vals, int n);
/*
 * Estimated p-quantile, 0 < p <= 1.  The rank r = p * total falls in the
 * first slot whose cumulative count reaches it; the counts of that slot are
 * taken as spread evenly over its value range [lo, hi + 1), so the estimate
 * is lo + (r - before) / count * (hi + 1 - lo).  The error is bounded by the
 * slot width, i.e. within a factor of 2.  Returns -1 for an empty histogram.
 */
double dmu_hist_percentile(const __u64 *vals, int n, double p);
/* bcc's print_log2_hist(): "     usecs   : count    distribution" */
void dmu_print_log2_hist(FILE *f, const __u64 *vals, int n, const char *val_type);
/* JSON array of {"lo":..,"hi":..,"count":..} up to the last non-empty slot */
json_t *dmu_json_log2_hist(const __u64 *vals, int n);
/* a count as a JSON integer (saturated at INT64_MAX) */
json_int_t dmu_json_u64(__u64 v);

/* ---- devices ----------------------------------------------------------- */

/* The kernel's dev_t encoding, as in the tracepoints. */
static inline __u32 dmu_mkdev(unsigned int major, unsigned int minor)
{
	return (major << 20) | (minor & 0xfffff);
}
static inline unsigned int dmu_major(__u32 dev) { return dev >> 20; }
static inline unsigned int dmu_minor(__u32 dev) { return dev & 0xfffff; }

/* dm name ("dmu-test0"), else the block name ("dm-3"), else "254:3". */
void dmu_dev_name(__u32 dev, char *buf, size_t len);
/*
 * Resolves a dm name ("dmu-test0"), a block name ("dm-3"), a path
 * ("/dev/mapper/dmu-test0", "/dev/dm-3") or "MAJ:MIN".  0 or -ENOENT.
 */
int dmu_dev_resolve(const char *spec, __u32 *dev);
/* dev_t of the live dm devices whose table has a "user" target; count or -errno */
int dmu_list_user_devs(__u32 *devs, int max);

/* the longest status line of a user target the helpers pass on */
#define DMU_STATUS_MAX 512
/* called per user device: its dm name, dev_t and status params; non-zero stops */
typedef int (*dmu_user_dev_fn)(const char *name, __u32 dev, const char *status, void *arg);
/*
 * Calls fn for every dm device whose live table has a "user" target, with
 * the status params of the first one (dmsetup status, after "user"); a
 * device gone meanwhile is left out.  libdevmapper's log is silenced.
 * Returns how many devices were found (up to where fn stopped), fn's
 * negative return, or -errno if device-mapper cannot be asked.
 */
int dmu_for_each_user_dev(dmu_user_dev_fn fn, void *arg);

/* ---- maps -------------------------------------------------------------- */

/*
 * The tools' maps are per-CPU.  A lookup from userspace returns one copy of
 * the value per possible CPU, each value_size rounded up to 8 bytes from
 * the previous, and the tools sum the copies into one value of the type the
 * BPF side uses.
 */
typedef void (*dmu_sum_fn)(void *sum, const void *val);	/* *sum += *val */

struct dmu_percpu {
	int ncpus;		/* possible CPUs */
	size_t value_size;	/* of the map's value type */
	size_t stride;		/* value_size rounded up to 8 */
	dmu_sum_fn sum;
	void *buf;		/* ncpus * stride bytes: one lookup's copies */
};

/*
 * Sizes pc, once, for the values of a map: value_size bytes, ncpus copies
 * (pass libbpf_num_possible_cpus(), whose error is returned as is), summed
 * by sum.  Returns 0 or a negative errno.
 */
int dmu_percpu_init(struct dmu_percpu *pc, int ncpus, size_t value_size, dmu_sum_fn sum);
void dmu_percpu_free(struct dmu_percpu *pc);
/* Sums the copies in pc->buf into val (value_size bytes, zeroed first). */
void dmu_percpu_sum(const struct dmu_percpu *pc, void *val);
/* Looks key up in the per-CPU map fd and sums its copies into val; 0 or
 * the lookup's negative error (val untouched). */
int dmu_percpu_lookup(struct dmu_percpu *pc, int fd, const void *key, void *val);

/* sum += val, slot by slot and field by field (dmu_sum_fn for the maps' values) */
struct dmu_hist;
struct dmu_op_stats;
void dmu_hist_sum(struct dmu_hist *sum, const struct dmu_hist *val);
void dmu_op_stats_sum(struct dmu_op_stats *sum, const struct dmu_op_stats *val);
void dmu_lat_rec_sum(void *sum, const void *val);	/* struct dmu_lat_rec */
void dmu_top_dev_sum(void *sum, const void *val);	/* struct dmu_top_dev */
void dmu_pipe_rec_sum(void *sum, const void *val);	/* struct dmu_pipe_rec */

/*
 * Copies up to max entries of a per-CPU BPF hash map into ents, an array
 * of ent_size-byte records each holding the key at offset 0 and the value
 * at val_off, the sum of its CPUs' copies (pc, sized for the map's values).
 * With clear, the copied entries are then deleted (per-interval tools);
 * without, the map is left as it is (cumulative exporters).  Returns the
 * number of entries copied.
 */
int dmu_map_dump(int fd, struct dmu_percpu *pc, void *ents, size_t ent_size,
		 size_t val_off, int max, bool clear);

/* ---- misc -------------------------------------------------------------- */

extern const char *const dmu_op_names[];	/* by DM_USER_REQ_MAP_* */
const char *dmu_op_name(unsigned int op, char *buf, size_t len);
/* "read", "write", ... or a number; -EINVAL if unknown */
int dmu_op_parse(const char *s, unsigned int *op);
extern const char *const dmu_stage_names[];	/* by enum dmu_stage */
extern const char *const dmu_pstage_names[];	/* by enum dmu_pstage */
extern const char *const dmu_pcount_names[];	/* by enum dmu_pcount */
extern const char *const dmu_end_names[];	/* by enum dmu_end */
/* "HH:MM:SS" of the local time */
void dmu_strftime_now(char *buf, size_t len);

/* ---- libdmuser's USDT probes (dmuser-lat -p / --binary) ---------------- */

enum dmu_usdt_probe {
	DMU_USDT_RECEIVED = 0,
	DMU_USDT_SUBMITTED = 1,
	DMU_USDT_DONE = 2,
	DMU_USDT_REPLY = 3,
	DMU_USDT_NR_PROBES = 4,
};
#define DMU_USDT_ALL	((1 << DMU_USDT_NR_PROBES) - 1)

/* "request_received", ... by enum dmu_usdt_probe (provider "dmuser") */
extern const char *const dmu_usdt_probe_names[];

/*
 * Which of the four probes of provider dmuser the ELF file at path has, in
 * its .note.stapsdt section: bit i for dmu_usdt_probe_names[i] (0: none, as
 * in a program not built on libdmuser); -errno if path cannot be read,
 * -ENOEXEC if it is not ELF.
 */
int dmu_usdt_probes(const char *path);

/*
 * The file of a process that holds libdmuser's probes: the first mapping of
 * maps (/proc/PID/maps) whose file name starts with "libdmuser.so", else the
 * program itself (the link exe, /proc/PID/exe: libdmuser.a linked in, or no
 * libdmuser at all).  Writes the path to out; returns 1 for a library, 0 for
 * the program, or -errno.
 */
int dmu_usdt_binary_of(const char *maps, const char *exe, char *out, size_t len);

#endif /* __DMU_TRACE_HELPERS_H */
