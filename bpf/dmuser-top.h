/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Shared by dmuser_top.bpf.c and dmuser-top.c. */
#ifndef __DMUSER_TOP_H
#define __DMUSER_TOP_H

#include "dmuser.h"

#define DMU_TOP_MAX_DEVS	1024

/* Queue-depth samples taken at dm_user_map, per device; cumulative. */
struct dmu_dev_gauge {
	__u64 samples;		/* dm_user_map events */
	__u64 queued_sum;	/* sum of their "queued" */
	__u64 in_flight_sum;	/* sum of their "in_flight" */
};

#endif /* __DMUSER_TOP_H */
