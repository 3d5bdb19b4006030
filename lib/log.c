// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Diagnostics.  A message is formatted on the stack and handed to the
 * log function; the default one writes it to stderr with one write(2), so
 * serving threads can report errors without locks or allocation.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static void log_stderr(void *arg, int level, const char *msg)
{
	char line[600];
	int n;

	(void)arg;
	n = snprintf(line, sizeof(line), "libdmuser: %s%s\n",
		     level == DMU_LOG_WARNING ? "warning: " : "",
		     msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	ssize_t ignored = write(STDERR_FILENO, line, (size_t)n);
	(void)ignored;
}

static _Atomic(dmu_log_fn) log_fn = log_stderr;
static void *_Atomic log_arg;
static atomic_int log_max = DMU_LOG_WARNING;

DMU_API void dmu_set_log(dmu_log_fn fn, void *arg, int max_level)
{
	atomic_store(&log_arg, arg);
	atomic_store(&log_fn, fn ? fn : log_stderr);
	atomic_store(&log_max, max_level);
}

bool dmu__log_enabled(int level)
{
	return level <= atomic_load_explicit(&log_max, memory_order_relaxed);
}

void dmu__log(int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!dmu__log_enabled(level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	atomic_load(&log_fn)(atomic_load(&log_arg), level, msg);
}

uint64_t dmu__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

DMU_API const char *dmu_version(void)
{
#define STR_(x) #x
#define STR(x) STR_(x)
	return STR(DMU_VERSION_MAJOR) "." STR(DMU_VERSION_MINOR) "." STR(DMU_VERSION_PATCH);
}
