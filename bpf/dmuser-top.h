/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Shared by dmuser_top.bpf.c and dmuser-top.c. */
#ifndef __DMUSER_TOP_H
#define __DMUSER_TOP_H

#include "dmuser.h"

/* devices tracked; each has a struct dmu_top_dev per possible CPU */
#define DMU_TOP_MAX_DEVS	256

/* Classes of ops that dmuser-top shows apart. */
enum dmu_top_cls {
	DMU_TOP_READ = 0,	/* DM_USER_REQ_MAP_READ */
	DMU_TOP_WRITE = 1,	/* DM_USER_REQ_MAP_WRITE */
	DMU_TOP_OTHER = 2,	/* every other op */
	DMU_TOP_NR_CLS = 3,
};

/*
 * Everything dmuser-top keeps about one device, cumulative: one map value,
 * so that each event costs one lookup.  The stage histograms' sums (ns)
 * also give the average queue depths: Little's law, as iostat's aqu-sz.
 */
struct dmu_top_dev {
	struct dmu_hist hist[DMU_NR_STAGES];	/* latency in ns, by enum dmu_stage */
	__u64 ios[DMU_TOP_NR_CLS];		/* completed, by enum dmu_top_cls */
	__u64 bytes[DMU_TOP_NR_CLS];
	__u64 errors;				/* completed with error != 0 */
	__u64 timeouts;				/* ended by timeout_ms */
};

#endif /* __DMUSER_TOP_H */
