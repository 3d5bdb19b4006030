/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The assertion of the host unit tests of bpf/: counts, and says what failed. */
#ifndef __DMU_TEST_CHECK_H
#define __DMU_TEST_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond, ...) do {						\
	if (cond) {							\
		passed++;						\
	} else {							\
		failed++;						\
		printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);	\
		printf(__VA_ARGS__);					\
		printf("\n");						\
	}								\
} while (0)

#endif
