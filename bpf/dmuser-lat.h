/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Shared by dmuser_lat.bpf.c and dmuser-lat.c. */
#ifndef __DMUSER_LAT_H
#define __DMUSER_LAT_H

#include "dmuser.h"

/* histogram keys: devices x ops x stages */
#define DMU_LAT_MAX_HISTS	4096

#endif /* __DMUSER_LAT_H */
