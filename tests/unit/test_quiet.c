// SPDX-License-Identifier: GPL-2.0
/* The daemon's log, quiet in its unit tests unless DMU_TEST_VERBOSE is set. */
#include <dmuser.h>

#include "log.h"
#include "test.h"

void test_quiet_logs(int verbose)
{
	dmu_log_set_quiet(verbose ? 0 : 2);
	dmu_set_log(NULL, NULL, verbose ? DMU_LOG_INFO : 0);	/* libdmuser's own */
}
