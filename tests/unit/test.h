/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A tiny test framework.  TEST(name) { ... } registers a test; each test
 * runs in its own forked child (a crash or a hang fails that test only).
 * CHECK* record a failure and carry on; REQUIRE* end the test at once;
 * SKIP(why) ends it as skipped, which never counts as passed.
 * The runner prints one line per test and finally
 * "N passed, N failed, N skipped": one count per test, however many
 * checks it makes.
 */
#ifndef DMU_TEST_H
#define DMU_TEST_H

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

typedef void (*test_fn)(void);

void t_register(const char *name, test_fn fn);
void t_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void t_abort(void) __attribute__((noreturn));
void t_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Ends the test as skipped, saying why (a printf format). */
#define SKIP(...) t_skip(__VA_ARGS__)

#define TEST(name)							\
	static void name(void);						\
	__attribute__((constructor)) static void register_##name(void)	\
	{								\
		t_register(#name, name);				\
	}								\
	static void name(void)

#define CHECK(expr)							\
	do {								\
		if (!(expr))						\
			t_fail(__FILE__, __LINE__, "%s", #expr);	\
	} while (0)

#define REQUIRE(expr)							\
	do {								\
		if (!(expr)) {						\
			t_fail(__FILE__, __LINE__, "%s", #expr);	\
			t_abort();					\
		}							\
	} while (0)

#define CHECK_EQ(a, b)							\
	do {								\
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);	\
		if (a_ != b_)						\
			t_fail(__FILE__, __LINE__, "%s == %s (%" PRIu64 " != %" PRIu64 ")", \
			       #a, #b, a_, b_);				\
	} while (0)

#define REQUIRE_EQ(a, b)						\
	do {								\
		uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);	\
		if (a_ != b_) {						\
			t_fail(__FILE__, __LINE__, "%s == %s (%" PRIu64 " != %" PRIu64 ")", \
			       #a, #b, a_, b_);				\
			t_abort();					\
		}							\
	} while (0)

#define CHECK_STR(a, b)							\
	do {								\
		const char *a_ = (a), *b_ = (b);			\
		if (!a_ || !b_ || strcmp(a_, b_))			\
			t_fail(__FILE__, __LINE__, "%s == %s (\"%s\" != \"%s\")", \
			       #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
	} while (0)

/*
 * Defined by a suite whose code under test logs (the daemon's:
 * test_quiet.c), to quiet it unless DMU_TEST_VERBOSE is set; the runner
 * calls it when it is there.
 */
void test_quiet_logs(int verbose) __attribute__((weak));

/*
 * Defined by a suite that leaves something running across its tests (the
 * RBD tests' Ceph cluster: test_backend_rbd.c), to stop it; the runner
 * calls it once, after the last test, when it is there.
 */
void test_suite_end(void) __attribute__((weak));

#endif
