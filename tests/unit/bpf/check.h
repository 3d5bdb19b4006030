/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The host unit tests of bpf/ use the framework of tests/unit (test.h):
 * TEST(name) registers a test, each runs in its own child and counts once,
 * whatever it checks.  Here CHECK also takes a printf-style message that
 * says what was found.
 */
#ifndef __DMU_TEST_CHECK_H
#define __DMU_TEST_CHECK_H

#include <stdio.h>
#include "test.h"

#undef CHECK
#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		t_fail(__FILE__, __LINE__, "%s", #cond);		\
		printf("      ");					\
		printf(__VA_ARGS__);					\
		printf("\n");						\
	}								\
} while (0)

#endif
