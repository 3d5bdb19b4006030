// SPDX-License-Identifier: GPL-2.0
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

static int log_quiet;
static const char *log_prog = "dmuserd";

void dmu_log_set_quiet(int level)
{
	log_quiet = level;
}

void dmu_log_set_prog(const char *prog)
{
	log_prog = prog;
}

static void log_line(const char *prefix, const char *fmt, va_list ap)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%s: %s", log_prog, prefix);

	if (n < 0)
		return;
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);

	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;	/* truncated: keep the newline */
	line[len++] = '\n';
	/* One write: lines from different threads never interleave. */
	ssize_t ignored = write(STDERR_FILENO, line, len);
	(void)ignored;
}

void dmu_error(const char *fmt, ...)
{
	va_list ap;

	if (log_quiet >= 2)
		return;
	va_start(ap, fmt);
	log_line("", fmt, ap);
	va_end(ap);
}

void dmu_warn(const char *fmt, ...)
{
	va_list ap;

	if (log_quiet >= 2)
		return;
	va_start(ap, fmt);
	log_line("warning: ", fmt, ap);
	va_end(ap);
}

void dmu_info(const char *fmt, ...)
{
	va_list ap;

	if (log_quiet)
		return;
	va_start(ap, fmt);
	log_line("", fmt, ap);
	va_end(ap);
}
