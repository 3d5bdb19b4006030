/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Shared by dmuser_top.bpf.c and dmuser-top.c. */
#ifndef __DMUSER_TOP_H
#define __DMUSER_TOP_H

#include "dmuser.h"

#define DMU_TOP_MAX_DEVS	1024

/* Classes of ops that dmuser-top shows apart. */
enum dmu_top_cls {
	DMU_TOP_READ = 0,	/* DM_USER_REQ_MAP_READ */
	DMU_TOP_WRITE = 1,	/* DM_USER_REQ_MAP_WRITE */
	DMU_TOP_OTHER = 2,	/* every other op */
	DMU_TOP_NR_CLS = 3,
};

/* Queue-depth samples taken at dm_user_map, per device; cumulative. */
struct dmu_dev_gauge {
	__u64 samples;		/* dm_user_map events */
	__u64 queued_sum;	/* sum of their "queued" */
	__u64 in_flight_sum;	/* sum of their "in_flight" */
};

/*
 * Everything dmuser-top keeps about one device, cumulative: one map value,
 * so that each event costs one lookup.
 */
struct dmu_top_dev {
	struct dmu_hist hist[DMU_NR_STAGES];	/* latency in ns, by enum dmu_stage */
	struct dmu_dev_gauge gauge;		/* at dm_user_map */
	__u64 ios[DMU_TOP_NR_CLS];		/* completed, by enum dmu_top_cls */
	__u64 bytes[DMU_TOP_NR_CLS];
	__u64 errors;				/* completed with error != 0 */
	__u64 timeouts;				/* ended by timeout_ms */
};

#endif /* __DMUSER_TOP_H */
