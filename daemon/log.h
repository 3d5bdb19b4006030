/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Diagnostics.  Every message goes to stderr as one line prefixed
 * "dmuserd: ".  A message is formatted on the stack and written with a
 * single write(2), so worker threads can report errors without taking the
 * stdio lock and without allocating.
 */
#ifndef DMUSERD_LOG_H
#define DMUSERD_LOG_H

#define DMU_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* "dmuserd: <message>" */
void dmu_error(const char *fmt, ...) DMU_PRINTF(1, 2);
/* "dmuserd: warning: <message>" */
void dmu_warn(const char *fmt, ...) DMU_PRINTF(1, 2);
/* "dmuserd: <message>", for start-up and shutdown progress. */
void dmu_info(const char *fmt, ...) DMU_PRINTF(1, 2);

/*
 * 0: print everything (the default); 1: drop dmu_info(); 2: drop
 * everything (the unit tests, which provoke errors on purpose).
 */
void dmu_log_set_quiet(int level);

/* The prefix, "dmuserd" unless another program links this file. */
void dmu_log_set_prog(const char *prog);

#endif
