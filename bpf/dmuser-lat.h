/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Shared by dmuser_lat.bpf.c, dmuser-lat.c and dmuser-exporter. */
#ifndef __DMUSER_LAT_H
#define __DMUSER_LAT_H

#include "dmuser.h"

/*
 * Ops that have a slot of the op_recs PERCPU_ARRAY, used without per-device
 * splitting: the DM_USER_REQ_MAP_* values (0..12) and a few spare.  Other
 * ops (only rejected requests can carry one) go to the dev_recs PERCPU_HASH.
 */
#define DMU_LAT_NR_OPS		16

/* (dev, op) records of the dev_recs PERCPU_HASH: devices x ops */
#define DMU_LAT_MAX_RECS	1024

/* histogram entries userspace may make of them: records x stages */
#define DMU_LAT_MAX_HISTS	(DMU_LAT_MAX_RECS * DMU_NR_STAGES)

/*
 * Everything dmuser-lat keeps about one op (of one device, with -D): a
 * single map value, so that a request costs one lookup.  The key op is the
 * request's own even without -O; userspace then sums the histograms over
 * the ops.  The maps are per-CPU: userspace also sums the CPUs' copies.
 *
 * The histograms come first and the counters are updated first (a
 * compiler barrier keeps them so), so a copy of one CPU's value, which the
 * kernel makes in order, never has a histogram ahead of the counters where
 * stores are seen in program order (x86); nor then has the sum of the
 * copies.
 */
struct dmu_lat_rec {
	struct dmu_hist lat[DMU_NR_STAGES];	/* by enum dmu_stage, in usecs or msecs */
	struct dmu_hist qd[DMU_NR_QD];		/* by enum dmu_qd_kind, with -Q only */
	struct dmu_op_stats st;
};

#endif /* __DMUSER_LAT_H */
