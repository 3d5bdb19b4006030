// SPDX-License-Identifier: LGPL-2.1-or-later
#include "test.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmuser.h"

#define MAX_TESTS 256
/* tests/unit/lib: the library through its public header only */
#define TIMEOUT_S 30

static struct {
	const char *name;
	test_fn fn;
} tests[MAX_TESTS];
static unsigned ntests;
static bool failed;	/* in the child */

void t_register(const char *name, test_fn fn)
{
	if (ntests == MAX_TESTS) {
		fprintf(stderr, "too many tests\n");
		exit(2);
	}
	tests[ntests].name = name;
	tests[ntests].fn = fn;
	ntests++;
}

void t_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	failed = true;
	fprintf(stdout, "    %s:%d: check failed: ", file, line);
	va_start(ap, fmt);
	vfprintf(stdout, fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

void t_abort(void)
{
	fflush(stdout);
	_exit(1);
}

static bool run_one(unsigned i)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return false;
	}
	if (pid == 0) {
		alarm(TIMEOUT_S);
		tests[i].fn();
		fflush(stdout);
		_exit(failed ? 1 : 0);
	}
	if (waitpid(pid, &status, 0) < 0)
		return false;
	if (WIFSIGNALED(status))
		printf("    killed by signal %d%s\n", WTERMSIG(status),
		       WTERMSIG(status) == SIGALRM ? " (timeout)" : "");
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void quiet_log(void *arg, int level, const char *msg)
{
	(void)arg;
	(void)level;
	(void)msg;
}

/* Usage: unit [SUBSTRING]  runs the tests whose name contains SUBSTRING. */
int main(int argc, char **argv)
{
	unsigned passed = 0, nfailed = 0;

	/* The tests provoke errors on purpose: show them only when asked. */
	if (!getenv("DMU_TEST_VERBOSE"))
		dmu_set_log(quiet_log, NULL, 0);
	for (unsigned i = 0; i < ntests; i++) {
		if (argc > 1 && !strstr(tests[i].name, argv[1]))
			continue;
		if (run_one(i)) {
			printf("ok   %s\n", tests[i].name);
			passed++;
		} else {
			printf("FAIL %s\n", tests[i].name);
			nfailed++;
		}
	}
	/* Every test here runs or fails: a missing tool is a failure. */
	printf("%u passed, %u failed, 0 skipped\n", passed, nfailed);
	return nfailed ? 1 : 0;
}
