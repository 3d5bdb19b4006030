/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dmuser-exporter: a scrape of the dmuser_lat BPF maps (per device, per
 * op, queue depth on) and of the status line of every dm device with a
 * "user" target, and its renderings as Prometheus text and JSON
 * (exporter_render.c, pure functions the unit tests check directly).
 */
#ifndef __DMUSER_EXPORTER_H
#define __DMUSER_EXPORTER_H

#include <stdio.h>
#include <jansson.h>
#include <linux/types.h>

#include "dmuser.h"
#include "dmuser-lat.h"

struct dmu_exp_hist {
	struct dmu_hist_key key;	/* dev, op, kind (stage or queue-depth kind) */
	struct dmu_hist hist;		/* latency in microseconds, depth in requests */
};

struct dmu_exp_stat {
	struct dmu_op_key key;
	struct dmu_op_stats st;
};

/* One value of dmuser_lat's dev_recs, as a scrape reads it. */
struct dmu_exp_rec {
	struct dmu_op_key key;		/* dev, op */
	struct dmu_lat_rec rec;
};

/* A dm device whose live table has a "user" target, as a scrape read it. */
struct dmu_exp_target {
	__u32 dev;
	char name[128];		/* its dm name */
	char status[512];	/* the target's status line (dmsetup status, after "user") */
};

struct dmu_exp_dev {
	__u32 dev;
	char name[128];		/* dm name, else dm-N, else MAJ:MIN */
	const char *status;	/* its target's status line this scrape, NULL if not read */
};

/* a name function: the label of dev, written to buf */
typedef void (*dmu_exp_name_fn)(__u32 dev, char *buf, size_t len);

struct dmu_exp_snapshot {
	const char *version;
	const char *attach;		/* attach mode in use */
	double uptime_seconds;
	__u64 untracked;		/* completions BPF could not record (map full) */
	struct dmu_exp_hist *lat;	/* sorted by dev, op, stage */
	int nlat;
	struct dmu_exp_hist *qd;	/* sorted by dev, op, kind */
	int nqd;
	struct dmu_exp_stat *st;	/* sorted by dev, op */
	int nst;
	const struct dmu_exp_target *targets;	/* the dm devices with a user target */
	int ntargets;
	struct dmu_exp_dev *devs;	/* every dev of the entries above, sorted */
	int ndevs;
};

/*
 * Splits n records into s->lat, s->qd and s->st, which have room for
 * n * DMU_NR_STAGES, n * DMU_NR_QD and n entries: the histograms that have
 * samples, and the counters of the (dev, op) that had completions.
 */
void dmu_exp_split(struct dmu_exp_snapshot *s, const struct dmu_exp_rec *recs, int n);

/*
 * Sorts the entries and fills devs: the devices of the BPF entries (names
 * through name_fn), then those of s->targets not among them (their dm
 * name), each with its target's status line if s->targets has it.  devs
 * must have room for every device: as many as the records split plus the
 * targets (a device with no room would share a label with others, and
 * duplicate series make Prometheus reject the whole scrape).  Returns 0,
 * or -ENOSPC if a device had no room: a BPF one is then labelled with its
 * MAJ:MIN, a target's status is left out.
 */
int dmu_exp_prepare(struct dmu_exp_snapshot *s, struct dmu_exp_dev *devs, int max_devs,
		    dmu_exp_name_fn name_fn);

/* Returns 0, or -1 if writing to out failed. */
int dmu_exp_render_prometheus(const struct dmu_exp_snapshot *s, FILE *out);
/* New reference; NULL if out of memory. */
json_t *dmu_exp_render_json(const struct dmu_exp_snapshot *s);

#endif /* __DMUSER_EXPORTER_H */
